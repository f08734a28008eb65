r"""Training with optax on the hand-written gradients: mini-batches inside one jit-compiled scan.

An epoch is the course's mini-batch gradient descent: shuffle the m example columns
with a key, cut them into ⌊m/B⌋ full batches of B columns and one last batch of the
remaining r = m mod B (if r > 0), and take one optimizer step per batch,

    C_t, g_t       = value_and_grad(params_t, X_t, Y_t)          hand-written, (2)–(5)
    u_t, s_{t+1}   = optimizer.update(g_t, s_t, params_t)        any optax transformation
    params_{t+1}   = params_t + u_t.

The full batches run in a `lax.scan`; the last, smaller batch is one more step of its
own shape in the same compiled function, so nothing recompiles from epoch to epoch.
Several epochs run in an outer `lax.scan` between two progress updates (one
`jax.jit` call per update, never a Python loop per step).

Randomness depends only on (key, epoch, batch): epoch e shuffles with
`fold_in(k_shuffle, e)` and batch j gets the step key
`fold_in(fold_in(k_dropout, e), j)`, where `k_shuffle, k_dropout = split(key)`. The
step key draws the dropout masks, and it is handed to the gradient function at every
step, dropout or not, so a gradient that needs randomness of its own (the noise of
DP-SGD) can draw it from there. So a run stopped after any epoch and resumed from
its params and optimizer state ends with exactly the same params as an
uninterrupted one, however the epochs are grouped into calls.

The cost recorded for an epoch is the course's Σ_batches m_b C_b / m: the mean of the
per-example losses seen during the epoch (each at the params of its step).

Checkpoints and resuming (`checkpoint_dir=`): the run's state is saved atomically
(:mod:`manualgrad.training.checkpoint`) every `checkpoint_every` optimizer steps (rounded up to
whole epochs), when a callback stops the run, at the end, and on SIGINT (Ctrl-C) or
SIGTERM, after which :class:`TrainingInterrupted` is raised. Calling `train` again
with the same arguments and `resume=True` continues from the checkpoint and ends
with exactly the params of an uninterrupted run.

>>> import jax, optax, manualgrad as mg
>>> from manualgrad.data.datasets import flower
>>> X, Y = flower()
>>> params = mg.init_params([2, 8, 1], jax.random.key(0), method="xavier")
>>> result = mg.train(params, X, Y, optax.adam(0.01), activations=("tanh", "sigmoid"),
...                   epochs=500, key=jax.random.key(1))
>>> result.history.shape, mg.accuracy(result.params, X, Y, activations=("tanh", "sigmoid")) > 0.8
((500,), True)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import math
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Unpack

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.typing import ArrayLike

from manualgrad._core import engine
from manualgrad._core.engine import Options, check
from manualgrad._errors import ConfigError
from manualgrad.functional import predict, value_and_grad
from manualgrad.training.checkpoint import (
    Checkpoint,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)

Array = jax.Array
Params = dict[str, Array]

__all__ = [
    "Progress",
    "TrainResult",
    "TrainingInterrupted",
    "accuracy",
    "epoch_batches",
    "steps_per_epoch",
    "train",
]


class TrainResult(NamedTuple):
    """What `train` returns.

    params: the trained params; opt_state: the optimizer state after the last step;
    history: float numpy array, the cost of each epoch from `start_epoch` on (from
    epoch 0 when resumed from a checkpoint, which keeps the earlier costs); epoch: the
    number of epochs completed (less than asked if a callback stopped the run);
    start_epoch: the epoch this call began at (the checkpoint's when it resumed).
    With `dp=`: step and start_step count optimizer steps (an epoch is 1/q steps, and
    epoch = ⌊step · q⌋), history holds each step's batch loss, epsilon is the ε spent
    after `step` steps and plan the resolved :class:`manualgrad.privacy.DPPlan`;
    without, they are None.
    """

    params: Mapping[str, Array]
    opt_state: Any
    history: np.ndarray
    epoch: int
    start_epoch: int
    step: int | None = None
    start_step: int | None = None
    epsilon: float | None = None
    plan: Any = None


class Progress(NamedTuple):
    """What `train` passes to its callback after each compiled call (a group of epochs).

    epoch: epochs completed so far (counting `start_epoch`); epochs: the total asked
    for; cost: the last epoch's cost; history: the costs so far (as in TrainResult).
    With `dp=`: step and steps count optimizer steps, cost is the last step's batch
    loss, and epsilon is the ε spent so far.
    """

    epoch: int
    epochs: int
    cost: float
    params: Mapping[str, Array]
    opt_state: Any
    history: np.ndarray
    step: int | None = None
    steps: int | None = None
    epsilon: float | None = None


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by `train` after SIGINT or SIGTERM, once the run's checkpoint is saved.

    `signal`: "SIGINT" or "SIGTERM"; `result`: the :class:`TrainResult` at the epoch
    where it stopped; `checkpoint_dir`: where the checkpoint is. A KeyboardInterrupt,
    so a script that does not catch it stops as it would on Ctrl-C.
    """

    def __init__(self, signal_name: str, result: TrainResult, checkpoint_dir: str):
        super().__init__(
            f"training stopped by {signal_name} at epoch {result.epoch}; checkpoint saved in "
            f"{checkpoint_dir} (resume=True continues it)"
        )
        self.signal = signal_name
        self.result = result
        self.checkpoint_dir = checkpoint_dir


def steps_per_epoch(m: int, batch_size: int | None) -> int:
    """⌈m / B⌉ optimizer steps per epoch (1 for full-batch training, `batch_size=None`)."""
    return 1 if batch_size is None or batch_size >= m else math.ceil(m / batch_size)


def epoch_batches(
    X: Array, Y: Array, batch_size: int, key: Array
) -> tuple[Array, Array, Array, Array]:
    """The course's random_mini_batches: shuffle the columns by `key`, then partition.

    X: (n_x, m), Y: (n_y, m) -> full batches Xf: (⌊m/B⌋, n_x, B), Yf: (⌊m/B⌋, n_y, B)
    and the remainder Xr: (n_x, m mod B), Yr: (n_y, m mod B).
    """
    m = X.shape[1]
    n_full = m // batch_size
    perm = jax.random.permutation(key, m)
    Xs, Ys = X[:, perm], Y[:, perm]
    cut = n_full * batch_size

    def full(A):
        return A[:, :cut].reshape(A.shape[0], n_full, batch_size).transpose(1, 0, 2)

    return full(Xs), full(Ys), Xs[:, cut:], Ys[:, cut:]


def _takes_step(fn: Callable) -> bool:
    """Whether the gradient function declares a `step` parameter (the optimizer step t)."""
    try:
        return "step" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class _Loop(NamedTuple):
    """`train`'s options of the loop itself (all but the network's options and `dp`)."""

    epochs: int
    batch_size: int | None
    opt_state: Any
    start_epoch: int
    epochs_per_call: int | None
    callback: Callable[[Progress], bool | None] | None
    value_and_grad_fn: Callable
    checkpoint_dir: str | os.PathLike | None
    checkpoint_every: int | None
    resume: bool
    fingerprint: Mapping[str, Any] | None


class _ModelOptions(NamedTuple):
    """`train`'s network options (:class:`manualgrad.functional.Options`) with their defaults.

    `key` is the run's key, from which the shuffles and step keys derive.
    """

    activations: Sequence[str]
    loss: str = "bce"
    l2: float | Array = 0.0
    keep_prob: float = 1.0
    key: Any = None  # a jax.random.key once `_model_options` resolved it
    precision: str = "default"


def _model_options(options: Options) -> _ModelOptions:
    """The options with their defaults, `activations` a tuple, the key (default key(0)) checked."""
    model = _ModelOptions(**options)
    key = jax.random.key(0) if model.key is None else model.key
    check.check_key(key)
    acts = model.activations
    return model._replace(
        activations=tuple(acts) if isinstance(acts, list | tuple) else acts, key=key
    )


@functools.lru_cache(maxsize=32)
def _compiled_chunk(
    optimizer: optax.GradientTransformation,
    model: _ModelOptions,
    batch_size: int | None,
    epochs_per_call: int,
    value_and_grad_fn: Callable,
) -> Callable:
    """One jitted function running `epochs_per_call` epochs (the later ones masked off).

    `model` holds the network options without a key (each step gets its own), so that
    it is hashable and the compiled function is cached per configuration.
    """
    takes_step = _takes_step(value_and_grad_fn)

    def step(carry, batch):
        params, opt_state = carry
        Xb, Yb, key, t = batch
        step_args = {"step": t} if takes_step else {}
        C, grads = value_and_grad_fn(
            params, Xb, Yb, **model._replace(key=key)._asdict(), **step_args
        )
        with jax.numpy_dtype_promotion("standard"):  # optax is written for standard promotion
            updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), C

    def epoch(carry, e, X, Y, key):
        m = X.shape[1]
        k_shuffle, k_dropout = jax.random.split(key)
        k_epoch = jax.random.fold_in(k_dropout, e)
        if batch_size is None or batch_size >= m:
            carry, C = step(carry, (X, Y, jax.random.fold_in(k_epoch, 0), e))
            return carry, C
        Xf, Yf, Xr, Yr = epoch_batches(X, Y, batch_size, jax.random.fold_in(k_shuffle, e))
        n_full, r = Xf.shape[0], Xr.shape[1]
        t0 = e * (n_full + (r > 0))  # the optimizer steps of earlier epochs
        keys = jax.vmap(lambda j: jax.random.fold_in(k_epoch, j))(jnp.arange(n_full))
        carry, costs = lax.scan(step, carry, (Xf, Yf, keys, t0 + jnp.arange(n_full)))
        total = jnp.sum(costs) * batch_size
        if r:
            carry, C_r = step(carry, (Xr, Yr, jax.random.fold_in(k_epoch, n_full), t0 + n_full))
            total = total + C_r * r
        return carry, total / m

    @jax.jit
    def chunk(params, opt_state, epoch0, n_active, X, Y, key):
        def body(carry, i):
            return lax.cond(
                i < n_active,
                lambda c: epoch(c, epoch0 + i, X, Y, key),
                lambda c: (c, jnp.zeros((), X.dtype)),
                carry,
            )

        (params, opt_state), costs = lax.scan(
            body, (params, opt_state), jnp.arange(epochs_per_call)
        )
        return params, opt_state, costs

    return chunk


