"""`manualgrad bench`: time the hand-written gradient step against jax.grad.

Wires options to :func:`manualgrad.benchmark.run`; prints a rich table and writes one
JSON object per line (ceilings and grid points) to `--json`, if given.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from manualgrad import benchmark


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small grid and short timing budget: under a minute on CPU",
    )
    parser.add_argument("--json", metavar="FILE", help="write one JSON object per line to FILE")
    parser.add_argument(
        "--precision",
        action="append",
        choices=list(benchmark.POLICIES),
        metavar="POLICY",
        help=f"policy to run (repeatable; one of {', '.join(benchmark.POLICIES)}); default: "
        "all (f64 on CPU only)",
    )
    parser.add_argument(
        "--grid",
        action="append",
        type=benchmark.parse_case,
        metavar="DIMS@M",
        help="grid point like 12288,20,7,5,1@209 (repeatable); default: a grid for the device",
    )
    parser.add_argument("--reps", type=int, default=None, help="max timed rounds per grid point")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="timing budget per grid point (rounds are cut to fit, at least 3)",
    )
    parser.add_argument(
        "--torch", action="store_true", help="also time PyTorch autograd if torch is importable"
    )
    parser.add_argument("--ceiling-n", type=int, default=None, help="size of the square matmul")


def run(args: argparse.Namespace) -> int:
    import jax
    from rich.console import Console

    on_cpu = jax.devices()[0].platform == "cpu"
    if args.grid:
        cases = args.grid
    elif args.quick:
        cases = benchmark.QUICK_GRID
    else:
        cases = benchmark.CPU_GRID if on_cpu else benchmark.GPU_GRID
    policies = args.precision or [p for p in benchmark.POLICIES if on_cpu or p != "f64"]
    reps = args.reps or (15 if args.quick else 100)
    budget = args.budget if args.budget is not None else (0.5 if args.quick else 4.0)
    ceiling_n = args.ceiling_n or (512 if args.quick and on_cpu else None)

    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    out = open(args.json, "w") if args.json else None  # noqa: SIM115
    try:

        def emit(row: dict) -> None:
            if out is not None:
                out.write(json.dumps(row) + "\n")
                out.flush()
            if row["kind"] == "grid":
                dims = ",".join(map(str, row["layer_dims"]))
                status = row.get("error") or f"ratio {row['ratio']:.3f}"
                console.print(f"  {row['policy']:<12} {dims}@{row['m']}: {status}", highlight=False)

        rows = benchmark.run(
            cases,
            policies,
            reps=reps,
            budget_s=budget,
            ceiling_n=ceiling_n,
            emit=emit,
            torch=args.torch,
        )
    finally:
        if out is not None:
            out.close()
    console.print(benchmark.table(rows))
    ratios = [r["ratio"] for r in rows if r["kind"] == "grid" and "ratio" in r]
    if ratios:
        console.print(f"worst manual/autodiff ratio: {max(ratios):.3f} over {len(ratios)} points")
    failed = [r for r in rows if "error" in r]
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m manualgrad._cli.bench ...`: the same command without the CLI registry."""
    parser = argparse.ArgumentParser(prog="manualgrad bench", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
