r"""Data parallelism: the sums over examples in formula (2) become all-reduces.

Split the m columns of X (the examples) over N devices, device d holding the set
S_d of m_d columns, and keep every W[l], b[l] replicated. The forward pass and
formulas (3)-(5) act column by column, so each device runs them on its own columns
with no communication. Only the sums over examples need the other devices:

    dW[l] = (1/m) Σ_i dZ[l](i) A[l-1](i)ᵀ = (1/m) Σ_d [ Σ_{i∈S_d} dZ[l](i) A[l-1](i)ᵀ ]     (2)
    db[l] = (1/m) Σ_d [ Σ_{i∈S_d} dZ[l](i) ]                                                 (2)
    C     = (1/m) Σ_d [ Σ_{i∈S_d} L_i ]  (+ (λ/2m) Σ_l ‖W[l]‖_F², computed on every device)

The bracket is formula (2) applied to a device's own columns with the *global* m
(the engine's normaliser); the outer Σ_d is one `lax.psum` (an all-reduce). No 1/m_d
ever appears, so nothing has to be rescaled by m_d/m: the result differs from the
single-device one only by the order of the floating-point additions.

Every function here takes the functions of a :class:`manualgrad.Network` (built once
with :func:`manualgrad.network`), so the options are never repeated:

- :func:`data_parallel`: `jax.jit` of any network function (`net.value_and_grad`,
  `net.clipped_grads`, `net.per_example_norms`, …) with the examples split over the
  mesh; XLA's partitioner inserts the all-reduces. Per-example outputs stay on their
  example's device (no collective at all for `per_example_norms`); `clipped_grads`
  reduces only the clipped sums of (2).
- :func:`shard_map_value_and_grad`, :func:`shard_map_clipped_grads`: the readable
  reference — `shard_map`, local parts of (2), a visible `lax.psum`.
- :func:`data_parallel_fn`: a network function pinned to the shardings, for use
  inside jit; `mg.training.data_parallel_step(net, optimizer, mesh, batch_size)` trains
  with it (`mg.train(net, params, X, Y, data_parallel_step(...))`).

Shardings: X (n_x, m) and Y (n_L, m) use `NamedSharding(mesh, P(None, "batch"))`
(:func:`batch_sharding`), params use `P()` (:func:`replicated_sharding`). jax requires
the sharded axis to divide evenly: :func:`data_parallel`, :func:`data_parallel_step`
and :func:`shard_batch` raise a :class:`ShapeError` when m is not a multiple of the
device count, while the shard_map functions pad X and Y with masked zero columns
(exact: a masked column's dZ is zeroed, so by the linearity of (4), (5) and (2) it
adds exactly 0 to every sum, and it is left out of the cost and of m).

Nothing here assumes one process: with `jax.distributed.initialize()` the mesh from
:func:`data_mesh` spans every host's devices, :func:`shard_batch_from_local` builds
the global X, Y from each process's own columns, and the same jitted functions run
on every process (see the README's "Many devices").

>>> import jax, jax.numpy as jnp, manualgrad as mg
>>> mesh = mg.parallel.data_mesh()
>>> net = mg.network(["relu", "sigmoid"])
>>> params = net.init([2, 4, 1], jax.random.key(0))
>>> X = jnp.ones((2, 4 * len(jax.devices())))
>>> Y = jnp.ones((1, 4 * len(jax.devices())))
>>> cost, grads = mg.parallel.data_parallel(net.value_and_grad, mesh)(params, X, Y)
>>> sorted(grads) == sorted(params)
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from manualgrad._core import engine
from manualgrad._errors import ConfigError, ShapeError
from manualgrad._network import Network
from manualgrad.per_example import clip_weights

__all__ = [
    "batch_sharding",
    "data_mesh",
    "data_parallel",
    "data_parallel_fn",
    "replicate",
    "replicated_sharding",
    "shard_batch",
    "shard_batch_from_local",
    "shard_map_clipped_grads",
    "shard_map_value_and_grad",
]

shard_map = jax.shard_map

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


def replicated_sharding(mesh: Mesh) -> NamedSharding:
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
    return jax.device_put(tree, replicated_sharding(mesh))


# --------------------------------------------------------------------------- automatic sharding


def data_parallel_fn(mesh: Mesh, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn(params, X, Y, *args, **kwargs)` with X, Y split by columns over `mesh`, inside jit.

    For use *inside* a jitted computation (e.g. `mg.training.data_parallel_step`,
    whose mini-batches are cut inside one compiled scan): it pins X and Y to
    :func:`batch_sharding` and params to :func:`replicated_sharding` with
    `jax.lax.with_sharding_constraint`, so
    XLA partitions the forward pass and formulas (3)-(5) by columns and turns the
    sums over examples of (2) and of the cost into all-reduces. Every batch's m must
    be a multiple of `mesh.size` (checked at trace time, :class:`ShapeError`).
    """
    batch, rep = batch_sharding(mesh), replicated_sharding(mesh)

    def sharded(params, X, Y, *args, **kwargs):
        _check_divisible(np.shape(X)[-1], mesh.size)
        params = lax.with_sharding_constraint(dict(params), rep)
        x_spec = P(*([None] * (np.ndim(X) - 1)), _axis(mesh))  # X (…, m): examples last
        X = lax.with_sharding_constraint(X, NamedSharding(mesh, x_spec))
        Y = lax.with_sharding_constraint(Y, batch)
        return fn(params, X, Y, *args, **kwargs)

    return sharded


