"""The zero-L2 effect on XLA:CPU: time and inspect gradient steps that differ only in extra work.

    python bench/schedule.py --quick                  # one shape, 7 rounds: script check
    python bench/schedule.py --json out.jsonl         # the CPU grid, float32 and float64
    python bench/schedule.py --graph                  # also XLA:CPU's thunk graph per variant
    XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false python bench/schedule.py
    taskset -c 0 python bench/schedule.py             # one core

Each variant is a full gradient step (params, X, Y) -> (C, grads) and is timed against
`plain` in its own paired rotation (`manualgrad.benchmark.compare`); all of them return
the same numbers (checked before timing), because λ is passed as a *traced* 0.0:

| variant           | what it adds to the step                                              |
|-------------------|-----------------------------------------------------------------------|
| `plain`           | nothing: (a) `jax.value_and_grad` of the idiomatic cost               |
| `plain+l2`        | (a) of the idiomatic cost + λ Σ_l ‖W[l]‖²                              |
| `plain+norms`     | (a), then C + λ Σ_l ‖W[l]‖² (the norms are work no gradient needs)     |
| `manual`          | manualgrad's `mg.network(acts).value_and_grad`                        |
| `manual+l2`       | `manualgrad.functional.value_and_grad(..., l2=λ)` (a traced λ)         |
| `manual+norms`    | manual, then C + λ Σ_l ‖W[l]‖²                                         |
| `manual+epilogue` | manual, then dW[l] + λ W[l] (no independent work; dW is not a sink)   |

`--graph` runs a child process with `TF_CPP_VMODULE=thunk_executor=6` and reports, per
variant, the number of thunks XLA:CPU's ThunkExecutor runs and how many of them are
*source* nodes (ready at the start, so the executor can hand work to its thread pool
from the first instruction on); and the dot instructions of the optimised HLO.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import manualgrad as mg
from manualgrad import benchmark as B
from manualgrad import functional

#: layer dims, m, activations
GRID = [
    ((12288, 20, 7, 5, 1), 209, ("relu", "relu", "relu", "sigmoid")),
    ((784, 256, 256, 1), 1024, ("relu", "tanh", "sigmoid")),
    ((784, 256, 128, 1), 1024, ("relu", "relu", "sigmoid")),
    ((64, 512, 512, 512, 1), 256, ("relu", "relu", "relu", "sigmoid")),
]
VARIANTS = ("plain+l2", "plain+norms", "manual", "manual+l2", "manual+norms", "manual+epilogue")


def _norms(p):
    return sum(jnp.sum(p[k] ** 2) for k in p if k.startswith("W"))


def step_variants(acts: tuple[str, ...]) -> dict:
    """name -> function (params, X, Y, lam) -> (C, grads); lam is a traced 0.0."""
    plain = B.idiomatic_value_and_grad(acts)
    manual = mg.network(acts).value_and_grad

    def manual_l2(p, X, Y, lam):  # a traced λ: the functional name, which binds it per call
        return functional.value_and_grad(p, X, Y, activations=acts, l2=lam)

    def with_l2(p, X, Y, lam):
        return jax.value_and_grad(
            lambda p: B.idiomatic_cost(p, X, Y, activations=acts) + lam * _norms(p)
        )(p)

    def epilogue(p, X, Y, lam):
        C, g = manual(p, X, Y)
        return C, {k: v + lam * p[k] if k.startswith("W") else v for k, v in g.items()}

    def plus_norms(step):
        def f(p, X, Y, lam):
            C, g = step(p, X, Y)
            return C + lam * _norms(p), g

        return f

    return {
        "plain": lambda p, X, Y, lam: plain(p, X, Y),
        "plain+l2": with_l2,
        "plain+norms": plus_norms(plain),
        "manual": lambda p, X, Y, lam: manual(p, X, Y),
        "manual+l2": manual_l2,
        "manual+norms": plus_norms(manual),
        "manual+epilogue": epilogue,
    }


def dot_signature(hlo: str) -> list[str]:
    """The shapes of every dot in the optimised HLO (custom fusions included), sorted."""
    dots = re.findall(r"=\s*(\S+\[[\d,]*\](?:\{[\d,]*\})?)\s+dot\(", hlo)
    return sorted(d.split("{")[0] for d in dots)


def graph_stats(dims, m, acts, dtype_name) -> dict:
    """Thunk counts and source nodes per variant, from XLA:CPU's own log (a child process)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE="thunk_executor=2")
    spec = json.dumps([list(dims), m, list(acts), dtype_name])
    proc = subprocess.run([sys.executable, __file__, "--graph-child", spec], env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    stats, name = {}, None
    for line in proc.stderr.splitlines():
        if line.startswith("==== "):
            name = line[5:].strip()
        found = re.search(r"ThunkExecutor with (\d+) thunks: #source_nodes=(\d+)", line)
        if found and name:  # the last executor logged after the marker is the step's
            stats[name] = {"thunks": int(found[1]), "source_nodes": int(found[2])}
    return stats


def graph_child(spec: str) -> None:
    dims, m, acts, dtype_name = json.loads(spec)
    with B.policy_context("f64" if dtype_name == "float64" else "f32-highest") as dtype:
        params, X, Y = B.problem(dims, m, dtype)
        lam = jnp.zeros((), dtype)
        for name, fn in step_variants(tuple(acts)).items():
            print(f"==== {name}", file=sys.stderr, flush=True)
            B.aot_compile(fn, params, X, Y, lam)


def run_point(dims, m, acts, policy, *, rounds, graph, log) -> dict:
    with B.policy_context(policy) as dtype:
        params, X, Y = B.problem(dims, m, dtype)
        lam = jnp.zeros((), dtype)
        exe = {n: B.aot_compile(f, params, X, Y, lam) for n, f in step_variants(acts).items()}
        ref = exe["plain"](params, X, Y, lam)
        errs = {n: B.max_rel_err(e(params, X, Y, lam), ref) for n, e in exe.items()}
        tol = B.TOLERANCES[policy]
        if max(errs.values()) > tol:
            raise SystemExit(f"{dims}@{m} {policy}: variants disagree: {errs}")
        dots = {n: dot_signature(e.as_text()) for n, e in exe.items()}
        row = {
            "kind": "point", "layer_dims": list(dims), "m": m, "activations": list(acts),
            "policy": policy, "rounds": rounds, "max_rel_err": errs,
            "same_dots_as_plain": {n: d == dots["plain"] for n, d in dots.items()},
            "temp_bytes": {n: B.temp_bytes(e) for n, e in exe.items()},
        }  # fmt: skip
        if graph:
            row["graph"] = graph_stats(dims, m, acts, jnp.dtype(dtype).name)
        thunks = {n: (lambda e=e: e(params, X, Y, lam)) for n, e in exe.items()}
        others = {n: thunks[n] for n in VARIANTS}
        results = B.compare(others, thunks["plain"], rounds=rounds, slot_s=0.1)
        row["plain_ms"] = 1e3 * float(np.median(results["manual"][1].seconds["baseline"]))
        for n, (ratio, _) in results.items():
            row[n] = ratio.as_json()
            log(f"  {B.network_label(dims, m)} {policy:<11} {n:>15} / plain {ratio.text()} "
                f"{ratio.verdict}")  # fmt: skip
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one shape, float32, 7 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="paired rounds (default 21)")
    parser.add_argument("--graph", action="store_true", help="also report the thunk graphs")
    parser.add_argument("--policy", action="append", choices=["f32-highest", "f64"])
    parser.add_argument("--json", type=Path, help="write the JSON lines to this file")
    parser.add_argument("--graph-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.graph_child:
        graph_child(args.graph_child)
        return 0

    from rich.console import Console

    console = Console(stderr=True, width=120)
    rounds = args.rounds or (7 if args.quick else 21)
    grid = GRID[1:2] if args.quick else GRID
    policies = args.policy or (["f32-highest"] if args.quick else ["f32-highest", "f64"])
    info = {"kind": "machine", **B.machine(), "rounds": rounds,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}  # fmt: skip
    lines, rows = [json.dumps(info)], []
    for policy in policies:
        for dims, m, acts in grid:
            row = run_point(dims, m, acts, policy, rounds=rounds, graph=args.graph,
                            log=console.print)  # fmt: skip
            rows.append(row)
            lines.append(json.dumps(row))
            if args.json:
                args.json.write_text("\n".join(lines) + "\n")

    table = B.results_table(
        "each variant / plain (a): median of per-round ratios [95% CI]",
        f"{info['device']}, {info['cores']} cores, {info['date']}, {rounds} rounds"
        + (f", XLA_FLAGS={info['xla_flags']}" if info["xla_flags"] else ""),
        ("point", *VARIANTS),
    )
    for r in rows:
        label = f"{'f64' if r['policy'] == 'f64' else 'f32'} {r['layer_dims'][1]}…@{r['m']}"
        table.add_row(label, *(f"{r[n]['median']:.2f} [{r[n]['low']:.2f},{r[n]['high']:.2f}]"
                               for n in VARIANTS))  # fmt: skip
    Console(width=160).print(table)
    if args.graph:
        for r in rows:
            g = ", ".join(f"{n} {s['thunks']}/{s['source_nodes']}" for n, s in r["graph"].items())
            print(f"{r['policy']} {B.network_label(r['layer_dims'], r['m'])}: thunks/sources {g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
