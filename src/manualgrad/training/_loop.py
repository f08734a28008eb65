r"""One training loop: a jitted chunk of steps, and callbacks between chunks.

The loop knows nothing of how a step computes its gradient. A :class:`Step` is two
functions in optax's shape,

    init(params) -> opt_state
    step(params, opt_state, t, X, Y, key) -> (params, opt_state, cost)

where t = 0, 1, … counts the step's *units* (an epoch of mini-batches for
:func:`minibatch_step` and :func:`data_parallel_step`, one Poisson-sampled DP-SGD step
for :func:`private_step`). Randomness depends only on (key, t), so a run stopped after
any unit and resumed from its params and optimizer state ends with exactly the params
of an uninterrupted one, however the units are grouped into compiled calls.

One compiled call ("chunk") is a `lax.fori_loop` over its first n_active ≤ `units`
units, n_active traced (a while loop, as `lax.scan` compiles to, with no branch in its
body), so the last, shorter chunk reuses the compilation.
Between chunks the loop hands a :class:`Progress` to its callbacks
(:mod:`manualgrad.training._callbacks`): checkpointing, stopping on a signal, the
privacy accountant and any plain function `f(progress) -> stop?`.

An epoch of :func:`minibatch_step` is the course's mini-batch gradient descent: shuffle
the m columns with `fold_in(k_shuffle, e)`, cut them into ⌊m/B⌋ batches of B and one
of m mod B, and take one optimizer step per batch,

    C_t, g_t       = value_and_grad(params_t, X_t, Y_t)          hand-written, (2)–(5)
    u_t, s_{t+1}   = optimizer.update(g_t, s_t, params_t)        any optax transformation
    params_{t+1}   = params_t + u_t,

batch j drawing its dropout masks from `fold_in(fold_in(k_dropout, e), j)` where
`k_shuffle, k_dropout = split(key)`. Its cost is Σ_batches m_b C_b / m.

>>> import jax, optax, manualgrad as mg
>>> from manualgrad.data.datasets import flower
>>> X, Y = flower()
>>> net = mg.network(["tanh", "sigmoid"])
>>> params = net.init([2, 8, 1], jax.random.key(0), method="xavier")
>>> result = mg.train(net, params, X, Y, optax.adam(0.01), epochs=500, key=jax.random.key(1))
>>> result.history.shape, mg.training.accuracy(net, result.params, X, Y) > 0.8
((500,), True)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.typing import ArrayLike

from manualgrad._core import engine, threefry
from manualgrad._core.engine import check
from manualgrad._errors import ConfigError, DataError
from manualgrad.training._callbacks import Callback, Progress, Run, TrainResult, as_callback

if TYPE_CHECKING:
    from jax.sharding import Mesh

    from manualgrad._network import Network
    from manualgrad.privacy import DPConfig, DPPlan

Array = jax.Array
Params = dict[str, Array]

__all__ = [
    "Step",
    "accuracy",
    "data_parallel_step",
    "epoch_batches",
    "minibatch_step",
    "private_step",
    "steps_per_epoch",
    "train",
]


class Step(NamedTuple):
    """A training step in optax's shape: `init(params) -> opt_state` and the step itself.

    `step(params, opt_state, t, X, Y, key) -> (params, opt_state, cost)` runs unit t
    (traced int) on the whole training set, X (…, N) and Y (n_L, N) as `hold` returns
    them (the private step holds them examples first), with the run's key.

    | field            | meaning                                                      |
    |------------------|--------------------------------------------------------------|
    | `units_per_epoch`| units in an epoch: 1 (an epoch per unit), 1/q (DP-SGD steps) |
    | `optimizer_steps`| m -> optimizer steps per unit (⌈m/B⌉ for mini-batches)       |
    | `facts`          | JSON facts a resumed run must match (checkpoint fingerprint) |
    | `hold`           | (X, Y) -> what `step` receives as X, Y: how the loop holds   |
    |                  | the training set, called once per run (default: as given)    |
    """

    init: Callable[[Params], Any]
    step: Callable[..., tuple[Any, Any, Array]]
    units_per_epoch: float = 1.0
    optimizer_steps: Callable[[int], int] = lambda m: 1
    facts: Mapping[str, Any] = {}
    hold: Callable[[Array, Array], tuple[Array, Array]] = lambda X, Y: (X, Y)


def steps_per_epoch(m: int, batch_size: int | None) -> int:
    """⌈m / B⌉ optimizer steps per epoch (1 for full-batch training, `batch_size=None`)."""
    return 1 if batch_size is None or batch_size >= m else math.ceil(m / batch_size)


def epoch_batches(
    X: Array, Y: Array, batch_size: int, key: Array
) -> tuple[Array, Array, Array, Array]:
    """The course's random_mini_batches: shuffle the columns by `key`, then partition.

    X: (…, m), Y: (n_y, m) -> full batches Xf: (⌊m/B⌋, …, B), Yf: (⌊m/B⌋, n_y, B)
    and the remainder Xr: (…, m mod B), Yr: (n_y, m mod B).
    """
    m = X.shape[-1]
    n_full = m // batch_size
    perm = jax.random.permutation(key, m)
    Xs, Ys = X[..., perm], Y[..., perm]
    cut = n_full * batch_size

    def full(A):
        return jnp.moveaxis(A[..., :cut].reshape(*A.shape[:-1], n_full, batch_size), -2, 0)

    return full(Xs), full(Ys), Xs[..., cut:], Ys[..., cut:]


def _apply(optimizer: optax.GradientTransformation, params, opt_state, grads):
    """The optax update, written once: u, s' = update(g, s, params); params + u."""
    with jax.numpy_dtype_promotion("standard"):  # optax is written for standard promotion
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state


