"""`manualgrad train`: train a network with the hand-written gradients and an optax optimizer.

Only wiring: options -> data (`manualgrad.data.files.load`) -> `mg.network` and
`mg.train` with its callbacks (`Checkpointer`, `StopOnSignal`), which validate the
options, checkpoint and resume -> summary and plot (`manualgrad.training.plot`). With
--checkpoint, Ctrl-C (or SIGTERM) stops at the next progress update, saves, prints the
command that resumes and exits with code 130 (143); that command ends with exactly the
params of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from typing import Any

import numpy as np

from manualgrad._cli import options
from manualgrad._errors import ConfigError, ShapeError

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")


_PRIVACY_TITLE = (
    "privacy (DP-SGD: Poisson sampling, per-example clipping, Gaussian noise; "
    'needs pip install "manualgrad[dp]")'
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from manualgrad._core.losses import LOSSES
    from manualgrad.data.datasets import DATASETS

    # fmt: off
    options.declare(p, title="data", arguments={
        "--data": dict(default="flower", metavar="NAME|FILE", help="a built-in data set "
                       f"({', '.join(DATASETS)}) or a .npz/.csv file (default: flower)"),
        "--m": dict(type=int, help="number of examples to generate for a built-in data set"),
        "--examples": dict(choices=("rows", "columns"), help="layout of a data file: one "
                           "example per row or per column (default: columns for .npz, rows "
                           "for .csv)"),
        "--label-column": dict(default="y", metavar="NAME",
                               help="name of the label column of a .csv file (default: y)"),
        "--test-fraction": dict(type=float, default=0.2,
                                help="fraction of examples held out for testing (default: 0.2)"),
    })
    options.declare(p, title="network", arguments={
        "--model": dict(choices=("mlp", "cnn", "lstm"), default="mlp", help="mlp: dense layers "
                        "(--layers), on token ids Embedding → LayerNorm → Flatten → Dense; "
                        "cnn: for each of --channels a 3×3 convolution (padding 1) "
                        "and a 2×2 max pool, then a dense output layer, on images (H, W, C, m) "
                        f"(--data digits); lstm: on token ids (--data names) Embedding(V, "
                        f"{TOKEN_DIM}) → LSTM({TOKEN_UNITS}) → Dense, many-to-one (default: mlp)"),
        "--channels": dict(metavar="C1[,C2...]", help="filters of each conv layer of "
                           "--model cnn (default: 8)"),
        "--layers": dict(metavar="N0,N1,...,NL",
                         help="layer sizes including input and output (default: n_x,16,8,n_y)"),
        "--activations": dict(metavar="NAME[,NAME...]",
                              help=f"{options.ACTIVATIONS_HELP} (default: tanh)"),
        "--loss": dict(choices=tuple(LOSSES),
                       help="loss (default: bce for one output row, ce for one-hot Y)"),
        "--init": dict(choices=("he", "xavier", "random"),
                       help="weight initialisation (default: he for relu, xavier otherwise)"),
    })
    options.declare(p, title="optimisation", arguments={
        "--optimizer": dict(choices=OPTIMIZERS, default="adam", help="(default: adam)"),
        "--lr": dict(type=float, default=0.01, help="learning rate (default: 0.01)"),
        "--epochs": dict(type=int, help="(default: 1000; 30 with --dp)"),
        "--batch-size": dict(type=int, help="mini-batch size, at most the training set's size "
                             "(default: the whole set)"),
        "--devices": dict(type=options.positive_int, metavar="N", help="data-parallel over the "
                          "first N devices: every batch split by columns, the sums of (2) "
                          "all-reduced; batch sizes must be multiples of N (default: one device)"),
        "--l2": dict(type=float, default=0.0, help="L2 strength λ (default: 0)"),
        "--keep-prob": dict(type=float, default=1.0,
                            help="dropout keep probability of hidden layers (default: 1)"),
        "--seed": dict(type=int, default=1, help="seed of init, split, shuffles (default: 1)"),
        "--float64": dict(action="store_true", help="train in float64"),
    })
    options.declare(p, title=_PRIVACY_TITLE, arguments={
        "--dp": dict(action="store_true", help="train with differential privacy"),
        "--target-epsilon": dict(type=float, metavar="ε", help="privacy budget: σ is "
                                 "calibrated so that all the steps spend at most ε"),
        "--noise-multiplier": dict(type=float, metavar="σ", help="noise std / clip norm "
                                   "(instead of, or with, a target ε: then a run that would "
                                   "spend more than the target is refused)"),
        "--delta": dict(type=float, default=1e-5, help="δ of (ε, δ) (default: 1e-5)"),
        "--clip-norm": dict(type=float, default=1.0,
                            help="per-example clip norm C (default: 1.0)"),
        "--sampling-rate": dict(type=float, metavar="q", help="each example is in each batch "
                                "with probability q; an epoch is 1/q steps (default: 256/N, an "
                                "expected batch of 256 of the N training examples)"),
        "--accountant": dict(choices=("pld", "rdp"), default="pld",
                             help="(default: pld, tight)"),
    })
    options.declare(p, title="output", arguments={
        "--checkpoint": dict(metavar="DIR", help="save checkpoints to DIR (every "
                             "--checkpoint-every steps, on Ctrl-C and at the end)"),
        "--checkpoint-every": dict(type=int, metavar="N", help="checkpoint every N optimizer "
                                   "steps, rounded up to whole epochs (default: 1000 with "
                                   "--checkpoint)"),
        "--resume": dict(action="store_true",
                         help="continue from the checkpoint in --checkpoint DIR, if there is one"),
        "--plot": dict(metavar="FILE.png", help="write the cost curve (and the decision regions "
                       "with the train and test points for 2-D data)"),
        "--quiet": dict(action="store_true", help="no progress bar"),
        "--noise-scale": dict(action="store_true", help="print the gradient noise scale "
                              "B_simple = tr(Σ)/|G|² (McCandlish et al. 2018) of the final "
                              "params on the training set: about the largest useful batch size"),
    })
    # fmt: on


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


def _network(args, n_x: int, n_y: int, loss: str) -> tuple[list[int], tuple[str, ...]]:
    """Layer sizes and activations from --layers and --activations (sizes are checked by
    `init_params`; here only that they fit the data)."""
    if args.layers is None:
        dims = [n_x, 16, 8, n_y]
    else:
        try:
            dims = [int(v) for v in args.layers.split(",")]
        except ValueError:
            raise ConfigError(
                f"--layers must be comma-separated ints, got {args.layers!r}"
            ) from None
        if len(dims) < 2:
            raise ConfigError(f"--layers needs at least the input and output sizes, got {dims}")
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
    L = len(dims) - 1
    return dims, options.activations(args.activations, L, loss, ("tanh",) * (L - 1))


def _cnn(args, image: tuple[int, ...], n_y: int, loss: str) -> tuple[list, str, tuple[str, ...]]:
    """The layers of --model cnn, its description and activations, from --channels and
    --activations: per channel count C a Conv2D(C, 3, pad=1) and a MaxPool2D(2) while the
    image is at least 2 pixels, then Flatten and the dense output layer."""
    from manualgrad import layers as L

    if args.layers is not None:
        raise ConfigError("--layers sizes a dense network: with --model cnn use --channels")
    text = "8" if args.channels is None else args.channels
    try:
        channels = [int(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"--channels must be comma-separated ints, got {text!r}") from None
    if not channels or min(channels) < 1:
        raise ConfigError(f"--channels needs one or more ints ≥ 1, got {text!r}")
    acts = options.activations(args.activations, len(channels) + 1, loss, ("tanh",) * len(channels))
    init = args.init or ("he" if acts[0] in ("relu", "leaky_relu") else "xavier")
    layers: list = []
    H, W = image[0], image[1]
    described = f"{'×'.join(map(str, image))}"
    for C, act in zip(channels, acts[:-1], strict=True):
        layers.append(L.Conv2D(C, 3, pad=1, activation=act, init_method=init))
        described += f" → conv {C}@3×3"
        if min(H, W) >= 2:
            layers.append(L.MaxPool2D(2))
            H, W = H // 2, W // 2
            described += " → max 2×2"
    layers += [L.Flatten(), L.Dense(n_y, activation=acts[-1], init_method=init)]
    return layers, f"{described} → {n_y}", acts


#: the embedding's vector length in the token models of `--data names`
TOKEN_DIM = 16
#: the LSTM's units in `--model lstm`
TOKEN_UNITS = 64


def _token_network(args, X, n_y: int, loss: str) -> tuple[Any, Any, str]:
    """The model for integer token ids (T, m), V the largest id in X plus one.

    `--model mlp`: Embedding(V, 16) → LayerNorm → Flatten → Dense, a bag of position-wise
    embeddings, normalised, read by one softmax layer. `--model lstm`: Embedding(V, 16) →
    LSTM(64) → Dense, the softmax reading the last state a_T (many-to-one).
    """
    import manualgrad as mg

    if args.layers is not None or args.activations is not None:
        raise ConfigError(
            "--layers and --activations set a dense network's widths and activations, but "
            f"{args.data!r} holds token ids, which train the --model {args.model} token "
            "network (Embedding → LayerNorm → Flatten → Dense, or with --model lstm Embedding "
            "→ LSTM → Dense): leave both out"
        )
    if loss != "ce":
        raise ConfigError(
            f"token data trains a softmax classifier with loss 'ce', got --loss {loss}: "
            "leave --loss out"
        )
    V = int(np.max(X)) + 1
    L = mg.layers
    lstm = args.model == "lstm"
    middle = [L.LSTM(TOKEN_UNITS)] if lstm else [L.LayerNorm(), L.Flatten()]
    layers = [
        L.Embedding(V, TOKEN_DIM),
        *middle,
        L.Dense(n_y, activation="softmax", init_method="xavier"),
    ]
    net = mg.network(layers, loss, l2=args.l2, keep_prob=args.keep_prob)
    T = X.shape[0]
    return net, (T,), " → ".join([*(layer.name for layer in layers[:-1]), f"Dense({n_y}, softmax)"])


def _data_parallel(devices: int | None, m: int, batch_size: int | None):
    """The mesh of the first `devices` devices for --devices, or None; batches must split."""
    if devices is None:
        return None
    from manualgrad.parallel import data_mesh

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
    return mesh


def _dp_config(args, n: int):
    """The DPConfig of --dp and its options, or None; privacy options without --dp: an error."""
    given = [
        flag
        for flag, value in (
            ("--target-epsilon", args.target_epsilon),
            ("--noise-multiplier", args.noise_multiplier),
            ("--sampling-rate", args.sampling_rate),
        )
        if value is not None
    ]
    if not args.dp:
        if given:
            raise ConfigError(f"{', '.join(given)} configure private training: add --dp")
        return None
    if args.batch_size is not None:
        raise ConfigError(
            "--dp samples each batch by Poisson sampling: give --sampling-rate q (an "
            "expected batch of q·N examples) instead of --batch-size"
        )
    if args.devices is not None:
        raise ConfigError("--dp runs on one device: drop --devices")
    if args.target_epsilon is None and args.noise_multiplier is None:
        raise ConfigError("--dp needs --target-epsilon ε (to calibrate σ) or --noise-multiplier σ")
    from manualgrad.privacy import DPConfig

    return DPConfig(
        sampling_rate=min(1.0, 256 / n) if args.sampling_rate is None else args.sampling_rate,
        clip_norm=args.clip_norm,
        delta=args.delta,
        noise_multiplier=args.noise_multiplier,
        target_epsilon=args.target_epsilon,
        accountant=args.accountant,
    )


def _load(load, args) -> tuple:
    """`load(args.data, …)`, a missing file said as what was looked for and where (no errno)."""
    import os

    from manualgrad._errors import DataError
    from manualgrad.data.datasets import DATASETS

    try:
        return load(
            args.data,
            m=args.m,
            examples=args.examples,
            label_column=args.label_column,
            images=args.model == "cnn",
        )
    except FileNotFoundError:
        raise DataError(
            f"`--data {args.data}`: no file {os.path.abspath(args.data)!r} (looked for relative "
            f"to the folder you run in, {os.getcwd()!r}); `--data` takes a .csv or .npz file, "
            f"or a built-in data set: {', '.join(DATASETS)}"
        ) from None


def resume_command(argv: list[str]) -> str:
    """The command line that resumes the run started by `manualgrad ARGV`."""
    return shlex.join(["manualgrad", *argv, *([] if "--resume" in argv else ["--resume"])])


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

    import manualgrad as mg
    from manualgrad import privacy
    from manualgrad.data.files import as_targets, load, train_test_split
    from manualgrad.training import (
        Accountant,
        Checkpointer,
        StopOnSignal,
        TrainingInterrupted,
        accuracy,
        data_parallel_step,
        minibatch_step,
        private_step,
    )
    from manualgrad.training.checkpoint import checkpoint_path

    if args.plot:
        from manualgrad.training.plot import ensure_matplotlib

        ensure_matplotlib()  # before training, not after it
    X, Y = _load(load, args)
    loss = args.loss or ("bce" if Y.shape[0] == 1 else "ce")
    X, Y = as_targets(X, Y, loss=loss, source=args.data)
    tokens = np.issubdtype(np.asarray(X).dtype, np.integer)  # ids for an embedding
    X_tr, Y_tr, X_te, Y_te = train_test_split(
        X, Y, test_fraction=args.test_fraction, seed=args.seed
    )
    dtype = jnp.float64 if args.float64 else jnp.float32
    k_init, k_train = jax.random.split(jax.random.key(args.seed))
    if args.model == "lstm" and not tokens:
        raise ConfigError(
            f"--model lstm reads token ids (T, m), but {args.data!r} holds {X.shape[0]} float "
            "features per example: use --data names, or leave --model out for a dense network"
        )
    if tokens:
        net, in_shape, network = _token_network(args, X, Y.shape[0], loss)
        init = "he"
        params = net.init(in_shape, k_init, dtype=dtype)
        network = f"{network}, loss {loss}, {np.dtype(dtype)}"
        features = f"token ids of length T = {X.shape[0]}"
    elif args.model == "cnn":
        layers, described, acts = _cnn(args, X.shape[:-1], Y.shape[0], loss)
        init = args.init or ("he" if acts[0] in ("relu", "leaky_relu") else "xavier")
        net = mg.network(layers, loss, l2=args.l2, keep_prob=args.keep_prob)
        params = net.init(X.shape[:-1], k_init, method=init, dtype=dtype)
        network = f"{described} {','.join(acts)}, loss {loss}, {np.dtype(dtype)}"
        features = f"images {'×'.join(map(str, X.shape[:-1]))}"
    else:
        dims, acts = _network(args, X.shape[0], Y.shape[0], loss)
        init = args.init or ("he" if acts[0] in ("relu", "leaky_relu") else "xavier")
        net = mg.network(list(acts), loss, l2=args.l2, keep_prob=args.keep_prob)
        params = net.init(dims, k_init, method=init, dtype=dtype)
        network = f"{dims} {','.join(acts)}, loss {loss}, {np.dtype(dtype)}"
        features = f"{X.shape[0]} features"
    optimizer = _optimizer(args.optimizer, args.lr)
    m, m_test = X_tr.shape[-1], X_te.shape[-1]
    dp = _dp_config(args, X_tr.shape[-1])
    if args.epochs is None:
        args.epochs = 1000 if dp is None else 30
    batch = "full batch" if args.batch_size is None else f"batch {args.batch_size}"
    if dp is not None:
        batch = f"DP-SGD, Poisson batches at q = {dp.sampling_rate:g}"
    data = f"{args.data}: {m} train / {m_test} test examples, {features}"

    err = Console(stderr=True, soft_wrap=True)
    quiet = args.quiet
    if not quiet:
        err.print(
            f"[bold]manualgrad train[/bold]: {data}; {network}; {args.optimizer} "
            f"lr {args.lr}, {batch}"
        )
        if args.resume and args.checkpoint:
            there = os.path.exists(checkpoint_path(args.checkpoint))
            err.print(
                f"resuming from {checkpoint_path(args.checkpoint)}"
                if there
                else f"no checkpoint in {args.checkpoint}; starting from scratch"
            )
        if not err.is_terminal:
            err.print("compiling…")
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs  cost {task.fields[cost]}{task.fields[eps]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=quiet or not err.is_terminal,
    )
    task = progress.add_task("compiling…", total=args.epochs, cost="…", eps="")

    def on_progress(p) -> None:
        eps = f"  ε {p.metrics['epsilon']:.3f}" if "epsilon" in p.metrics else ""
        done = p.epoch if dp is None else p.step * dp.sampling_rate
        progress.update(task, description="training", completed=done, cost=f"{p.cost:.6g}", eps=eps)

    every = args.checkpoint_every
    if every is None and args.checkpoint:
        every = 1000
    callbacks: list = [on_progress]
    if args.checkpoint:
        fingerprint = {
            "optimizer": args.optimizer,
            "lr": args.lr,
            "init": init,
            "seed": args.seed,
            "test_fraction": args.test_fraction,
            "devices": args.devices,
        }
        checkpointer = Checkpointer(
            args.checkpoint, every, resume=args.resume, fingerprint=fingerprint
        )
        callbacks = [checkpointer, StopOnSignal(), on_progress]
    elif args.checkpoint_every is not None or args.resume:
        raise ConfigError("--checkpoint-every and --resume need --checkpoint DIR")
    mesh = _data_parallel(args.devices, m, args.batch_size)
    plan = None
    if dp is not None:
        plan = privacy.plan(dp, n=m, steps=round(args.epochs / dp.sampling_rate))
        step = private_step(net, optimizer, plan)
        callbacks.insert(0, Accountant(plan))
    elif mesh is not None:
        step = data_parallel_step(net, optimizer, mesh, args.batch_size)
    else:
        step = minibatch_step(net, optimizer, args.batch_size)
    t0 = time.perf_counter()
    try:
        with progress:
            result = mg.train(
                net,
                params,
                X_tr,
                Y_tr,
                step,
                epochs=args.epochs,
                key=k_train,
                callbacks=callbacks,
            )
            jax.block_until_ready(result.params)
    except TrainingInterrupted as stop:
        print(
            f"manualgrad train: {stop.signal} at epoch {stop.result.epoch} of {args.epochs}; "
            f"checkpoint saved in {args.checkpoint}. Resume with:\n"
            f"  {resume_command(getattr(args, 'argv', ['train']))}",
            file=sys.stderr,
        )
        return 130 if stop.signal == "SIGINT" else 143
    except KeyboardInterrupt:
        hint = "" if args.checkpoint else " (with --checkpoint DIR a run saves on Ctrl-C)"
        print(f"manualgrad train: interrupted; nothing was saved{hint}", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - t0
    steps = result.step - result.start_step

    def correct(X_, Y_) -> str:
        acc = accuracy(net, result.params, X_, Y_)
        return f"{acc:.2%} ({round(acc * X_.shape[-1])} of {X_.shape[-1]})"

    table = Table(show_header=False)
    table.add_row("data", data)
    table.add_row("network", network)
    table.add_row("optimizer", f"{args.optimizer} lr {args.lr}, {batch}")
    table.add_row("train accuracy", correct(X_tr, Y_tr))
    if m_test:
        table.add_row("test accuracy", correct(X_te, Y_te))
    history = result.history
    table.add_row("final cost", f"{history[-1]:.6g}" if len(history) else "-")
    resumed = f" (resumed at epoch {result.start_epoch})" if result.start_epoch else ""
    table.add_row("epochs / steps", f"{result.epoch} / {result.step}{resumed}")
    if plan is not None:
        table.add_row(
            "privacy",
            f"(ε = {result.metrics['epsilon']:.3f}, δ = {plan.delta:g})-DP "
            f"({plan.accountant} accountant); "
            f"σ = {plan.noise_multiplier:.4g}, C = {plan.clip_norm:g}, q = {plan.sampling_rate:g} "
            f"(batches of {plan.normaliser:.1f} expected, {plan.capacity} columns), "
            f"{result.step} steps; Poisson sampling, add/remove-one",
        )
    table.add_row("time", f"{seconds:.2f} s (compilation included)")
    table.add_row("steps/s", f"{steps / seconds:,.0f}" if seconds > 0 else "-")
    if args.noise_scale:
        Xn, Yn = jnp.asarray(X_tr, None if tokens else dtype), jnp.asarray(Y_tr, dtype)
        ns = net.gradient_noise_scale(result.params, Xn, Yn)
        G2, tr = float(ns.grad_sq_norm), float(ns.trace_cov)
        value = f"{float(ns.b_simple):,.1f}" if G2 > 0 else f"> {m} (|G|² within its noise)"
        table.add_row("noise scale B_simple", f"{value}; tr Σ {tr:.3g}, |G|² {G2:.3g}")
    if args.plot:
        from manualgrad.training.plot import plot_training

        plot_training(
            args.plot,
            history,
            net=net,
            params=result.params,
            X=X_tr,
            Y=Y_tr,
            X_test=X_te,
            Y_test=Y_te,
        )
        table.add_row("plot", args.plot)
    Console(soft_wrap=True).print(table)
    return 0
