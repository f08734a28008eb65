"""The `manualgrad` command line: wires options to library calls, nothing more.

Each sub-command lives in its own module under `manualgrad._cli` and provides
`add_arguments(parser)` and `run(args) -> int`. Bad input raises a
:class:`manualgrad.ManualgradError` (or `OSError` for files), which becomes one line
on stderr and exit code 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from manualgrad._errors import ManualgradError

__all__ = [
    "build_parser",
    "main",
]

#: sub-command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("manualgrad._cli.check", "compare the hand-written gradients with jax.grad"),
    "bench": (
        "manualgrad._cli.bench",
        "time the hand-written gradient step against an idiomatic jax.grad step",
    ),
    "train": ("manualgrad._cli.train", "train a network with the hand-written gradients and optax"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command; with `command`, only that one's options are declared.

    A sub-command's module is imported to declare its options, so `manualgrad check`
    builds `build_parser("check")` and never imports what `bench` or `train` need (the
    benchmark harness above all); `build_parser()` declares them all, and a name that is
    no command (`""`) none (`manualgrad --help`).
    """
    parser = argparse.ArgumentParser(
        prog="manualgrad",
        description="Hand-derived backpropagation formulas in jax.numpy, proven against jax.grad.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if command is None or name == command:
            importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # the command comes first (the top level has no options but --help): declare its alone
    named = next((a for a in argv[:1] if a in COMMANDS), "")
    parser = build_parser(named)
    args = parser.parse_args(argv)
    args.argv = argv  # the command line as given (`train` prints it to resume a run)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).run(args))
    except (ManualgradError, OSError) as err:
        print(f"manualgrad {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"manualgrad {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