def _epoch_step(
    optimizer: optax.GradientTransformation,
    value_and_grad: Callable[..., tuple[Array, Params]],
    batch_size: int | None,
    facts: Mapping[str, Any],
) -> Step:
    """An epoch of mini-batch steps of `value_and_grad(params, X, Y, key) -> (C, grads)`."""

    def one(carry, batch):
        params, opt_state = carry
        Xb, Yb, key = batch
        C, grads = value_and_grad(params, Xb, Yb, key)
        return _apply(optimizer, params, opt_state, grads), C

    def step(params, opt_state, e, X, Y, key):
        m = X.shape[-1]
        if batch_size is not None and batch_size > m:
            raise ConfigError(
                f"`batch_size` = {batch_size} is larger than the m = {m} training examples: use "
                f"at most {m}, or batch_size=None for full-batch training"
            )
        k_shuffle, k_dropout = jax.random.split(key)
        k_epoch = jax.random.fold_in(k_dropout, e)
        if batch_size is None or batch_size >= m:
            (params, opt_state), C = one(
                (params, opt_state), (X, Y, jax.random.fold_in(k_epoch, 0))
            )
            return params, opt_state, C
        Xf, Yf, Xr, Yr = epoch_batches(X, Y, batch_size, jax.random.fold_in(k_shuffle, e))
        n_full, r = Xf.shape[0], Xr.shape[-1]
        keys = jax.vmap(lambda j: jax.random.fold_in(k_epoch, j))(jnp.arange(n_full))
        carry, costs = lax.scan(one, (params, opt_state), (Xf, Yf, keys))
        total = jnp.sum(costs) * batch_size
        if r:
            carry, C_r = one(carry, (Xr, Yr, jax.random.fold_in(k_epoch, n_full)))
            total = total + C_r * r
        return *carry, total / m

    return Step(
        init=optimizer.init,
        step=step,
        optimizer_steps=lambda m: steps_per_epoch(m, batch_size),
        facts={"batch_size": batch_size, **facts},
    )


@functools.lru_cache(maxsize=32)
def minibatch_step(
    net: Network, optimizer: optax.GradientTransformation, batch_size: int | None = None
) -> Step:
    """An epoch of the course's mini-batch gradient descent on `net.value_and_grad`.

    `batch_size` B (None: the whole set, no shuffle); the last batch holds m mod B
    examples. Cached, so equal arguments share one compilation.
    """
    _positive_int("batch_size", batch_size, hint=" (None trains on the whole set at once)")
    return _epoch_step(optimizer, net.value_and_grad, batch_size, {})


@functools.lru_cache(maxsize=32)
def data_parallel_step(
    net: Network, optimizer: optax.GradientTransformation, mesh: Mesh, batch_size: int | None = None
) -> Step:
    """:func:`minibatch_step` with every batch split by columns over `mesh`.

    The gradient is :func:`manualgrad.parallel.data_parallel_fn` of `net.value_and_grad`:
    XLA turns the sums over examples of (2) into all-reduces and the optax update runs
    identically on every device. Every batch size must be a multiple of `mesh.size`
    (a :class:`ShapeError` at trace time otherwise).
    """
    from manualgrad.parallel import data_parallel_fn

    _positive_int("batch_size", batch_size, hint=" (None trains on the whole set at once)")
    grad = data_parallel_fn(mesh, net.value_and_grad)
    return _epoch_step(optimizer, grad, batch_size, {"devices": int(mesh.size)})