def _positive_int(name: str, value: Any, *, optional: bool = True, hint: str = "") -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(
            f"`{name}` must be a positive int{' or None' if optional else ''}, got {value!r}" + hint
        )


def _check_options(optimizer: Any, loop: _Loop) -> None:
    """The options of `train` that no trace can check, each with its one-line error."""
    _positive_int(
        "epochs", loop.epochs, optional=False, hint=": the number of passes over the data"
    )
    _positive_int("batch_size", loop.batch_size, hint=" (None trains on the whole set at once)")
    _positive_int("epochs_per_call", loop.epochs_per_call)
    _positive_int("checkpoint_every", loop.checkpoint_every, hint=" (optimizer steps)")
    if isinstance(loop.start_epoch, bool) or not isinstance(loop.start_epoch, int | np.integer):
        raise ConfigError(f"`start_epoch` must be an int, got {loop.start_epoch!r}")
    if not 0 <= loop.start_epoch <= loop.epochs:
        raise ConfigError(
            f"`start_epoch` must be in [0, epochs = {loop.epochs}], got {loop.start_epoch}"
        )
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ConfigError(
            f"`optimizer` must be an optax.GradientTransformation (e.g. optax.adam(1e-3)), "
            f"got {type(optimizer).__name__}"
        )
    if loop.callback is not None and not callable(loop.callback):
        raise ConfigError(
            f"`callback` must be callable or None, got {type(loop.callback).__name__}"
        )
    if loop.checkpoint_dir is None:
        for name, value in (("checkpoint_every", loop.checkpoint_every), ("resume", loop.resume)):
            if value:
                raise ConfigError(
                    f"`{name}` needs `checkpoint_dir` (the directory the checkpoints go to and "
                    "a run resumes from)"
                )
    elif not isinstance(loop.checkpoint_dir, str | os.PathLike):
        raise ConfigError(
            f"`checkpoint_dir` must be a path, got {type(loop.checkpoint_dir).__name__}"
        )
    if loop.resume and (loop.opt_state is not None or loop.start_epoch != 0):
        raise ConfigError(
            "`resume=True` takes the optimizer state and the epoch from the checkpoint: "
            "do not pass `opt_state` or `start_epoch` with it"
        )
    if loop.fingerprint is not None:
        try:
            json.dumps(dict(loop.fingerprint))
        except (TypeError, ValueError):
            raise ConfigError(
                "`fingerprint` must be a dict of JSON values (str, numbers, lists, None), got "
                f"{loop.fingerprint!r}"
            ) from None


