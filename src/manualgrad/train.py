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
`fold_in(k_shuffle, e)` and batch j draws its dropout masks from
`fold_in(fold_in(k_dropout, e), j)`, where `k_shuffle, k_dropout = split(key)`. So a
run stopped after any epoch and resumed from its params and optimizer state ends
with exactly the same params as an uninterrupted one, however the epochs are grouped
into calls.

The cost recorded for an epoch is the course's Σ_batches m_b C_b / m: the mean of the
per-example losses seen during the epoch (each at the params of its step).

>>> import jax, optax, manualgrad as mg
>>> from manualgrad.datasets import flower
>>> X, Y = flower()
>>> params = mg.init_params([2, 8, 1], jax.random.key(0), method="xavier")
>>> result = mg.train(params, X, Y, optax.adam(0.01), activations=("tanh", "sigmoid"),
...                   epochs=500, key=jax.random.key(1))
>>> result.history.shape, mg.accuracy(result.params, X, Y, activations=("tanh", "sigmoid")) > 0.8
((500,), True)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from manualgrad._engine import check
from manualgrad._errors import ConfigError, ShapeError
from manualgrad.functional import predict, value_and_grad

Array = jax.Array
Params = dict[str, Array]

__all__ = ["Progress", "TrainResult", "accuracy", "epoch_batches", "steps_per_epoch", "train"]


class TrainResult(NamedTuple):
    """What `train` returns.

    params: the trained params; opt_state: the optimizer state after the last step;
    history: float numpy array (epochs run,), the cost of each epoch; epoch: the
    number of epochs completed counting `start_epoch` (less than asked if a callback
    stopped the run).
    """

    params: Params
    opt_state: Any
    history: np.ndarray
    epoch: int


class Progress(NamedTuple):
    """What `train` passes to its callback after each compiled call (a group of epochs).

    epoch: epochs completed so far (counting `start_epoch`); epochs: the total asked
    for; cost: the last epoch's cost; history: the costs of this run's epochs so far.
    """

    epoch: int
    epochs: int
    cost: float
    params: Params
    opt_state: Any
    history: np.ndarray


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


@functools.lru_cache(maxsize=32)
def _compiled_chunk(
    optimizer: optax.GradientTransformation,
    activations: tuple[str, ...],
    loss: str,
    l2: float,
    keep_prob: float,
    precision: str,
    batch_size: int | None,
    epochs_per_call: int,
    value_and_grad_fn: Callable,
) -> Callable:
    """One jitted function running `epochs_per_call` epochs (the later ones masked off)."""

    def step(carry, batch):
        params, opt_state = carry
        Xb, Yb, key = batch
        C, grads = value_and_grad_fn(
            params,
            Xb,
            Yb,
            activations=activations,
            loss=loss,
            l2=l2,
            keep_prob=keep_prob,
            key=key if keep_prob < 1 else None,
            precision=precision,
        )
        with jax.numpy_dtype_promotion("standard"):  # optax is written for standard promotion
            updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), C

    def epoch(carry, e, X, Y, key):
        m = X.shape[1]
        k_shuffle, k_dropout = jax.random.split(key)
        k_epoch = jax.random.fold_in(k_dropout, e)
        if batch_size is None or batch_size >= m:
            carry, C = step(carry, (X, Y, jax.random.fold_in(k_epoch, 0)))
            return carry, C
        Xf, Yf, Xr, Yr = epoch_batches(X, Y, batch_size, jax.random.fold_in(k_shuffle, e))
        n_full = Xf.shape[0]
        keys = jax.vmap(lambda j: jax.random.fold_in(k_epoch, j))(jnp.arange(n_full))
        carry, costs = lax.scan(step, carry, (Xf, Yf, keys))
        total = jnp.sum(costs) * batch_size
        r = Xr.shape[1]
        if r:
            carry, C_r = step(carry, (Xr, Yr, jax.random.fold_in(k_epoch, n_full)))
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