@functools.lru_cache(maxsize=16)
def private_step(net: Network, optimizer: optax.GradientTransformation, plan: DPPlan) -> Step:
    r"""One DP-SGD step (:mod:`manualgrad.privacy`) per unit: Poisson batch, clip, noise.

    Step t splits `fold_in(key, t)` into the sampling, noise and dropout keys, draws a
    batch of K = plan.capacity columns (:func:`~manualgrad.privacy.poisson_batch`), runs
    the smallest of `plan.batch_shapes` that holds it
    (:func:`~manualgrad.privacy.in_smallest_capacity`) and
    applies (1/(qN))(Σ_{i ∈ 𝓑} clip_C(g_i) + σCξ) by
    :func:`~manualgrad.privacy.masked_dp_grads`' rule. An epoch is 1/q units. The
    cost is the mean loss of the batch (private data: *not* covered by the guarantee).
    Pair it with :class:`~manualgrad.training.Accountant` to report ε.
    """
    from manualgrad import privacy

    scalars = (plan.sampling_rate, plan.clip_norm, plan.noise_multiplier, plan.normaliser)

    def step(params, opt_state, t, X_held, Y_held, key):
        if X_held.shape[0] != plan.n:
            raise DataError(
                f"the DPPlan was made for N = {plan.n} examples but X has {X_held.shape[0]}: "
                "make it with privacy.plan(dp, n=X.shape[-1], steps=...)"
            )
        q, C, sigma, B = (jnp.asarray(v, Y_held.dtype) for v in scalars)  # the params' dtype
        # jax.random.split(jax.random.fold_in(key, t), 3), its hash unrolled (one kernel)
        k_sample, k_noise, k_dropout = threefry.split(threefry.fold_in(key, t), 3)
        batch = privacy.poisson_batch(k_sample, plan.n, q, plan.capacity)
        noise_key = privacy.key_for_noise(k_noise, plan.rng)

        def clipped_noised(index, mask):  # on the smallest compiled shape that holds 𝓑
            return privacy.masked_dp_value_and_grad(
                net,
                params,
                *privacy.gather_batch(X_held, Y_held, index),
                mask,
                noise_key,
                C,
                sigma,
                B,
                k_dropout if net.keep_prob < 1 else None,
            )

        cost, grads = privacy.in_smallest_capacity(plan.batch_shapes, batch, clipped_noised)
        return *_apply(optimizer, params, opt_state, grads), cost

    facts = {
        "dp": {
            "sampling_rate": plan.sampling_rate,
            "clip_norm": plan.clip_norm,
            "delta": plan.delta,
            "noise_multiplier": plan.noise_multiplier,
            "accountant": plan.accountant,
            "steps": plan.steps,
            "rng": plan.rng,
            "batch_shapes": list(plan.batch_shapes),
        }
    }
    return Step(
        optimizer.init,
        step,
        units_per_epoch=1 / plan.sampling_rate,
        facts=facts,
        hold=privacy.examples_first,  # each step gathers K rows, not K scattered columns
    )


@functools.lru_cache(maxsize=32)
def _compiled_chunk(step: Callable, units: int) -> Callable:
    """One jitted call running units t0 … t0 + n_active − 1 of `step` (n_active ≤ `units`).

    Returns the params, the optimizer state and the costs, shape (units,), zero from
    n_active on.
    """

    @jax.jit
    def chunk(params, opt_state, t0, n_active, X, Y, key):
        def body(i, carry):
            params, opt_state, costs = carry
            params, opt_state, C = step(params, opt_state, t0 + i, X, Y, key)
            return params, opt_state, costs.at[i].set(C.astype(Y.dtype))

        costs = jnp.zeros((units,), Y.dtype)  # entries from n_active on stay 0
        return lax.fori_loop(0, n_active, body, (params, opt_state, costs))

    return chunk


def _positive_int(name: str, value: Any, *, optional: bool = True, hint: str = "") -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(
            f"`{name}` must be a positive int{' or None' if optional else ''}, got {value!r}" + hint
        )


def _as_real(A: Array, dtype: Any) -> Array:
    """`A` cast to the params' float dtype, unless it is complex (left for the dtype check)."""
    return A if jnp.issubdtype(A.dtype, jnp.complexfloating) else A.astype(dtype)


