r"""Data parallelism: the sums over examples in formula (2) become all-reduces.

Split the m columns of X (the examples) over N devices, device d holding the set
S_d of m_d columns, and keep every W[l], b[l] replicated. The forward pass and
formulas (3)-(5) act column by column, so each device runs them on its own columns
with no communication. Only the sums over examples need the other devices:

    dW[l] = (1/m) Σ_i dZ[l](i) A[l-1](i)ᵀ = (1/m) Σ_d [ Σ_{i∈S_d} dZ[l](i) A[l-1](i)ᵀ ]     (2)
    db[l] = (1/m) Σ_d [ Σ_{i∈S_d} dZ[l](i) ]                                                 (2)
    C     = (1/m) Σ_d [ Σ_{i∈S_d} L_i ]  (+ (λ/2m) Σ_l ‖W[l]‖_F², computed on every device)

The bracket is formula (2) applied to a device's own columns *as a sum* (no 1/m_d);
the outer Σ_d is one `lax.psum` (an all-reduce), and the 1/m is the global m. No
1/m_d ever appears, so nothing has to be rescaled by m_d/m: the result differs from
the single-device one only by the order of the floating-point additions.

- :func:`data_parallel_value_and_grad`: `jax.jit` of :func:`manualgrad.value_and_grad`
  on sharded inputs; XLA's partitioner inserts the all-reduces.
- :func:`shard_map_value_and_grad`: the readable reference — `shard_map`, local
  sums of (2), a visible `lax.psum`, division by the global m.
- :func:`data_parallel_per_example_norms`: every ‖g_i‖ stays on its example's
  device, no collective at all; :func:`data_parallel_clipped_grads` and
  :func:`shard_map_clipped_grads`: only the clipped sum of (2) is reduced.
- :func:`data_parallel_step`: a jitted optax training step on sharded batches;
  :func:`data_parallel_fn`: `value_and_grad` pinned to the shardings, for use inside
  jit (e.g. `train(..., value_and_grad_fn=data_parallel_fn(mesh))`).

Shardings: X (n_x, m) and Y (n_L, m) use `NamedSharding(mesh, P(None, "batch"))`
(:func:`batch_sharding`), params use `P()` (:func:`replicated`). jax requires the
sharded axis to divide evenly: :func:`data_parallel_value_and_grad`,
:func:`data_parallel_step` and :func:`shard_batch` raise a :class:`ShapeError` when
m is not a multiple of the device count, while :func:`shard_map_value_and_grad`
pads X and Y with masked zero columns (exact: a masked column's dZ[L] is 0, so by
the linearity of (4), (5) and (2) it adds exactly 0 to every sum, and it is left
out of the cost and of m).

Nothing here assumes one process: with `jax.distributed.initialize()` the mesh from
:func:`data_mesh` spans every host's devices, :func:`shard_batch_from_local` builds
the global X, Y from each process's own columns, and the same jitted functions run
on every process (see the README's "Many devices").

>>> import jax, jax.numpy as jnp, manualgrad as mg
>>> mesh = mg.data_mesh()
>>> params = mg.init_params([2, 4, 1], jax.random.key(0))
>>> X = jnp.ones((2, 4 * len(jax.devices())))
>>> Y = jnp.ones((1, 4 * len(jax.devices())))
>>> cost, grads = mg.data_parallel_value_and_grad(
...     params, X, Y, mesh, activations=("relu", "sigmoid"))
>>> sorted(grads) == sorted(params)
True
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from manualgrad._errors import ConfigError, ShapeError
from manualgrad.dense import bias_grad, weight_grad
from manualgrad.network import (
    STATIC_ARGNAMES,
    _backward_dZ,
    _forward,
    _prepare,
    value_and_grad,
)
from manualgrad.per_example import (
    _squared_norms,
    clip_factors,
    clipped_grads,
    per_example_norms,
)
from manualgrad.regularization import l2_cost, l2_weight_grad

# The public `jax.shard_map` (jax ≥ 0.7); the experimental one before that.
if hasattr(jax, "shard_map"):
    shard_map = jax.shard_map
else:  # pragma: no cover - older jax
    from jax.experimental.shard_map import shard_map

Array = jax.Array
Params = dict[str, Array]


# --------------------------------------------------------------------------- meshes


def data_mesh(devices: int | Sequence[Any] | None = None, axis_name: str = "batch") -> Mesh:
    """A 1-D device mesh whose one axis, `axis_name`, splits the examples.

    `devices`: None for all devices (`jax.devices()`, every host's under
    `jax.distributed`), an int N for the first N of them, or a sequence of devices.
    """
    all_devices = jax.devices()
    if devices is None:
        chosen = all_devices
    elif isinstance(devices, int):
        if not 1 <= devices <= len(all_devices):
            raise ConfigError(
                f"expected 1 ≤ `devices` ≤ {len(all_devices)} (the devices jax sees), got "
                f"{devices} — for N virtual CPU devices set "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax"
            )
        chosen = all_devices[:devices]
    else:
        chosen = list(devices)
        if not chosen:
            raise ConfigError("`devices` is empty: pass None for all devices, or a count")
    return Mesh(np.asarray(chosen), (axis_name,))


def _axis(mesh: Mesh) -> str:
    if not isinstance(mesh, Mesh) or len(mesh.axis_names) != 1:
        raise ConfigError(
            "expected a 1-D `jax.sharding.Mesh` over the examples (see `data_mesh`), got "
            f"{getattr(mesh, 'shape', mesh)!r}"
        )
    return mesh.axis_names[0]


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """`NamedSharding(mesh, P(None, axis))`: rows whole, columns (examples) split."""
    return NamedSharding(mesh, P(None, _axis(mesh)))


def replicated(mesh: Mesh) -> NamedSharding:
    """`NamedSharding(mesh, P())`: a full copy on every device (params, keys, the cost)."""
    return NamedSharding(mesh, P())


def _check_divisible(m: int, n_devices: int, what: str = "m") -> None:
    if m % n_devices:
        lo, hi = m // n_devices * n_devices, -(-m // n_devices) * n_devices
        raise ShapeError(
            f"expected the number of examples {what} = {m} to be a multiple of the "
            f"{n_devices} devices of the mesh (each gets an equal block of columns), got "
            f"{m} = {m // n_devices}·{n_devices} + {m % n_devices} — use a batch of "
            f"{lo or n_devices} or {hi} examples, or `shard_map_value_and_grad`, which pads "
            "with masked columns"
        )


# --------------------------------------------------------------------------- placing data


def shard_batch(X: Array, Y: Array, mesh: Mesh) -> tuple[Array, Array]:
    """Place X (n_x, m) and Y (n_L, m) with their columns split over the mesh.

    X and Y are the *global* arrays (every process passes all of them, or they are
    already global `jax.Array`s); on many hosts prefer :func:`shard_batch_from_local`.
    Raises :class:`ShapeError` unless m is a multiple of the mesh's device count.
    """
    for name, arr in (("X", X), ("Y", Y)):
        if np.ndim(arr) != 2:
            raise ShapeError(
                f"expected `{name}` of shape (rows, m) with examples as columns, got "
                f"{np.shape(arr)}"
            )
    if np.shape(X)[1] != np.shape(Y)[1]:
        raise ShapeError(
            f"expected X and Y to have the same number of columns m, got X {np.shape(X)} "
            f"and Y {np.shape(Y)}"
        )
    _check_divisible(np.shape(X)[1], mesh.size)
    sharding = batch_sharding(mesh)
    return jax.device_put(X, sharding), jax.device_put(Y, sharding)


def shard_batch_from_local(X_local: Any, Y_local: Any, mesh: Mesh) -> tuple[Array, Array]:
    """Build the global, column-sharded X and Y from this process's own columns.

    Each process passes X_local (n_x, m_p) and Y_local (n_L, m_p), the examples it
    loaded; the global arrays have m = Σ_p m_p columns, process p's block lying on
    its own devices (`jax.make_array_from_process_local_data`). With one process
    this is :func:`shard_batch`. m_p must be a multiple of this process's devices
    in the mesh.
    """
    sharding = batch_sharding(mesh)
    n_local = len(mesh.local_devices)
    n_processes = mesh.size // n_local
    out = []
    for name, arr in (("X_local", X_local), ("Y_local", Y_local)):
        arr = np.asarray(arr)
        if arr.ndim != 2:
            raise ShapeError(f"expected `{name}` of shape (rows, m_p), got {arr.shape}")
        _check_divisible(arr.shape[1], n_local, what=f"{name}.shape[1] (this process's m_p)")
        global_shape = (arr.shape[0], arr.shape[1] * n_processes)
        out.append(jax.make_array_from_process_local_data(sharding, arr, global_shape))
    if out[0].shape[1] != out[1].shape[1]:
        raise ShapeError(
            f"expected X_local and Y_local to have the same number of columns, got "
            f"{np.shape(X_local)} and {np.shape(Y_local)}"
        )
    return out[0], out[1]


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put every leaf of `tree` (params, an optimizer state, a key) on every device."""
    return jax.device_put(tree, replicated(mesh))


