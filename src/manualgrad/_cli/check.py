"""`manualgrad check`: the hand-written gradients vs jax.grad and finite differences.

On the planar "flower" data set (:func:`manualgrad.data.datasets.flower`), in float64, it
builds `mg.network(activations, loss, l2=…, keep_prob=…)`, initialises it (He init
from `--seed`), computes the gradients with its jitted `value_and_grad` and compares
each parameter with `jax.grad` of its `cost` and with central differences
(:func:`manualgrad.checking.gradcheck.compare_with_autodiff`). A parameter passes when
(the thresholds are :mod:`manualgrad.checking.gradcheck`'s `AUTODIFF_TOL["float64"]`,
`FD_TOL` and `EPS`)

    relative difference to jax.grad            ≤ 1e-12  (measured ≈ 1e-16 … 1e-15)
    relative difference to finite differences  ≤ 1e-6   (ε = 1e-6; measured ≈ 4e-11 … 4e-9)

except that entries "at a kink" — whose central difference straddles the kink of a
relu or leaky_relu, some Z crossing 0 within ±ε — are compared with jax.grad only
(:func:`manualgrad.checking.gradcheck.network_kinks`): there a central difference
averages the two one-sided slopes. With zero biases and dropout, Z is exactly 0 for every
example whose previous layer was dropped entirely, so this is common.

With `--against FILE.py[:FUNCTION]` it checks *your* backward pass instead
(:func:`manualgrad.checking.backward.check_backward`): FUNCTION (default `L_model_backward`,
the course's `(AL, Y, caches)`; `--convention core` for `(params, X, Y)`) runs on
several float64 networks and every key it returns is compared with jax.grad, with a
diagnosis of each key that disagrees (:mod:`manualgrad.checking._mistakes`); with
`--l2 λ` the cost has the course's L2 term and FUNCTION gets λ as its last argument
(`L_model_backward_with_regularization(AL, Y, caches, lambd)`). A FUNCTION with the
regularization assignment's parameters `(X, Y, cache, …)` is checked on its 3-layer
network with its flat cache (`--convention flat`), and there `--keep-prob p` adds dropout
with masks the cache and jax.grad share (`backward_propagation_with_dropout(X, Y, cache,
keep_prob)`). The course's later layers, `conv_backward`, `pool_backward`, `rnn_backward`
and `lstm_backward` (by FUNCTION's name, or `--convention conv|pool|rnn|lstm`), are checked
against jax.vjp of their forwards on several configurations
(:func:`manualgrad.checking.layer_backward.check_layer_backward`). With
`--json`, what the file prints goes into the JSON's "printed", so stdout stays JSON.

Exit status: 0 if every parameter (key) passes, 1 if one fails, 2 for bad options, or
when FUNCTION cannot be loaded or returns something that cannot be compared.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from manualgrad._cli import options

if TYPE_CHECKING:
    from manualgrad._core.losses import Loss
    from manualgrad.checking.gradcheck import GradCheckReport

#: Options of the built-in check that --against does not use.
_NOT_WITH_AGAINST = ("layers", "activations", "m")

_DEFAULT_HIDDEN = (8, 4)
_DEFAULT_HIDDEN_ACTS = ("tanh", "relu")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # fmt: off
    options.declare(parser, {
        "--layers": dict(help="layer sizes n_x,n_1,…,n_L (n_x = 2 for the flower data; default "
                         "2,8,4,1, or 2,8,4,2 with --loss ce)"),
        "--activations": dict(metavar="NAME[,NAME...]", help=f"{options.ACTIVATIONS_HELP} "
                              "(default tanh,relu,sigmoid, or tanh,relu,softmax with --loss ce)"),
        "--loss": dict(default="bce", help="bce, ce (one-hot labels) or mse"),
        "--m": dict(type=int, default=400, help="number of examples (default 400)"),
        "--seed": dict(type=int, default=1, help="data, init and dropout seed"),
        "--l2": dict(type=float, default=0.0, help="L2 strength λ (default 0); with --against, "
                     "the cost's λ, passed to FUNCTION as its last argument (lambd)"),
        "--keep-prob": dict(type=float, default=1.0, help="dropout keep probability (default 1); "
                            "with --against, passed to FUNCTION as its last argument (the "
                            "regularization assignment's backward_propagation_with_dropout)"),
        "--json": dict(action="store_true", help="print JSON instead of a table"),
        "--against": dict(metavar="FILE.py[:FUNCTION]", help="check your own backward pass "
                          "FUNCTION (default L_model_backward) on several networks, with a "
                          "diagnosis of each key that disagrees with jax.grad"),
        "--convention": dict(help="with --against: 'course', FUNCTION(AL, Y, caches) -> "
                             "{dA0…, dW1…, db1…}; 'core', FUNCTION(params, X, Y) -> {dW1, db1, "
                             "…}; 'flat', the regularization assignment's FUNCTION(X, Y, cache) "
                             "-> {dZ3, dW3, …, db1}; 'conv', 'pool', 'rnn' or 'lstm', the "
                             "course's conv_backward(dZ, cache), pool_backward(dA, cache, mode), "
                             "rnn_backward(da, caches), lstm_backward(da, caches) (default: from "
                             "FUNCTION's name and parameters)"),
    })
    # fmt: on
    # the options --against refuses when they differ from their defaults
    parser.set_defaults(
        _not_with_against={name: parser.get_default(name) for name in _NOT_WITH_AGAINST}
    )


def _int_list(text: str, what: str) -> list[int]:
    from manualgrad._errors import ConfigError

    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"`{what}` must be comma-separated ints like 2,8,4,1, got {text!r}"
        ) from None


def _one_hot(loss: Loss) -> bool:
    """Whether the loss takes one-hot labels, one output unit per class: a softmax output.

    (The loss record has no field for its label format; its default output says it.)
    """
    return loss.default_output == "softmax"


def _config(args: argparse.Namespace) -> dict[str, Any]:
    """Resolve defaults and check the options (ConfigError -> exit 2)."""
    from manualgrad._core.losses import get_loss
    from manualgrad._errors import ConfigError

    record = get_loss(args.loss)  # unknown loss -> ConfigError
    loss = record.name
    n_out = 2 if _one_hot(record) else 1  # the flower's 2 classes: one-hot, or 0/1 labels
    if args.layers is None:
        layers = [2, *_DEFAULT_HIDDEN, n_out]
    else:
        layers = _int_list(args.layers, "--layers")
    if len(layers) < 2 or any(n < 1 for n in layers):
        raise ConfigError(f"`--layers` needs at least two positive sizes, got {layers}")
    if layers[0] != 2:
        raise ConfigError(
            f"`--layers` must start with n_x = 2 (the flower data is 2-D), got {layers[0]}"
        )
    if _one_hot(record) and layers[-1] != 2:
        raise ConfigError(
            f"`--loss {loss}` needs 2 output units (the flower's 2 classes, one-hot), "
            f"got {layers[-1]}"
        )
    if not _one_hot(record) and layers[-1] != 1:
        raise ConfigError(
            f"`--loss {loss}` uses the flower's 0/1 labels, so the output layer needs 1 unit, "
            f"got {layers[-1]}"
        )
    hidden = tuple(_DEFAULT_HIDDEN_ACTS[min(i, 1)] for i in range(len(layers) - 2))
    activations = options.activations(args.activations, len(layers) - 1, loss, hidden)
    if args.m < 1:
        raise ConfigError(f"`--m` must be ≥ 1, got {args.m}")
    return {
        "layers": layers,
        "activations": activations,
        "loss": loss,
        "m": args.m,
        "seed": args.seed,
        "l2": args.l2,
        "keep_prob": args.keep_prob,
    }


def check(config: dict[str, Any]) -> GradCheckReport:
    """Run the comparison for a resolved config; returns a GradCheckReport.

    The network is `mg.network(activations, loss, l2=, keep_prob=)`; its jitted
    `value_and_grad` (the hand-written backward) is compared with `jax.grad` of its
    `cost` and with central differences, entries at a relu kink with jax.grad alone.
    """
    import jax
    import jax.numpy as jnp

    import manualgrad as mg
    from manualgrad._core.losses import get_loss
    from manualgrad.checking.gradcheck import (
        AUTODIFF_TOL,
        EPS,
        FD_TOL,
        compare_with_autodiff,
        network_kinks,
    )
    from manualgrad.data.datasets import flower

    # bad options raise a ManualgradError here or while tracing (exit 2, one line)
    net = mg.network(
        config["activations"], config["loss"], l2=config["l2"], keep_prob=config["keep_prob"]
    )
    with jax.enable_x64(True):
        X, y = flower(config["m"], config["seed"])
        Y = np.eye(2)[y[0].astype(int)].T if _one_hot(get_loss(config["loss"])) else y
        X, Y = jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64)
        init_key, dropout_key = jax.random.split(jax.random.key(config["seed"]))
        key = dropout_key if config["keep_prob"] < 1 else None
        params = net.init(config["layers"], init_key, method="he", dtype=jnp.float64)
        _, grads = jax.jit(net.value_and_grad)(params, X, Y, key)
        return compare_with_autodiff(
            grads,
            lambda p: net.cost(p, X, Y, key),
            params,
            finite_differences=True,
            eps=EPS,
            autodiff_tol=AUTODIFF_TOL["float64"],
            fd_tol=FD_TOL,
            kinks=lambda p: network_kinks(net, p, X, key),
        )


def _print_table(config: dict[str, Any], report: GradCheckReport) -> None:
    from rich.console import Console
    from rich.table import Table

    from manualgrad.checking.gradcheck import EPS

    console = Console()
    console.print(
        f"manualgrad check: layers {','.join(map(str, config['layers']))}, "
        f"activations {','.join(config['activations'])}, loss {config['loss']}, "
        f"flower m={config['m']} seed={config['seed']}, l2={config['l2']}, "
        f"keep_prob={config['keep_prob']}, float64"
    )
    table = Table()
    table.add_column("param")
    table.add_column("shape")
    table.add_column("vs jax.grad", justify="right")
    table.add_column("vs finite diff.", justify="right")
    table.add_column("at a kink", justify="right")
    table.add_column("verdict")
    for row in report.rows:
        verdict = "[green]PASS[/green]" if row.passed else "[bold red]FAIL[/bold red]"
        table.add_row(
            row.name,
            "×".join(map(str, row.shape)),
            f"{row.autodiff:.2e}",
            "–" if row.finite_difference is None else f"{row.finite_difference:.2e}",
            str(row.at_kink) if row.at_kink else "–",
            verdict,
        )
    console.print(table)
    console.print(
        f"thresholds: ≤ {report.autodiff_tol:.0e} vs jax.grad, ≤ {report.fd_tol:.0e} vs central "
        f"differences (ε = {EPS:.0e}); relative difference ‖g − g̃‖ / (‖g‖ + ‖g̃‖)"
    )
    n_kinks = sum(row.at_kink for row in report.rows)
    if n_kinks:
        console.print(
            f"at a kink: {n_kinks} entries whose central difference straddles a relu kink "
            "(some Z crosses 0 within ±ε, where g' jumps) are checked against jax.grad only"
        )
    if report.passed:
        console.print(f"[green]PASS[/green]: all {len(report.rows)} parameters agree")
    else:
        failed = [row.name for row in report.rows if not row.passed]
        console.print(f"[bold red]FAIL[/bold red]: {', '.join(failed)} (worst: {report.worst})")


def _run_against(args: argparse.Namespace) -> int:
    """`--against`: the user's backward on the default cases of `manualgrad.checking.backward`."""
    from manualgrad._errors import ConfigError
    from manualgrad.checking.backward import (
        BackwardReport,
        check_backward,
        default_cases,
        detect_convention,
        flat_cases,
        load_function,
    )
    from manualgrad.checking.layer_backward import (
        LAYER_KINDS,
        LayerReport,
        check_layer_backward,
        layer_kind,
    )

    for name, default in args._not_with_against.items():
        if getattr(args, name) != default:
            option = "--" + name.replace("_", "-")
            raise ConfigError(
                f"`{option}` does not apply to `--against`, which checks your function on its "
                "own set of networks (choose them with `--seed`)"
            )
    # with --json, what the file prints (at load or while it runs) is kept out of stdout
    printed = io.StringIO()
    name = args.against.rpartition(":")[2] if ".py:" in args.against else None
    report: BackwardReport | LayerReport
    with contextlib.redirect_stdout(printed) if args.json else contextlib.nullcontext():
        func = load_function(args.against)
        kind = args.convention if args.convention in LAYER_KINDS else None
        if args.convention is None:
            kind = layer_kind(name or getattr(func, "__name__", ""))
        if kind is not None:
            for option, value in (("--l2", args.l2), ("--keep-prob", args.keep_prob != 1)):
                if value:
                    raise ConfigError(
                        f"`{option}` does not apply to the course's {kind}_backward, which is "
                        "checked on its own: its cost has no L2 term and no dropout"
                    )
            report = check_layer_backward(func, kind=kind, seed=args.seed, name=name)
        else:
            convention = args.convention or detect_convention(func)
            report = check_backward(
                func,
                convention=convention,
                loss=args.loss,
                cases=(flat_cases if convention == "flat" else default_cases)(args.seed),
                name=name,
                l2=args.l2,
                keep_prob=args.keep_prob,
            )
    if args.json:
        json.dump(report.to_dict() | {"printed": printed.getvalue()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        report.print()
    return 0 if report.passed else 1


def run(args: argparse.Namespace) -> int:
    if args.against is not None:
        return _run_against(args)
    if args.convention is not None:
        from manualgrad._errors import ConfigError

        raise ConfigError("`--convention` needs `--against FILE.py[:FUNCTION]`")
    config = _config(args)
    report = check(config)
    if args.json:
        json.dump({"config": config, **report.to_dict()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_table(config, report)
    return 0 if report.passed else 1