def _resolve_step(
    net: Network, optimizer: Any, X: Array, epochs: int, batch_size: int | None, dp: Any
) -> tuple[Step, tuple[Callback, ...]]:
    """The Step and the callbacks it brings: `optimizer` itself, a mini-batch step, or DP-SGD."""
    if isinstance(optimizer, Step):
        if batch_size is not None or dp is not None:
            raise ConfigError(
                "the Step passed as `optimizer` already fixes its batches: drop `batch_size` "
                "and `dp` (or pass an optax optimizer)"
            )
        return optimizer, ()
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ConfigError(
            f"`optimizer` must be an optax.GradientTransformation (e.g. optax.adam(1e-3)) or a "
            f"Step (minibatch_step, private_step, data_parallel_step), got "
            f"{type(optimizer).__name__}"
        )
    if dp is None:
        return minibatch_step(net, optimizer, batch_size), ()
    from manualgrad import privacy
    from manualgrad.training._callbacks import Accountant

    if not isinstance(dp, privacy.DPConfig):
        raise ConfigError(f"`dp` must be a manualgrad.privacy.DPConfig, got {type(dp).__name__}")
    if batch_size is not None:
        raise ConfigError(
            f"`batch_size` = {batch_size} with `dp`: DP-SGD draws its batches by Poisson "
            f"sampling at rate q = {dp.sampling_rate} (expected size q·N); drop batch_size"
        )
    q = dp.sampling_rate
    valid_q = isinstance(q, int | float) and not isinstance(q, bool) and 0 < q <= 1
    plan = privacy.plan(dp, n=X.shape[-1], steps=round(epochs / q) if valid_q else 0)
    return private_step(net, optimizer, plan), (Accountant(plan),)


def train(
    net: Network,
    params: Mapping[str, Array],
    X: ArrayLike,
    Y: ArrayLike,
    optimizer: optax.GradientTransformation | Step,
    *,
    epochs: int = 1000,
    batch_size: int | None = None,
    key: Array | None = None,
    dp: DPConfig | None = None,
    opt_state: Any = None,
    start_epoch: int = 0,
    epochs_per_call: int | None = None,
    callbacks: Sequence[Callback | Callable[[Progress], bool | None]] = (),
) -> TrainResult:
    """Train `net` from `params` for epochs `start_epoch` … `epochs − 1`: one loop for all.

    | argument          | meaning                                                         |
    |-------------------|-----------------------------------------------------------------|
    | `net`             | a :func:`manualgrad.network` (its loss, λ, dropout, precision)  |
    | `X`, `Y`          | (…, m) and (n_L, m), examples last; cast to the params' dtype   |
    | `optimizer`       | an optax `GradientTransformation`, or a :class:`Step`           |
    |                   | (:func:`minibatch_step`, :func:`private_step`,                  |
    |                   | :func:`data_parallel_step`) that already holds one              |
    | `epochs`          | the epoch to train up to (≥ 1)                                  |
    | `batch_size`      | B ≤ m; None = full batch (no shuffle). Last batch has m mod B   |
    | `key`             | `jax.random.key` (default key(0)); every shuffle, dropout mask, |
    |                   | Poisson batch and noise derives from (key, unit)                |
    | `dp`              | a :class:`manualgrad.privacy.DPConfig`: DP-SGD for round(epochs |
    |                   | / q) steps, σ calibrated first, ε reported by an `Accountant`   |
    | `opt_state`       | resume from this state (default: the step's `init(params)`)     |
    | `start_epoch`     | resume at this epoch (keys depend on the unit, not the call)    |
    | `epochs_per_call` | epochs per compiled call, i.e. between callbacks (default       |
    |                   | ⌈epochs / 100⌉); it never changes the result                    |
    | `callbacks`       | :class:`Callback` objects (`Checkpointer(dir, every)`,          |
    |                   | `StopOnSignal()`, `Accountant(plan)`) or plain functions of a   |
    |                   | :class:`Progress` returning True to stop                        |

    Returns a :class:`TrainResult`; with DP its `metrics["epsilon"]` is the ε spent.
    """
    _positive_int("epochs", epochs, optional=False, hint=": the number of passes over the data")
    _positive_int("epochs_per_call", epochs_per_call)
    if isinstance(start_epoch, bool) or not isinstance(start_epoch, int | np.integer):
        raise ConfigError(f"`start_epoch` must be an int, got {start_epoch!r}")
    if not 0 <= start_epoch <= epochs:
        raise ConfigError(f"`start_epoch` must be in [0, epochs = {epochs}], got {start_epoch}")
    key = jax.random.key(0) if key is None else key
    check.check_key(key)
    params = engine.check_params(params, net.spec)
    dtype = check.params_dtype_of(params)
    params = {k: jnp.asarray(v) for k, v in params.items()}
    X, Y = check.as_array("X", X), _as_real(check.as_array("Y", Y), dtype)
    if not net.layers[0].takes_ids:  # token ids stay integers; anything else: the params' dtype
        X = _as_real(X, dtype)
    step, implied = _resolve_step(net, optimizer, X, epochs, batch_size, dp)
    hooks = [*implied, *(as_callback(c) for c in callbacks)]
    net.checked(params, X, Y, key)  # shapes and options, with their clear messages
    units = round(epochs * step.units_per_epoch)
    per_call = max(1, round((epochs_per_call or math.ceil(epochs / 100)) * step.units_per_epoch))
    run = Run(
        net=net,
        params=params,
        opt_state=step.init(params) if opt_state is None else opt_state,
        X=X,
        Y=Y,
        key=key,
        step=step,
        epochs=epochs,
        units=units,
        start=round(start_epoch * step.units_per_epoch),
        per_call=per_call,
        history=np.zeros((0,), np.dtype(dtype)),
    )
    try:
        for hook in hooks:
            run = hook.start(run)
        result = _run(run, hooks)
        _end(hooks, result)
    finally:
        for hook in hooks:
            hook.close()
    return result


