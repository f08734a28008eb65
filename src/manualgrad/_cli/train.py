"""`manualgrad train`: train a network with the hand-written gradients and an optax optimizer.

Only wiring: options -> data (`manualgrad.data`, `manualgrad.datasets`) -> `train` ->
summary, plot (`manualgrad.plot`) and checkpoints (`manualgrad.checkpoint`).
Ctrl-C stops at the next progress update, saves a checkpoint (with --checkpoint) and
exits with code 130; `--resume` continues from it to exactly the same result.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import signal
import sys
import time

import numpy as np

from manualgrad._errors import ConfigError, ShapeError

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from manualgrad.datasets import DATASETS

    d = p.add_argument_group("data")
    d.add_argument(
        "--data",
        default="flower",
        metavar="NAME|FILE",
        help=f"a built-in data set ({', '.join(DATASETS)}) or a .npz/.csv file (default: flower)",
    )
    d.add_argument(
        "--m", type=int, default=None, help="number of examples to generate for a built-in data set"
    )
    d.add_argument(
        "--examples",
        choices=("rows", "columns"),
        default=None,
        help="layout of a data file: one example per row or per column "
        "(default: columns for .npz, rows for .csv)",
    )
    d.add_argument(
        "--label-column",
        default="y",
        metavar="NAME",
        help="name of the label column of a .csv file (default: y)",
    )
    d.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="fraction of examples held out for testing (default: 0.2)",
    )
    n = p.add_argument_group("network")
    n.add_argument(
        "--layers",
        default=None,
        metavar="N0,N1,...,NL",
        help="layer sizes including input and output (default: n_x,16,8,n_y)",
    )
    n.add_argument(
        "--activations",
        default="tanh",
        metavar="NAME[,NAME...]",
        help="hidden activation, or one per layer (default: tanh; the output "
        "layer follows the loss: sigmoid for bce, softmax for ce)",
    )
    n.add_argument(
        "--loss",
        choices=("bce", "ce", "mse"),
        default=None,
        help="loss (default: bce for one output row, ce for one-hot Y)",
    )
    n.add_argument(
        "--init",
        choices=("he", "xavier", "random"),
        default=None,
        help="weight initialisation (default: he for relu, xavier otherwise)",
    )
    o = p.add_argument_group("optimisation")
    o.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="(default: adam)")
    o.add_argument("--lr", type=float, default=0.01, help="learning rate (default: 0.01)")
    o.add_argument("--epochs", type=int, default=1000, help="(default: 1000)")
    o.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="mini-batch size (default: the whole training set)",
    )
    o.add_argument(
        "--devices",
        type=int,
        default=None,
        metavar="N",
        help="data-parallel over the first N devices: every batch split by columns, the "
        "sums of (2) all-reduced; batch sizes must be multiples of N (default: one device)",
    )
    o.add_argument("--l2", type=float, default=0.0, help="L2 strength λ (default: 0)")
    o.add_argument(
        "--keep-prob",
        type=float,
        default=1.0,
        help="dropout keep probability of hidden layers (default: 1)",
    )
    o.add_argument("--seed", type=int, default=1, help="seed of init, split, shuffles (default: 1)")
    o.add_argument("--float64", action="store_true", help="train in float64")
    c = p.add_argument_group("output")
    c.add_argument(
        "--checkpoint",
        default=None,
        metavar="DIR",
        help="save checkpoints to DIR (every --checkpoint-every steps, on Ctrl-C and at the end)",
    )
    c.add_argument(
        "--checkpoint-every",
        type=int,
        default=1000,
        metavar="N",
        help="checkpoint every N optimizer steps, rounded up to whole epochs (default: 1000)",
    )
    c.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint in --checkpoint DIR, if there is one",
    )
    c.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="write the cost curve (and the decision boundary for 2-D data)",
    )
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.add_argument(
        "--noise-scale",
        action="store_true",
        help="print the gradient noise scale B_simple = tr(Σ)/|G|² (McCandlish et al. 2018) "
        "of the final params on the training set: about the largest useful batch size",
    )


def _optimizer(name: str, lr: float):
    import optax

    if lr <= 0 or not math.isfinite(lr):
        raise ConfigError(f"--lr must be a positive number, got {lr}")
    return {
        "sgd": lambda: optax.sgd(lr),
        "momentum": lambda: optax.sgd(lr, momentum=0.9),
        "rmsprop": lambda: optax.rmsprop(lr, decay=0.9, eps=1e-8),
        "adam": lambda: optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8),
    }[name]()


def _load(args) -> tuple[np.ndarray, np.ndarray, str]:
    from manualgrad.data import load_data
    from manualgrad.datasets import DATASETS

    if args.data in DATASETS:
        kwargs = {} if args.m is None else {"m": args.m}
        X, Y = DATASETS[args.data](**kwargs)
        return np.asarray(X, np.float64), np.asarray(Y, np.float64), args.data
    X, Y = load_data(args.data, examples=args.examples, label_column=args.label_column)
    return X, Y, args.data


def _network(args, n_x: int, n_y: int, loss: str) -> tuple[list[int], tuple[str, ...]]:
    if args.layers is None:
        dims = [n_x, 16, 8, n_y]
    else:
        try:
            dims = [int(v) for v in args.layers.split(",")]
        except ValueError:
            raise ConfigError(
                f"--layers must be comma-separated ints, got {args.layers!r}"
            ) from None
        if len(dims) < 2 or min(dims) < 1:
            raise ConfigError(f"--layers needs at least input and output sizes ≥ 1, got {dims}")
        if dims[0] != n_x:
            raise ShapeError(
                f"--layers starts with {dims[0]} inputs but the data has {n_x} "
                f"features: use --layers {n_x},{','.join(map(str, dims[1:]))}"
            )
        if dims[-1] != n_y:
            raise ShapeError(
                f"--layers ends with {dims[-1]} outputs but Y has {n_y} rows "
                f"(loss {loss!r}): use --layers {','.join(map(str, dims[:-1]))},{n_y}"
            )
    names = tuple(a.strip() for a in args.activations.split(","))
    L = len(dims) - 1
    output = {"bce": "sigmoid", "ce": "softmax", "mse": "linear"}[loss]
    if len(names) == 1:
        acts = names * (L - 1) + (output,)
    elif len(names) == L:
        acts = names
    else:
        raise ConfigError(
            f"--activations needs 1 name (hidden layers) or {L} (one per layer), "
            f"got {len(names)}: {args.activations!r}"
        )
    return dims, acts


def _fingerprint(args, dims, acts, loss, init, dtype, X, Y) -> dict:
    data_hash = hashlib.sha256(
        np.ascontiguousarray(X).tobytes() + np.ascontiguousarray(Y).tobytes()
    ).hexdigest()[:16]
    return {
        "layers": dims,
        "activations": list(acts),
        "loss": loss,
        "init": init,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "l2": args.l2,
        "keep_prob": args.keep_prob,
        "seed": args.seed,
        "dtype": str(dtype),
        "data": data_hash,
        "test_fraction": args.test_fraction,
    }


def _parallel_options(devices: int | None, m: int, batch_size: int | None) -> dict:
    """`value_and_grad_fn` for `train` on a data-parallel mesh of `devices`, or nothing."""
    if devices is None:
        return {}
    from manualgrad.functional import value_and_grad
    from manualgrad.parallel import data_mesh, data_parallel_fn

    mesh = data_mesh(devices)
    B = m if batch_size is None or batch_size >= m else batch_size
    sizes = sorted({B, m % B} - {0})
    bad = [size for size in sizes if size % devices]
    if bad:
        raise ConfigError(
            f"--devices {devices}: every batch must split into {devices} equal blocks of "
            f"columns, but {m} training examples in batches of {B} give batches of "
            f"{' and '.join(map(str, sizes))} — choose --batch-size (and a training set "
            f"size) whose batches are multiples of {devices}"
        )
    return {"value_and_grad_fn": data_parallel_fn(mesh, value_and_grad)}


def run(args: argparse.Namespace) -> int:
    import jax

    with jax.enable_x64(bool(args.float64)):
        return _run(args)


def _run(args) -> int:
    import jax
    import jax.numpy as jnp
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from manualgrad.checkpoint import Checkpoint, checkpoint_path, load_checkpoint, save_checkpoint
    from manualgrad.data import as_targets, train_test_split
    from manualgrad.functional import init_params
    from manualgrad.train import accuracy, steps_per_epoch, train

    if args.epochs < 0:
        raise ConfigError(f"--epochs must be ≥ 0, got {args.epochs}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    if args.checkpoint_every < 1:
        raise ConfigError(f"--checkpoint-every must be ≥ 1, got {args.checkpoint_every}")
    if args.resume and args.checkpoint is None:
        raise ConfigError("--resume needs --checkpoint DIR (where to resume from)")

    X, Y, source = _load(args)
    loss = args.loss or ("bce" if Y.shape[0] == 1 else "ce")
    X, Y = as_targets(X, Y, loss=loss, source=source)
    dims, acts = _network(args, X.shape[0], Y.shape[0], loss)
    X_tr, Y_tr, X_te, Y_te = train_test_split(
        X, Y, test_fraction=args.test_fraction, seed=args.seed
    )
    dtype = jnp.float64 if args.float64 else jnp.float32
    init = args.init or ("he" if acts[0] in ("relu", "leaky_relu") else "xavier")
    k_init, k_train = jax.random.split(jax.random.key(args.seed))
    params = init_params(dims, k_init, method=init, dtype=dtype)
    optimizer = _optimizer(args.optimizer, args.lr)
    opt_state = optimizer.init(params)
    fingerprint = _fingerprint(args, dims, acts, loss, init, np.dtype(dtype), X, Y)
    m = X_tr.shape[1]
    spe = steps_per_epoch(m, args.batch_size)

    err = Console(stderr=True)
    start_epoch, history0 = 0, np.zeros((0,))
    if args.resume and os.path.exists(checkpoint_path(args.checkpoint)):
        ckpt = load_checkpoint(args.checkpoint, (params, opt_state), fingerprint)
        if ckpt.epoch > args.epochs:
            raise ConfigError(
                f"the checkpoint is at epoch {ckpt.epoch}, past --epochs "
                f"{args.epochs}: ask for at least {ckpt.epoch} epochs"
            )
        params, opt_state, start_epoch, history0 = (
            ckpt.params,
            ckpt.opt_state,
            ckpt.epoch,
            ckpt.history,
        )
        k_train = ckpt.key
        if not args.quiet:
            err.print(f"resuming from {checkpoint_path(args.checkpoint)} at epoch {start_epoch}")
    elif args.resume and not args.quiet:
        err.print(f"no checkpoint in {args.checkpoint}; starting from scratch")

    parallel_options = _parallel_options(args.devices, m, args.batch_size)
    every_epochs = max(1, math.ceil(args.checkpoint_every / spe))
    per_call = max(1, math.ceil(args.epochs / 100))
    if args.checkpoint:
        per_call = min(per_call, every_epochs)

    def save(epoch, params, opt_state, history):
        save_checkpoint(
            args.checkpoint,
            Checkpoint(params, opt_state, epoch, epoch * spe, k_train, history, fingerprint),
        )

    interrupted = False

    def on_sigint(signum, frame):
        nonlocal interrupted
        interrupted = True

    last_saved = start_epoch
    progress = Progress(
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs  cost {task.fields[cost]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=args.quiet or not err.is_terminal,
    )

    def callback(p) -> bool:
        nonlocal last_saved
        progress.update(task, completed=p.epoch, cost=f"{p.cost:.6g}")
        if args.checkpoint and (p.epoch - last_saved >= every_epochs or interrupted):
            save(p.epoch, p.params, p.opt_state, np.concatenate([history0, p.history]))
            last_saved = p.epoch
        return interrupted

    previous = signal.signal(signal.SIGINT, on_sigint)
    t0 = time.perf_counter()
    try:
        with progress:
            task = progress.add_task("train", total=args.epochs, completed=start_epoch, cost="…")
            result = train(
                params,
                X_tr,
                Y_tr,
                optimizer,
                activations=acts,
                loss=loss,
                epochs=args.epochs,
                batch_size=args.batch_size,
                l2=args.l2,
                keep_prob=args.keep_prob,
                key=k_train,
                opt_state=opt_state,
                start_epoch=start_epoch,
                epochs_per_call=per_call,
                callback=callback,
                **parallel_options,
            )
            jax.block_until_ready(result.params)
    finally:
        signal.signal(signal.SIGINT, previous)
    seconds = time.perf_counter() - t0
    history = np.concatenate([history0, result.history])
    if interrupted:
        where = f"; checkpoint saved in {args.checkpoint}" if args.checkpoint else ""
        print(f"manualgrad train: interrupted at epoch {result.epoch}{where}", file=sys.stderr)
        return 130
    if args.checkpoint:
        save(result.epoch, result.params, result.opt_state, history)

    steps = (result.epoch - start_epoch) * spe
    table = Table(title="manualgrad train", show_header=False)
    table.add_row(
        "data", f"{source}: {m} train / {X_te.shape[1]} test examples, {X.shape[0]} features"
    )
    table.add_row("network", f"{dims} {','.join(acts)}, loss {loss}, {np.dtype(dtype)}")
    table.add_row("optimizer", f"{args.optimizer} lr {args.lr}, batch {args.batch_size or m}")
    table.add_row("train accuracy", f"{accuracy(result.params, X_tr, Y_tr, activations=acts):.2%}")
    if X_te.shape[1]:
        table.add_row(
            "test accuracy", f"{accuracy(result.params, X_te, Y_te, activations=acts):.2%}"
        )
    table.add_row("final cost", f"{history[-1]:.6g}" if len(history) else "-")
    table.add_row("epochs / steps", f"{result.epoch} / {result.epoch * spe}")
    table.add_row("time", f"{seconds:.2f} s (compilation included)")
    table.add_row("steps/s", f"{steps / seconds:,.0f}" if seconds > 0 else "-")
    if args.noise_scale:
        from manualgrad.curvature import gradient_noise_scale

        Xn, Yn = jnp.asarray(X_tr, dtype), jnp.asarray(Y_tr, dtype)
        ns = gradient_noise_scale(result.params, Xn, Yn, activations=acts, loss=loss, l2=args.l2)
        G2, tr = float(ns.grad_sq_norm), float(ns.trace_cov)
        value = f"{float(ns.b_simple):,.1f}" if G2 > 0 else f"> {m} (|G|² within its noise)"
        table.add_row("noise scale B_simple", f"{value}; tr Σ {tr:.3g}, |G|² {G2:.3g}")
    if args.plot:
        from manualgrad.plot import plot_training

        plot_training(args.plot, history, params=result.params, X=X_tr, Y=Y_tr, activations=acts)
        table.add_row("plot", args.plot)
    Console(soft_wrap=True).print(table)
    return 0