def _as_real(A: Array, dtype: Any) -> Array:
    """`A` cast to the params' float dtype, unless it is complex (left for the dtype check)."""
    return A if jnp.issubdtype(A.dtype, jnp.complexfloating) else A.astype(dtype)


def _digest(*arrays: Any) -> str:
    """A short hash of arrays' dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def run_fingerprint(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    *,
    activations: Sequence[str],
    loss: str,
    batch_size: int | None,
    l2: float,
    keep_prob: float,
    precision: str,
    key: Array,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What must match for a resumed run to continue exactly: the JSON dict a checkpoint keeps.

    The layer sizes, names and options, the dtype, and short hashes of the data, of the
    initial params and of the key; `extra` adds facts `train` cannot see (for example
    the optimizer's name and learning rate).
    """
    L = len(params) // 2
    names = sorted(params)
    fingerprint = {
        **(extra or {}),
        "layers": [int(np.shape(params["W1"])[1])]
        + [int(np.shape(params[f"W{l}"])[0]) for l in range(1, L + 1)],
        "activations": list(activations),
        "loss": loss,
        "batch_size": None if batch_size is None else int(batch_size),
        "l2": float(l2),
        "keep_prob": float(keep_prob),
        "precision": precision,
        "dtype": str(check.params_dtype(params)),
        "data": _digest(X, Y),
        "initial_params": _digest(*(params[k] for k in names)),
        "key": _digest(jax.random.key_data(key)),
    }
    return json.loads(json.dumps(fingerprint))  # as it reads back from a checkpoint