# --------------------------------------------------------------------------- automatic sharding


@functools.cache
def _jit_value_and_grad(mesh: Mesh) -> Callable:
    rep = replicated(mesh)
    return jax.jit(value_and_grad, static_argnames=STATIC_ARGNAMES, out_shardings=(rep, rep))


def data_parallel_value_and_grad(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    mesh: Mesh,
    *,
    activations: Sequence[str],
    loss: str = "bce",
    l2: float | Array = 0.0,
    keep_prob: float = 1.0,
    key: Array | None = None,
    precision: str = "default",
) -> tuple[Array, Params]:
    """:func:`manualgrad.value_and_grad` with X, Y split by columns over `mesh`.

    The same cost and grads as the single-device call (up to the order of the
    additions), replicated on every device. This is `jax.jit` of the core function
    on inputs sharded as `P(None, "batch")` with params replicated: XLA partitions
    the forward and formulas (3)-(5) by columns and turns the example sums of (2)
    and of the cost into all-reduces. Dropout masks are drawn for the global
    (n_l, m) shapes, so they are the single-device masks too.

    m must be a multiple of `mesh.size` (:class:`ShapeError` otherwise).
    """
    X, Y = shard_batch(X, Y, mesh)
    params, key = replicate((dict(params), key), mesh)
    return _jit_value_and_grad(mesh)(
        params,
        X,
        Y,
        activations=tuple(activations),
        loss=loss,
        l2=l2,
        keep_prob=keep_prob,
        key=key,
        precision=precision,
    )