def _run(run: Run, hooks: Sequence[Callback]) -> TrainResult:
    """The loop itself: compiled chunks until `run.units`, callbacks in between."""
    chunk = _compiled_chunk(run.step.step, run.per_call)
    X, Y = run.step.hold(run.X, run.Y)  # once per run
    params, opt_state, t = run.params, run.opt_state, run.start
    history = [run.history]
    spu = run.step.optimizer_steps(run.X.shape[-1])
    progress = None

    def make(metrics: Mapping[str, Any]) -> Progress:
        so_far = np.concatenate(history)
        cost = float(so_far[-1]) if len(so_far) else math.nan
        epoch = int(t / run.step.units_per_epoch + 1e-9)
        return Progress(
            epoch, run.epochs, t * spu, cost, params, opt_state, so_far, dict(metrics), run
        )

    while t < run.units:
        n = min(run.per_call, run.units - t)
        params, opt_state, costs = chunk(params, opt_state, t, n, X, Y, run.key)
        history.append(np.asarray(costs)[:n])
        t += n
        progress = _with_metrics(make({}), hooks)
        if any([bool(hook.after(progress)) for hook in hooks]):
            break
    if progress is None:  # nothing left to run (resumed at the end)
        progress = _with_metrics(make({}), hooks)
    start_epoch = int(run.start / run.step.units_per_epoch + 1e-9)
    return TrainResult(
        params,
        opt_state,
        progress.history,
        progress.epoch,
        start_epoch,
        progress.step,
        run.start * spu,
        progress.metrics,
    )


def _with_metrics(progress: Progress, hooks: Sequence[Callback]) -> Progress:
    metrics = dict(progress.metrics)
    for hook in hooks:
        metrics.update(hook.metrics(progress._replace(metrics=dict(metrics))))
    return progress._replace(metrics=metrics)


def _end(hooks: Sequence[Callback], result: TrainResult) -> None:
    """Every callback's `end`, even when one raises (the first error is raised after)."""
    error: BaseException | None = None
    for hook in hooks:
        try:
            hook.end(result)
        except BaseException as err:  # e.g. StopOnSignal's TrainingInterrupted
            error = error or err
    if error is not None:
        raise error


def accuracy(net: Network, params: Mapping[str, Array], X: ArrayLike, Y: ArrayLike) -> float:
    """The fraction of examples whose predicted class (`net.predict`) equals the label.

    Y: (1, m) labels in {0, 1} for one output unit (sigmoid), or one-hot (n_L, m) for
    n_L > 1 outputs (softmax); class indices y must be one-hot encoded first,
    `jax.nn.one_hot(y, n_L).T`. X may be any float dtype (it is cast to the params').
    """
    params = engine.check_params(params, net.spec)
    X = check.as_array("X", X)
    if jnp.issubdtype(X.dtype, jnp.floating):
        X = X.astype(check.params_dtype_of(params))
    pred = np.asarray(net.predict(params, X))
    Y_ = np.asarray(engine.check_labels(params, Y, pred.shape[1], net.spec))
    labels = Y_.reshape(1, -1) if Y_.shape[0] == 1 else np.argmax(Y_, axis=0)[None, :]
    return float(np.mean(pred == labels))