def data_parallel(
    fn: Callable[..., Any], mesh: Mesh, *, per_example: bool = False
) -> Callable[..., Any]:
    """`jax.jit` of `fn(params, X, Y, *args)` with the examples split over `mesh`.

    `fn` is any function of a :class:`manualgrad.Network` (`net.value_and_grad`,
    `net.clipped_grads`, `net.per_example_norms`, …). The result equals the
    single-device one up to the order of the additions. Outputs are replicated on
    every device, or, with `per_example=True` (per-example outputs such as
    `net.per_example_norms`, shape (m,)), split over the devices like the examples —
    then nothing is communicated at all, since ‖g_i‖ uses column i alone. Norms, clip
    factors and scaled dZ columns are local, so `net.clipped_grads` all-reduces only
    the clipped sums of (2). Dropout masks are drawn for the global (n_l, m) shapes:
    they are the single-device masks too. m must be a multiple of `mesh.size`.

    The returned function is a `jax.jit` object: `.lower(...).compile()` gives the
    compiled computation to inspect.
    """
    out = NamedSharding(mesh, P(_axis(mesh))) if per_example else replicated_sharding(mesh)
    return jax.jit(data_parallel_fn(mesh, fn), out_shardings=out)


# --------------------------------------------------------------------------- explicit shard_map


def _shard_map_fn(net: Network, mesh: Mesh, clipped: bool) -> Callable[..., Any]:
    """jit(shard_map(...)) of net's value_and_grad, or of its clipped_grads when `clipped`.

    Each device runs the engine's pass on its own columns; padding columns get weight
    0 (their dZ columns are zeroed before (2), so they add exactly 0 to every sum);
    formula (2) divides by the *global* m on each device, and one `lax.psum` adds the
    devices' parts: (1/m) Σ_d Σ_{i∈S_d} = (1/m) Σ_i.
    """
    if net.keep_prob != 1:
        raise ConfigError(
            f"the shard_map path has no dropout, but the network has keep_prob = "
            f"{net.keep_prob}: use `data_parallel(net.value_and_grad, mesh)` for dropout"
        )
    axis = _axis(mesh)
    n_devices = mesh.size
    l2 = net.l2
    spec = net.spec

    def run(params, X, Y, clip_norm=None):
        params, X, Y, m = net.checked(params, X, Y)  # the global m
        m_pad = -(-m // n_devices) * n_devices
        pad = [(0, 0)] * (X.ndim - 1) + [(0, m_pad - m)]
        X = jnp.pad(X, pad)
        Y = jnp.pad(Y, ((0, 0), (0, m_pad - m)))
        mask = jnp.arange(m_pad) < m

        def per_device(params, X, Y, mask):  # X: (…, m_pad / N), this device's columns
            p = engine.backward_pass(params, X, Y, spec)
            weights = mask.astype(Y.dtype)  # padding adds 0 (Y has the params' dtype)
            if clip_norm is not None:  # s_i = min(1, C/‖g_i‖) uses column i only: local
                weights = weights * clip_weights(p.products, clip_norm)
            part = engine.grads_from_products(
                params, p.products, m=m, precision=net.precision, weights=weights
            )  # (2) on the columns of dZ scaled by s_i
            if clipped:
                grads = lax.psum(part, axis)  # Σ_d over devices: the only collective
                return engine.add_l2_grads(grads, params, l2, m)  # L2 once, never clipped
            losses = engine.example_losses(p.caches, Y, spec)
            loss_sum = jnp.sum(jnp.where(mask, losses, 0))  # Σ_i L_i on this device
            loss_sum, grads = lax.psum((loss_sum, part), axis)  # Σ_d over devices
            C = engine.cost(params, loss_sum, m=m, l2=l2)
            return C, engine.add_l2_grads(grads, params, l2, m)

        x_spec = P(*([None] * (X.ndim - 1)), axis)
        return shard_map(
            per_device,
            mesh=mesh,
            in_specs=(P(), x_spec, P(None, axis), P(axis)),
            out_specs=P() if clipped else (P(), P()),
        )(params, X, Y, mask)

    return jax.jit(run)


def shard_map_value_and_grad(net: Network, mesh: Mesh) -> Callable[..., tuple[Array, Params]]:
    """`(params, X, Y) -> (C, ∂C/∂params)` with the cross-device sums written out.

    `shard_map` + `lax.psum`: each device runs the forward pass and formulas (5), (4)
    on its own columns and applies formula (2) to them with the *global* m,
    Σ_{i∈S_d} dZ(i) A_prev(i)ᵀ / m and Σ_{i∈S_d} dZ(i) / m, together with
    Σ_{i∈S_d} L_i; one `lax.psum` adds these over the devices. The L2 terms use the
    replicated params and the global m, once.

    Any m works: X and Y are padded to a multiple of `mesh.size` with zero columns
    that are masked out of every sum (their dZ columns are zeroed), out of the cost
    and out of m. No dropout (use :func:`data_parallel`). Returns a `jax.jit` object.
    """
    return _shard_map_fn(net, mesh, clipped=False)


def shard_map_clipped_grads(net: Network, mesh: Mesh) -> Callable[..., Params]:
    """`(params, X, Y, clip_norm) -> (1/m) Σ_i s_i g_i (+ (λ/m) W)`, written with `shard_map`.

    Each device runs the backward chain on its own columns, computes ‖g_i‖ and
    s_i = min(1, C/‖g_i‖) for its own examples (no communication), applies formula
    (2) with the global m to s_i dz[l](i), and a single `lax.psum` of the 2L sums
    gives the clipped mean; L2 is added after, unclipped. Any m works (masked padding,
    as in :func:`shard_map_value_and_grad`); no dropout. Returns a `jax.jit` object.
    """
    return _shard_map_fn(net, mesh, clipped=True)