def train(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    optimizer: optax.GradientTransformation,
    *,
    activations: Sequence[str],
    loss: str = "bce",
    epochs: int = 1000,
    batch_size: int | None = None,
    l2: float = 0.0,
    keep_prob: float = 1.0,
    key: Array | None = None,
    precision: str = "default",
    opt_state: Any = None,
    start_epoch: int = 0,
    epochs_per_call: int | None = None,
    callback: Callable[[Progress], bool | None] | None = None,
    value_and_grad_fn: Callable = value_and_grad,
) -> TrainResult:
    """Train from `params` for epochs `start_epoch` … `epochs - 1` with `optimizer`.

    | argument            | meaning                                                       |
    |---------------------|---------------------------------------------------------------|
    | `X`, `Y`            | (n_x, m) and (n_L, m), examples as columns; cast to params'   |
    |                     | dtype (float64 params train in float64)                       |
    | `optimizer`         | any `optax.GradientTransformation`                            |
    | `batch_size`        | B; None = full batch (no shuffle). Last batch has m mod B     |
    | `key`               | `jax.random.key`; shuffles and dropout masks derive from it   |
    | `opt_state`         | resume from this state (default: `optimizer.init(params)`)    |
    | `start_epoch`       | resume at this epoch (keys depend on the epoch, not the call) |
    | `epochs_per_call`   | epochs per compiled call, i.e. between callbacks              |
    |                     | (default ⌈epochs / 100⌉); it never changes the result         |
    | `callback`          | called with a :class:`Progress` after each call; returning    |
    |                     | True stops training (the result says how far it got)          |
    | `value_and_grad_fn` | the gradient: manualgrad's `value_and_grad` (default) or      |
    |                     | e.g. `jax.value_and_grad(manualgrad.cost)` for comparison      |

    Returns a :class:`TrainResult` (params, opt_state, per-epoch cost history, epoch).
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"`epochs` must be an int ≥ 0, got {epochs!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ConfigError(f"`batch_size` must be a positive int or None, got {batch_size!r}")
    if not 0 <= start_epoch <= epochs:
        raise ConfigError(f"`start_epoch` must be in [0, epochs = {epochs}], got {start_epoch}")
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ConfigError(
            f"`optimizer` must be an optax.GradientTransformation (e.g. optax.adam(1e-3)), "
            f"got {type(optimizer).__name__}"
        )
    check.check_params(params)
    dtype = check.params_dtype(params)
    params = {k: jnp.asarray(v) for k, v in params.items()}
    X = jnp.asarray(X, dtype=dtype)
    Y = jnp.asarray(Y, dtype=dtype)
    # Trace-time checks of shapes and options, once, with their clear messages.
    jax.eval_shape(
        functools.partial(
            value_and_grad_fn,
            activations=tuple(activations),
            loss=loss,
            l2=l2,
            keep_prob=keep_prob,
            precision=precision,
            key=jax.random.key(0) if keep_prob < 1 else None,
        ),
        params,
        X,
        Y,
    )
    key = jax.random.key(0) if key is None else key
    if opt_state is None:
        opt_state = optimizer.init(params)
    per_call = epochs_per_call or max(1, math.ceil(epochs / 100))
    chunk = _compiled_chunk(
        optimizer,
        tuple(activations),
        loss,
        float(l2),
        float(keep_prob),
        precision,
        batch_size,
        per_call,
        value_and_grad_fn,
    )
    history: list[np.ndarray] = []
    epoch = start_epoch
    while epoch < epochs:
        n = min(per_call, epochs - epoch)
        params, opt_state, costs = chunk(params, opt_state, epoch, n, X, Y, key)
        history.append(np.asarray(costs)[:n])
        epoch += n
        if callback is not None:
            so_far = np.concatenate(history)
            stop = callback(Progress(epoch, epochs, float(so_far[-1]), params, opt_state, so_far))
            if stop:
                break
    hist = np.concatenate(history) if history else np.zeros((0,), dtype=np.dtype(dtype))
    return TrainResult(params, opt_state, hist, epoch)


def accuracy(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    *,
    activations: Sequence[str],
    precision: str = "default",
) -> float:
    """The fraction of examples whose predicted class equals the label.

    Y: (1, m) labels in {0, 1} for a sigmoid output, or one-hot (K, m) for softmax.
    Predictions come from :func:`manualgrad.predict`.
    """
    X = jnp.asarray(X, dtype=check.params_dtype(params))
    Y = np.asarray(Y)
    labels = Y.reshape(1, -1) if Y.shape[0] == 1 else np.argmax(Y, axis=0)[None, :]
    pred = np.asarray(predict(params, X, activations=activations, precision=precision))
    if pred.shape != labels.shape:
        raise ShapeError(f"expected `Y` of shape (n_L, m) with m = {pred.shape[1]}, got {Y.shape}")
    return float(np.mean(pred == labels))