@contextlib.contextmanager
def _stop_on_signals(enabled: bool) -> Iterator[list[str]]:
    """Turn the first SIGINT/SIGTERM into a request to stop (its name lands in the list).

    A second signal acts as it would without us (KeyboardInterrupt, or termination).
    Signal handlers can only be set from the main thread; elsewhere nothing changes.
    """
    received: list[str] = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore():
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)

    def on_signal(signum, frame):
        received.append(signal.Signals(signum).name)
        restore()

    for s in previous:
        signal.signal(s, on_signal)
    try:
        yield received
    finally:
        restore()


def train(
    params: Mapping[str, Array],
    X: ArrayLike,
    Y: ArrayLike,
    optimizer: optax.GradientTransformation,
    *,
    epochs: int = 1000,
    batch_size: int | None = None,
    opt_state: Any = None,
    start_epoch: int = 0,
    epochs_per_call: int | None = None,
    callback: Callable[[Progress], bool | None] | None = None,
    value_and_grad_fn: Callable = value_and_grad,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    fingerprint: Mapping[str, Any] | None = None,
    dp: Any = None,
    **options: Unpack[Options],
) -> TrainResult:
    """Train from `params` for epochs `start_epoch` … `epochs - 1` with `optimizer`.

    | argument            | meaning                                                       |
    |---------------------|---------------------------------------------------------------|
    | `X`, `Y`            | (n_x, m) and (n_L, m), examples as columns; cast to params'   |
    |                     | dtype (float64 params train in float64)                       |
    | `optimizer`         | any `optax.GradientTransformation`                            |
    | `activations`       | the network's options, as for `manualgrad.value_and_grad`     |
    | `loss`, `l2`,       | (:class:`manualgrad.functional.Options`): one activation name |
    | `keep_prob`,        | per layer (required), the loss (default "bce"), λ (0.0), the  |
    | `precision`         | dropout keep probability (1.0), the precision ("default")     |
    | `epochs`            | the epoch to train up to (≥ 1)                                |
    | `batch_size`        | B ≤ m; None = full batch (no shuffle). Last batch has m mod B |
    | `key`               | `jax.random.key` (default key(0)); shuffles and step keys     |
    |                     | derive from it                                                |
    | `opt_state`         | resume from this state (default: `optimizer.init(params)`)    |
    | `start_epoch`       | resume at this epoch (keys depend on the epoch, not the call) |
    | `epochs_per_call`   | epochs per compiled call, i.e. between callbacks              |
    |                     | (default ⌈epochs / 100⌉); it never changes the result         |
    | `callback`          | called with a :class:`Progress` after each call; returning    |
    |                     | True stops training (the result says how far it got)          |
    | `value_and_grad_fn` | the gradient: manualgrad's `value_and_grad` (default) or any  |
    |                     | function with its signature, e.g. `jax.value_and_grad(cost)`  |
    |                     | or a wrapper of `clipped_grads`/`dp_grads`                     |
    | `checkpoint_dir`    | save the run's state in this directory (see below)            |
    | `checkpoint_every`  | … also every this many optimizer steps (whole epochs)         |
    | `resume`            | continue from the checkpoint in `checkpoint_dir`, if any      |
    | `fingerprint`       | extra JSON facts a resumed run must match (e.g. the learning  |
    |                     | rate, which `train` cannot read from an optax optimizer)      |
    | `dp`                | a :class:`manualgrad.privacy.DPConfig`: train with DP-SGD     |
    |                     | (below); `batch_size` must then be None                       |

    `value_and_grad_fn(params, X_t, Y_t, *, activations, loss, l2, keep_prob, key,
    precision)` returns (C_t, g_t). `key` is the step's own key at every step (also with
    keep_prob = 1), and a function that declares a `step` parameter also gets the
    optimizer step t = 0, 1, … (a traced int), e.g. for DP-SGD's noise:
    ``lambda p, X, Y, *, key, **kw: (0.0, dp_grads(p, X, Y, noise_key=key,
    clip_norm=1.0, noise_multiplier=1.1, **kw))`` (without dropout; with it, split
    `key` into a noise key and a dropout key).

    With `checkpoint_dir`, the state (params, optimizer state, epoch, key, cost
    history and :func:`run_fingerprint`) is saved atomically every `checkpoint_every`
    steps, when a callback stops the run, at the end, and on SIGINT or SIGTERM: the
    first such signal stops training after the current compiled call, saves, and
    raises :class:`TrainingInterrupted` (a second one acts as usual). `resume=True`
    continues from that checkpoint (or starts afresh if there is none): call `train`
    with the same arguments and it ends with exactly the params of an uninterrupted
    run; a checkpoint of another run (other data, network, options, initial params or
    key) raises :class:`manualgrad.CheckpointError` naming what differs. Read the
    params back with :func:`manualgrad.training.checkpoint.load_params`.

    With `dp=DPConfig(...)` the run is DP-SGD (:func:`manualgrad.privacy.train_private`):
    `epochs` means T = round(epochs / q) steps of Poisson sampling at rate q, clipping
    and noise; σ is calibrated before the first step when the config gives a target ε,
    and a run whose T steps would spend more than a given budget is refused. The
    checkpoint holds the step count (its fingerprint the resolved σ, q, C, δ), so a
    resumed run ends with the same params and reports the same ε as an uninterrupted
    one; `result.epsilon` and each `Progress.epsilon` give the ε spent.

    Returns a :class:`TrainResult` (params, opt_state, cost history, epoch, start_epoch).
    """
    engine.check_option_names(
        options, function="train", allowed=(*engine.OPTION_NAMES, *_Loop._fields, "dp")
    )
    loop = _Loop(
        epochs,
        batch_size,
        opt_state,
        start_epoch,
        epochs_per_call,
        callback,
        value_and_grad_fn,
        checkpoint_dir,
        checkpoint_every,
        resume,
        fingerprint,
    )
    _check_options(optimizer, loop)
    model = _model_options(options)
    check.check_params(params)
    dtype = check.params_dtype(params)
    params = {k: jnp.asarray(v) for k, v in params.items()}
    X, Y = _as_real(check.as_array("X", X), dtype), _as_real(check.as_array("Y", Y), dtype)
    if dp is not None:
        return _train_private(params, X, Y, optimizer, dp, loop, model)
    step_args = {"step": jnp.zeros((), jnp.int32)} if _takes_step(value_and_grad_fn) else {}
    # Trace-time checks of shapes and options, once, with their clear messages.
    jax.eval_shape(
        functools.partial(value_and_grad_fn, **model._asdict(), **step_args), params, X, Y
    )
    m = X.shape[1]
    if batch_size is not None and batch_size > m:
        raise ConfigError(
            f"`batch_size` = {batch_size} is larger than the m = {m} training examples: use "
            f"at most {m}, or batch_size=None for full-batch training"
        )
    key = model.key
    if opt_state is None:
        opt_state = optimizer.init(params)
    spe = steps_per_epoch(m, batch_size)
    history: list[np.ndarray] = []
    directory = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
    run: dict[str, Any] = {}
    if directory is not None:
        run = run_fingerprint(
            params, X, Y, batch_size=batch_size, extra=fingerprint, **model._asdict()
        )
        if resume and os.path.exists(checkpoint_path(directory)):
            ckpt = load_checkpoint(directory, (params, opt_state), run)
            if ckpt.epoch > epochs:
                raise ConfigError(
                    f"the checkpoint in {directory} is at epoch {ckpt.epoch}, past `epochs` = "
                    f"{epochs}: ask for at least {ckpt.epoch} epochs"
                )
            params, opt_state, start_epoch = dict(ckpt.params), ckpt.opt_state, ckpt.epoch
            history.append(np.asarray(ckpt.history))

    def save(params: Mapping[str, Array], opt_state: Any, epoch: int) -> None:
        if directory is not None:
            so_far = np.concatenate(history) if history else np.zeros((0,), dtype)
            ckpt = Checkpoint(params, opt_state, epoch, epoch * spe, key, so_far, run)
            save_checkpoint(directory, ckpt)

    per_call = epochs_per_call or max(1, math.ceil(epochs / 100))
    every = math.ceil(checkpoint_every / spe) if checkpoint_every else None  # in epochs
    if every is not None:
        per_call = min(per_call, every)
    static = model._replace(key=None, l2=float(model.l2), keep_prob=float(model.keep_prob))
    chunk = _compiled_chunk(optimizer, static, batch_size, per_call, value_and_grad_fn)
    first, epoch, last_saved = start_epoch, start_epoch, start_epoch

    def result() -> TrainResult:
        hist = np.concatenate(history) if history else np.zeros((0,), dtype=np.dtype(dtype))
        return TrainResult(params, opt_state, hist, epoch, first)

    with _stop_on_signals(checkpoint_dir is not None) as received:
        while epoch < epochs:
            n = min(per_call, epochs - epoch)
            params, opt_state, costs = chunk(params, opt_state, epoch, n, X, Y, key)
            history.append(np.asarray(costs)[:n])
            epoch += n
            stop = False
            if callback is not None:
                so_far = np.concatenate(history)
                p = Progress(epoch, epochs, float(so_far[-1]), params, opt_state, so_far)
                stop = bool(callback(p))
            if received or stop:
                break
            if every is not None and epoch - last_saved >= every and epoch < epochs:
                save(params, opt_state, epoch)
                last_saved = epoch
    save(params, opt_state, epoch)
    if received:
        raise TrainingInterrupted(received[0], result(), directory or "")
    return result()


