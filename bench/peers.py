"""Benchmark: the manual step against every peer in the same rounds, at every grid point.

    PYTHONPATH=src python bench/peers.py [--quick] [--rounds R] [--json FILE]

`manualgrad bench` times each baseline against (a) in its own rounds, so "manual ≤
min(peers)" is read across two pairings. This script pairs them directly: at each point
of the CPU grid (`manualgrad.benchmark.CPU_GRID`) and for float32 (default matmul
precision) and float64, the four steps

| step      | what it is                                                              |
|-----------|-------------------------------------------------------------------------|
| `manual`  | `mg.network(activations, "bce").value_and_grad` on X (n_x, m)            |
| `jax`     | (a) `jax.value_and_grad` of the idiomatic cost (jax.nn, optax)          |
| `eqx`     | (b) an equinox MLP under `jax.vmap`, handed `X.T` (transposed once,     |
|           | outside the timing: equinox's users hold examples as rows)               |
| `torch`   | (c) PyTorch autograd, eager                                               |

are checked against (a) (the grid's tolerances) and then timed in the same interleaved
rounds, the order reversing every round. The table gives manual / peer for each peer:
the median of the per-round ratios with its 95 % bootstrap interval; "faster" where the
interval is below 1. A peer that is not installed is left out and named.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from manualgrad.benchmark import (
    CPU_GRID,
    equinox_step,
    jax_step,
    machine,
    max_rel_err,
    paired_rounds,
    ratio_interval,
    torch_step,
)
from manualgrad.benchmark._grid import (
    POLICIES,
    TOLERANCES,
    network_label,
    policy_context,
    problem,
    step_functions,
)

PEERS = ("jax", "eqx", "torch")


def bench_point(case, policy: str, rounds: int, slot_s: float) -> dict:
    """One grid point: agreement with (a), then manual and the peers in the same rounds."""
    _, precision = POLICIES[policy]
    dims, m = tuple(case.layer_dims), case.m
    acts = ("relu",) * (len(dims) - 2) + ("sigmoid",)
    row: dict = {"policy": policy, "layer_dims": list(dims), "m": m, "skipped": {}}
    with policy_context(policy) as dtype:
        params, X, Y = problem(dims, m, dtype)
        fns = step_functions(acts, precision)
        steps = {name: jax_step(fns[name], params, X, Y) for name in ("manual", "jax")}
        for name, build in (("eqx", equinox_step), ("torch", torch_step)):
            try:
                steps[name] = build(params, X, Y, activations=acts, precision=precision)
            except (ImportError, ValueError) as err:
                row["skipped"][name] = str(err)
        ref = steps["jax"].result()
        for name, step in steps.items():
            err = max_rel_err(step.result(), ref)
            row[f"{name}_max_rel_err"] = err
            if not err <= TOLERANCES[policy]:
                raise AssertionError(f"{name} disagrees with (a) at {dims} @{m}: {err:.2e}")
        timings = paired_rounds({k: s.call for k, s in steps.items()}, rounds=rounds, slot_s=slot_s)
    for name in steps:
        row[f"{name}_ms"] = 1e3 * float(np.median(timings.seconds[name]))
    for peer in PEERS:
        if peer in steps:
            ratio = ratio_interval(timings.seconds["manual"], timings.seconds[peer])
            row[f"manual_vs_{peer}"] = ratio.as_json()
    return row


def table(rows: list[dict]) -> str:
    head = "| policy | network @ m | manual ms | manual / (a) | manual / equinox | manual / torch |"
    lines = [head, "|---|---|---:|---|---|---|"]
    for r in rows:
        cells = []
        for peer in PEERS:
            v = r.get(f"manual_vs_{peer}")
            cells.append(
                "—"
                if v is None
                else f"{v['median']:.3f} [{v['low']:.3f}, {v['high']:.3f}] {v['verdict']}"
            )
        label = network_label(r["layer_dims"], r["m"])
        first = f"| {r['policy']} | {label} | {r['manual_ms']:.3f} | "
        lines.append(first + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="two small points, 5 rounds")
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--slot", type=float, default=0.2, help="seconds per step and round")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    cases = CPU_GRID[:2] if args.quick else CPU_GRID
    rounds, slot = (5, 0.02) if args.quick else (args.rounds, args.slot)
    rows = []
    for policy in ("f32-default", "f64"):
        for case in cases:
            row = bench_point(case, policy, rounds, slot)
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(json.dumps({"kind": "machine", **machine(), "rounds": rounds}) + "\n")
            for row in rows:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
