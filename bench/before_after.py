"""Before/after: this checkout's manual and clipped steps against an earlier commit's, in one run.

    python bench/before_after.py                       # the CPU grid, 21 rounds, against 7fcd9e1
    python bench/before_after.py --quick               # two shapes, 7 rounds: script check
    python bench/before_after.py --grid 6,5,3,1@12 --rounds 3    # one tiny shape: smoke test
    python bench/before_after.py --ref v0.1.0 --json out.jsonl

The earlier tree's `src/manualgrad` is taken from git (`git archive REF`), its package
renamed `manualgrad_before`, and imported next to this checkout's, so both run in the
same process on the same inputs. Each step is checked against the other (same C and
grads to 1e-5 in float32) and then timed against it in interleaved rounds whose order
alternates (`manualgrad.benchmark.paired_rounds`); the figure is the median of the
per-round ratios now/before with its bootstrap 95 % interval (`ratio_interval`).

| step     | now                                      | before (the commit at `--ref`)        |
|----------|------------------------------------------|---------------------------------------|
| manual   | `mg.network(acts).value_and_grad`        | `value_and_grad(..., activations=…)`  |
| clipped  | `mg.network(acts).clipped_grads`, C = 1  | `clipped_grads(..., clip_norm=1.0)`   |

Both compiled ahead of time (`manualgrad.benchmark.aot_compile`), float32, XLA's
default matmul precision. The default `--ref`, 7fcd9e1, is the last commit before the
layer refactor. The earlier tree is called through its functional API (`functional`
below) with its static options (`activations`, `clip_norm`) closed over inside
`jax.jit`: the same trace as `jax.jit(..., static_argnames=STATIC_ARGNAMES)` there,
and a call that later trees (whose functional names are shims over `network`) accept.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import jax.numpy as jnp

import manualgrad as mg
from manualgrad.benchmark import (
    CPU_GRID,
    QUICK_GRID,
    aot_compile,
    append_json_lines,
    machine,
    max_rel_err,
    network_label,
    paired_rounds,
    parse_case,
    problem,
    ratio_interval,
)

ROOT = Path(__file__).resolve().parents[1]


def import_before(ref: str, into: Path):
    """`src/manualgrad` at `ref`, written under `into` as the package `manualgrad_before`."""
    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "src/manualgrad"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in archive.getmembers():
            if not member.isfile():
                continue
            rel = Path(member.name).relative_to("src/manualgrad")
            target = into / "manualgrad_before" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
            if target.suffix == ".py":
                text = re.sub(r"\bmanualgrad\b", "manualgrad_before", data.decode())
                data = text.encode()
            target.write_bytes(data)
    sys.path.insert(0, str(into))
    import manualgrad_before

    return manualgrad_before


def functional(before, name: str):
    """The earlier tree's keyword-option function `name`, `f(params, X, Y, activations=…)`.

    In `functional` (since the layer refactor, shims over `network`) or, at 7fcd9e1 and
    before, at the top level (`clipped_grads` lived in `per_example`; trees older than
    `functional` had every name at the top level).
    """
    return getattr(getattr(before, "functional", None), name, None) or getattr(before, name)


def steps(before, acts: tuple[str, ...], params, X, Y):
    """{"manual": (now, before), "clipped": (now, before)}: (params, X, Y) steps, compiled."""
    net = mg.network(acts)

    old_value_and_grad = functional(before, "value_and_grad")
    old_clipped_grads = functional(before, "clipped_grads")

    def old_manual(p, X, Y):
        return old_value_and_grad(p, X, Y, activations=acts)

    def old_clipped(p, X, Y):
        return old_clipped_grads(p, X, Y, clip_norm=1.0, activations=acts)

    def now_clipped(p, X, Y):
        return net.clipped_grads(p, X, Y, 1.0)

    pairs = {"manual": (net.value_and_grad, old_manual), "clipped": (now_clipped, old_clipped)}
    return {
        name: (aot_compile(now, params, X, Y), aot_compile(old, params, X, Y))
        for name, (now, old) in pairs.items()
    }


def measure(now, old, args, rounds):
    """(now/before ratio with its interval, max relative difference of their results)."""
    err = max_rel_err(now(*args), old(*args))
    timings = paired_rounds(
        {"now": lambda: now(*args), "before": lambda: old(*args)}, rounds=rounds
    )
    return ratio_interval(timings.seconds["now"], timings.seconds["before"]), err


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", default="7fcd9e1", help="the earlier commit (default 7fcd9e1)")
    parser.add_argument("--rounds", type=int, default=None, help="default 21 (7 with --quick)")
    parser.add_argument("--quick", action="store_true", help="two shapes, 7 rounds")
    parser.add_argument(
        "--grid",
        action="append",
        type=parse_case,
        metavar="DIMS@M",
        help="grid point like 784,128,64,1@256 (repeatable); default: the CPU grid",
    )
    parser.add_argument("--json", metavar="FILE", help="append JSON lines (machine, then rows)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (7 if args.quick else 21)
    grid = args.grid or (QUICK_GRID if args.quick else CPU_GRID)
    rows: list[dict] = [{"kind": "machine", "ref": args.ref, **machine()}]
    with tempfile.TemporaryDirectory() as tmp:
        before = import_before(args.ref, Path(tmp))
        print(f"now / before ({args.ref}), float32, {rounds} rounds; median [95% interval]")
        for case in grid:
            dims, m = tuple(case.layer_dims), case.m
            acts = ("relu",) * (len(dims) - 2) + ("sigmoid",)
            params, X, Y = problem(dims, m, jnp.float32)
            for name, (now, old) in steps(before, acts, params, X, Y).items():
                ratio, err = measure(now, old, (params, X, Y), rounds)
                if err > 1e-5:
                    raise SystemExit(f"{name} at {network_label(dims, m)} disagrees: {err:.3g}")
                row = {
                    "kind": "step",
                    "step": name,
                    "network": network_label(dims, m),
                    "ratio": ratio.median,
                    "low": ratio.low,
                    "high": ratio.high,
                    "rounds": rounds,
                    "agreement": err,
                }
                rows.append(row)
                print(
                    f"{name:8s} {row['network']:>22s}  {ratio.median:.3f} "
                    f"[{ratio.low:.3f}, {ratio.high:.3f}]",
                    flush=True,
                )
    if args.json:
        append_json_lines(args.json, rows, header=False)


if __name__ == "__main__":
    main()