# --------------------------------------------------------------------------- explicit shard_map


def _column_sums(params, caches, dZs, w, precision):
    """Formula (2) as a weighted *sum* over this device's columns, for every layer.

    Returns {"W1": Σ_i w_i dz[1](i) a[0](i)ᵀ, "b1": Σ_i w_i dz[1](i), …}: no 1/m.
    w (m_d,) is 0 on padding columns and 1 (or the clip factor s_i) elsewhere;
    dZs are :func:`manualgrad.network._backward_dZ`'s, caches the forward's.
    """
    sums: Params = {}
    for l, (cache, dZ) in enumerate(zip(caches, dZs, strict=True), start=1):
        dZ = dZ * w[None, :]  # column i scaled by w_i (dZ is linear in dz[L](i))
        sums[f"W{l}"] = weight_grad(dZ, cache.A_prev, precision=precision, m=1)  # (2), as Σ_i
        sums[f"b{l}"] = bias_grad(dZ, m=1)  # (2), as Σ_i
    return {k: sums[k] for k in params}


@functools.cache
def _shard_map_fn(
    mesh: Mesh,
    activations: tuple[str, ...],
    loss: str,
    precision: str,
    clipped: bool = False,
):
    """jit(shard_map(...)) of value_and_grad, or of clipped_grads when `clipped`."""
    axis = _axis(mesh)
    n_devices = mesh.size

    def run(params, X, Y, l2, clip_norm=None):
        X, Y, acts, loss_spec = _prepare(params, X, Y, activations, loss, l2, 1.0, None, precision)
        m = X.shape[1]  # the global m: the real examples, not the padding
        m_pad = -(-m // n_devices) * n_devices
        X = jnp.pad(X, ((0, 0), (0, m_pad - m)))
        Y = jnp.pad(Y, ((0, 0), (0, m_pad - m)))
        mask = jnp.arange(m_pad) < m

        def per_device(params, X, Y, mask):  # X: (n_x, m_pad / N), this device's columns
            _, caches = _forward(params, X, acts, 1.0, None, precision)
            dZs = _backward_dZ(params, caches, Y, acts, loss_spec, 1.0, precision)
            w = mask.astype(X.dtype)  # padding columns add exactly 0 to every sum
            if clipped:  # s_i = min(1, C/‖g_i‖) needs column i only: no communication
                w = w * clip_factors(_squared_norms(caches, dZs), clip_norm)
            sums = _column_sums(params, caches, dZs, w, precision)
            if clipped:
                sums = lax.psum(sums, axis)  # Σ_d over devices: the only collective
            else:
                last = caches[-1]
                losses = loss_spec.per_example(last.Z, last.A, Y)
                loss_sum = jnp.sum(jnp.where(mask, losses, 0))  # Σ_i L_i on this device
                loss_sum, sums = lax.psum((loss_sum, sums), axis)  # Σ_d over devices
            grads = {k: g / m for k, g in sums.items()}  # (2): the 1/m of the global m
            # L2 acts on the replicated params, once, with the global m (l2 is traced: a
            # zero λ adds exact zeros); it belongs to no example, so it is never clipped
            for k in grads:
                if k.startswith("W"):
                    grads[k] = grads[k] + l2_weight_grad(params[k], l2, m)
            if clipped:
                return grads
            return loss_sum / m + l2_cost(params, l2, m), grads  # C = (1/m) Σ_i L_i (+ L2)

        return shard_map(
            per_device,
            mesh=mesh,
            in_specs=(P(), P(None, axis), P(None, axis), P(axis)),
            out_specs=P() if clipped else (P(), P()),
        )(params, X, Y, mask)

    return jax.jit(run)


def shard_map_value_and_grad(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    mesh: Mesh,
    *,
    activations: Sequence[str],
    loss: str = "bce",
    l2: float | Array = 0.0,
    precision: str = "default",
) -> tuple[Array, Params]:
    """(C, ∂C/∂params) with the cross-device sums written out: `shard_map` + `lax.psum`.

    Each device runs the forward pass and formulas (5), (4) on its own columns and
    applies formula (2) to them as a *sum*, Σ_{i∈S_d} dZ(i) A_prev(i)ᵀ and
    Σ_{i∈S_d} dZ(i), together with Σ_{i∈S_d} L_i; one `lax.psum` adds these over the
    devices, and only then is everything divided by the global m. The L2 terms use
    the replicated params and the global m.

    Any m works: X and Y are padded to a multiple of `mesh.size` with zero columns
    that are masked out of every sum (dZ[L] = 0 there). Dropout is not offered here
    (use :func:`data_parallel_value_and_grad`); X and Y may be ordinary or already
    sharded arrays.
    """
    return _shard_map_fn(mesh, tuple(activations), loss, precision)(dict(params), X, Y, l2)


@functools.cache
def data_parallel_fn(mesh: Mesh, fn: Callable = value_and_grad) -> Callable:
    """`fn` (default :func:`manualgrad.value_and_grad`) with X, Y split over `mesh` inside jit.

    Returns a function with `fn`'s signature, `(params, X, Y, **options)`, for use
    *inside* a jitted computation — e.g. `train(..., value_and_grad_fn=data_parallel_fn(mesh))`
    (:mod:`manualgrad.train`), whose mini-batches are cut inside one compiled scan. It
    pins X and Y to :func:`batch_sharding` and params to :func:`replicated` with
    `jax.lax.with_sharding_constraint`, so XLA partitions the columns and all-reduces
    the sums of (2). Every batch's m must be a multiple of `mesh.size` (checked at
    trace time, :class:`ShapeError`; with `train`'s mini-batches that includes the
    last, m mod B one). Cached, so the same mesh gives the same function (and no
    recompilation in callers that cache on it).
    """
    batch, rep = batch_sharding(mesh), replicated(mesh)

    def sharded(params, X, Y, **options):
        _check_divisible(np.shape(X)[1], mesh.size)
        params = lax.with_sharding_constraint(dict(params), rep)
        X = lax.with_sharding_constraint(X, batch)
        Y = lax.with_sharding_constraint(Y, batch)
        return fn(params, X, Y, **options)

    return sharded


# --------------------------------------------------------------------------- per-example


@functools.cache
def _jit_per_example(mesh: Mesh):
    static = ("activations", "loss", "keep_prob", "precision")
    examples = NamedSharding(mesh, P(_axis(mesh)))
    norms = jax.jit(per_example_norms, static_argnames=static, out_shardings=examples)
    clipped = jax.jit(clipped_grads, static_argnames=static, out_shardings=replicated(mesh))
    return norms, clipped


def data_parallel_per_example_norms(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    mesh: Mesh,
    *,
    activations: Sequence[str],
    loss: str = "bce",
    keep_prob: float = 1.0,
    key: Array | None = None,
    precision: str = "default",
) -> Array:
    """:func:`manualgrad.per_example_norms` with the examples split over `mesh`.

    ‖g_i‖² = Σ_l ‖dz[l](i)‖² (‖a[l-1](i)‖² + 1) uses column i alone, so each device
    computes the norms of its own examples and nothing is communicated: the result,
    of shape (m,), stays split over the devices (`P("batch")`) and the compiled
    computation holds no all-reduce. m must be a multiple of `mesh.size`.
    """
    X, Y = shard_batch(X, Y, mesh)
    params, key = replicate((dict(params), key), mesh)
    norms, _ = _jit_per_example(mesh)
    return norms(
        params,
        X,
        Y,
        activations=tuple(activations),
        loss=loss,
        keep_prob=keep_prob,
        key=key,
        precision=precision,
    )


def data_parallel_clipped_grads(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    mesh: Mesh,
    *,
    clip_norm: float | Array,
    activations: Sequence[str],
    loss: str = "bce",
    l2: float | Array = 0.0,
    keep_prob: float = 1.0,
    key: Array | None = None,
    precision: str = "default",
) -> Params:
    """:func:`manualgrad.clipped_grads` with the examples split over `mesh`.

    Norms, clip factors s_i and the scaled dZ[l] are all per column, hence local;
    the only communication is the sum of formula (2) over the clipped columns,
    (1/m) Σ_d Σ_{i∈S_d} s_i dz[l](i) a[l-1](i)ᵀ: one all-reduce of the 2L arrays
    dW[l], db[l]. The result is replicated. m must be a multiple of `mesh.size`.
    """
    X, Y = shard_batch(X, Y, mesh)
    params, key = replicate((dict(params), key), mesh)
    _, clipped = _jit_per_example(mesh)
    return clipped(
        params,
        X,
        Y,
        clip_norm=clip_norm,
        activations=tuple(activations),
        loss=loss,
        l2=l2,
        keep_prob=keep_prob,
        key=key,
        precision=precision,
    )


def shard_map_clipped_grads(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    mesh: Mesh,
    *,
    clip_norm: float | Array,
    activations: Sequence[str],
    loss: str = "bce",
    l2: float | Array = 0.0,
    precision: str = "default",
) -> Params:
    """:func:`manualgrad.clipped_grads` written out with `shard_map` and one `lax.psum`.

    Each device runs the backward chain on its own columns, computes ‖g_i‖ and
    s_i = min(1, C/‖g_i‖) for its own examples (no communication), applies formula
    (2) to s_i dz[l](i) as a sum, and a single `lax.psum` of the 2L sums, divided by
    the global m, gives (1/m) Σ_i s_i g_i; L2 is added after, unclipped. Any m works
    (masked padding, as in :func:`shard_map_value_and_grad`); no dropout.
    """
    fn = _shard_map_fn(mesh, tuple(activations), loss, precision, clipped=True)
    return fn(dict(params), X, Y, l2, clip_norm)


# --------------------------------------------------------------------------- training step


def data_parallel_step(
    optimizer: Any,
    mesh: Mesh,
    *,
    activations: Sequence[str],
    loss: str = "bce",
    l2: float = 0.0,
    keep_prob: float = 1.0,
    precision: str = "default",
) -> Callable[..., tuple[Params, Any, Array]]:
    """A jitted data-parallel training step for an optax `GradientTransformation`.

    Returns `step(params, opt_state, X, Y, key=None) -> (params, opt_state, cost)`:
    X, Y are split by columns over `mesh` (:class:`ShapeError` unless the batch size
    m is a multiple of `mesh.size`), params and opt_state are replicated, the grads
    are :func:`manualgrad.value_and_grad`'s (all-reduced by XLA), and the optax update
    runs identically on every device, so the new params stay replicated. Use
    `init_state(params)` on the returned function to build a replicated opt_state.
    """
    import optax

    acts = tuple(activations)
    rep = replicated(mesh)

    def step(params, opt_state, X, Y, key):
        C, grads = value_and_grad(
            params,
            X,
            Y,
            activations=acts,
            loss=loss,
            l2=l2,
            keep_prob=keep_prob,
            key=key,
            precision=precision,
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, C

    jitted = jax.jit(step, out_shardings=(rep, rep, rep))

    def data_parallel(params, opt_state, X, Y, key=None):
        X, Y = shard_batch(X, Y, mesh)
        params, opt_state, key = replicate((dict(params), opt_state, key), mesh)
        return jitted(params, opt_state, X, Y, key)

    data_parallel.init_state = lambda params: replicate(optimizer.init(dict(params)), mesh)
    return data_parallel
