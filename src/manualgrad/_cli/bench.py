"""`manualgrad bench`: time the hand-written gradient step against what a JAX user writes.

Wires options to :func:`manualgrad.benchmark.run`; prints a table that fits 100
columns (`--wide`: every column) and writes one JSON object per line (the machine, the
matmul ceilings, the grid points) to `--json`, if given.
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
        help="a small grid and few rounds: about a minute on a 2-core CPU",
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
    parser.add_argument(
        "--rounds", type=int, default=None, help="paired rounds per comparison (default 21; 7 "
        "with --quick)"
    )  # fmt: skip
    parser.add_argument(
        "--calls", type=int, default=None,
        help="calls per variant and round (default: enough for --slot seconds)",
    )  # fmt: skip
    parser.add_argument(
        "--slot", type=float, default=None, metavar="SECONDS",
        help="target time of one variant's turn in a round (default 0.2; 0.02 with --quick)",
    )  # fmt: skip
    parser.add_argument(
        "--equinox", action="store_true", help="also time baseline (b), an equinox MLP"
    )
    parser.add_argument("--torch", action="store_true", help="also time baseline (c), PyTorch")
    parser.add_argument(
        "--diagnostics",
        action="store_true",
        help="also time jax.grad of manualgrad's own cost and the custom_vjp bridge",
    )
    parser.add_argument("--wide", action="store_true", help="print every column")
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
    rounds = args.rounds or (7 if args.quick else 21)
    slot = args.slot if args.slot is not None else (0.02 if args.quick else 0.2)
    ceiling_n = args.ceiling_n or (512 if args.quick and on_cpu else None)

    console = Console()
    if args.wide:  # as wide as its columns need: let the terminal wrap the lines
        table_console = Console(width=300)
    else:  # 100 columns, also when writing to a file or a pipe
        table_console = console if console.is_terminal else Console(width=100)
    out = open(args.json, "w") if args.json else None  # noqa: SIM115
    try:

        def emit(row: dict) -> None:
            if out is not None:
                out.write(json.dumps(row) + "\n")
                out.flush()
            if row["kind"] == "grid":
                label = benchmark.network_label(row["layer_dims"], row["m"])
                ratio = row.get("manual_vs_jax") or {}
                status = row.get("error") or (
                    f"manual/(a) {ratio.get('median', 0):.3f} "
                    f"[{ratio.get('low', 0):.3f}, {ratio.get('high', 0):.3f}] "
                    f"{ratio.get('verdict', '')}"
                )
                console.print(f"  {row['policy']:<12} {label}: {status}", highlight=False)

        rows = benchmark.run(
            cases,
            policies,
            rounds=rounds,
            calls=args.calls,
            slot_s=slot,
            ceiling_n=ceiling_n,
            emit=emit,
            equinox=args.equinox,
            torch=args.torch,
            diagnostics=args.diagnostics,
        )
    finally:
        if out is not None:
            out.close()
    table_console.print(benchmark.table(rows, wide=args.wide))
    console.print(benchmark.summary(rows), highlight=False)
    failed = [r for r in rows if "error" in r]
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m manualgrad._cli.bench ...`: the same command without the CLI registry."""
    parser = argparse.ArgumentParser(prog="manualgrad bench", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