def _train_private(
    params: Params, X: Array, Y: Array, optimizer: Any, dp: Any, loop: _Loop, model: _ModelOptions
) -> TrainResult:
    """`train(..., dp=...)`: DP-SGD steps by `privacy.train_private`, checkpoints and signals here.

    The checkpoint's `epoch` and `step` fields hold ⌊step · q⌋ and the step count; its
    fingerprint adds the resolved privacy plan, so a resume with other privacy settings
    is refused.
    """
    from manualgrad import privacy

    if not isinstance(dp, privacy.DPConfig):
        raise ConfigError(f"`dp` must be a manualgrad.privacy.DPConfig, got {type(dp).__name__}")
    if loop.batch_size is not None:
        raise ConfigError(
            f"`batch_size` = {loop.batch_size} with `dp`: DP-SGD draws its batches by Poisson "
            f"sampling at rate q = {dp.sampling_rate} (expected size q·N); drop batch_size"
        )
    if loop.value_and_grad_fn is not value_and_grad:
        raise ConfigError("`dp` trains with its own private gradient: drop `value_and_grad_fn`")
    if loop.start_epoch:
        raise ConfigError("with `dp`, resume from a checkpoint (resume=True), not start_epoch")
    dtype = check.params_dtype(params)
    epochs, callback, checkpoint_every = loop.epochs, loop.callback, loop.checkpoint_every
    q = dp.sampling_rate
    valid_q = isinstance(q, int | float) and not isinstance(q, bool) and 0 < q <= 1
    plan = privacy.plan(dp, n=X.shape[1], steps=round(epochs / q) if valid_q else 0)
    opt_state = optimizer.init(params) if loop.opt_state is None else loop.opt_state
    directory = None if loop.checkpoint_dir is None else os.fspath(loop.checkpoint_dir)
    run: dict[str, Any] = {}
    start_step = 0
    history: list[np.ndarray] = []
    if directory is not None:
        facts = {
            "dp": {
                "sampling_rate": plan.sampling_rate,
                "clip_norm": plan.clip_norm,
                "delta": plan.delta,
                "noise_multiplier": plan.noise_multiplier,
                "accountant": plan.accountant,
                "steps": plan.steps,
            }
        }
        extra = {**(loop.fingerprint or {}), **facts}
        run = run_fingerprint(params, X, Y, batch_size=None, extra=extra, **model._asdict())
        if loop.resume and os.path.exists(checkpoint_path(directory)):
            ckpt = load_checkpoint(directory, (params, opt_state), run)
            params, opt_state, start_step = dict(ckpt.params), ckpt.opt_state, ckpt.step
            history.append(np.asarray(ckpt.history))

    def to_epoch(step: int) -> int:
        return int(step * q + 1e-9)

    def save(params: Mapping[str, Array], opt_state: Any, step: int) -> None:
        if directory is not None:
            so_far = np.concatenate(history) if history else np.zeros((0,), dtype)
            ckpt = Checkpoint(params, opt_state, to_epoch(step), step, model.key, so_far, run)
            save_checkpoint(directory, ckpt)

    per_call = loop.epochs_per_call and max(1, round(loop.epochs_per_call / q))
    if checkpoint_every:
        per_call = min(per_call or checkpoint_every, checkpoint_every)
    last_saved = [start_step]
    seen = [0]  # how much of train_private's history is in `history` already

    with _stop_on_signals(directory is not None) as received:

        def on_progress(p: privacy.PrivateProgress) -> bool:
            history.append(p.history[seen[0] :])
            seen[0] = len(p.history)
            stop = False
            if callback is not None:
                so_far = np.concatenate(history)
                stop = bool(
                    callback(
                        Progress(
                            to_epoch(p.step),
                            epochs,
                            p.cost,
                            p.params,
                            p.opt_state,
                            so_far,
                            step=p.step,
                            steps=p.steps,
                            epsilon=p.epsilon,
                        )
                    )
                )
            if received or stop:
                return True
            if checkpoint_every and p.step - last_saved[0] >= checkpoint_every and p.step < p.steps:
                save(p.params, p.opt_state, p.step)
                last_saved[0] = p.step
            return False

        out = privacy.train_private(
            params,
            X,
            Y,
            optimizer,
            dp=plan,
            opt_state=opt_state,
            start_step=start_step,
            steps_per_call=per_call or None,
            callback=on_progress,
            **model._asdict(),
        )
    history.append(out.history[seen[0] :])
    save(out.params, out.opt_state, out.step)
    hist = np.concatenate(history)
    result = TrainResult(
        out.params,
        out.opt_state,
        hist,
        to_epoch(out.step),
        to_epoch(start_step),
        step=out.step,
        start_step=start_step,
        epsilon=out.epsilon,
        plan=out.plan,
    )
    if received:
        raise TrainingInterrupted(received[0], result, directory or "")
    return result


def accuracy(
    params: Mapping[str, Array],
    X: ArrayLike,
    Y: ArrayLike,
    *,
    activations: Sequence[str],
    precision: str = "default",
) -> float:
    """The fraction of examples whose predicted class equals the label.

    Y: (1, m) labels in {0, 1} for one output unit (sigmoid), or one-hot (n_L, m) for
    n_L > 1 outputs (softmax); class indices y must be one-hot encoded first,
    `jax.nn.one_hot(y, n_L).T`. X may be any float dtype (it is cast to the params').
    Predictions come from :func:`manualgrad.predict`.
    """
    check.check_params(params)
    X = check.as_array("X", X)
    if jnp.issubdtype(X.dtype, jnp.floating):
        X = X.astype(check.params_dtype(params))
    pred = np.asarray(predict(params, X, activations=activations, precision=precision))
    check.check_Y(params, Y, pred.shape[1])
    Y_ = np.asarray(Y)
    labels = Y_.reshape(1, -1) if Y_.shape[0] == 1 else np.argmax(Y_, axis=0)[None, :]
    return float(np.mean(pred == labels))
