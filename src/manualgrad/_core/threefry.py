r"""jax's Threefry-2x32 generator with its hash written out: jax.random's numbers, in one kernel.

The private step draws its randomness with jax's default generator, Threefry-2x32
(Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a counter
block (x0, x1) of two 32-bit words is hashed with the key (k1, k2) by 20 rounds of

    x0 ← x0 + x1,   x1 ← x0 ⊕ rotl(x1, r)        r ∈ (13, 15, 26, 6), then (17, 29, 16, 24)

with the key words k1, k2, k1 ⊕ k2 ⊕ 0x1BD11BDA injected after every 4 rounds. jax
lowers this hash on CPU as a `fori_loop` of 5 iterations (to keep compile times short);
XLA then runs each iteration as its own small kernels over the whole counter arrays,
and a step that splits a key, folds in the step number, draws K uniforms and P normals
runs four such loops. Written here with jax.numpy's uint32 arithmetic, unrolled, the
hash fuses with what consumes it into one loop kernel. The numbers are the same, bit
for bit (tests/test_threefry.py compares every function with jax.random, under both
settings of `jax_threefry_partitionable`); only the compiled program differs. On the
quiet 2-core CPU, P = 270 336 float32 normals took 0.66 ms, against 1.26 ms for
jax.random's same draw and 1.41 ms for its default scheme (bench/random_normals.py,
bench/RESULTS.md).

Each function takes a key of jax's "threefry2x32" implementation, typed
(`jax.random.key`) or raw (`jax.random.PRNGKey`, when that is the default
implementation), of a single key's shape, and float32 or float64; anything else —
another implementation (rbg), a batch of keys, another dtype, more than 2³¹ numbers —
is handed to jax.random itself, so the result is always jax.random's. Used by the
private step (:func:`manualgrad.privacy.poisson_batch`, :func:`manualgrad.privacy.add_noise`,
:func:`manualgrad.training.private_step`).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["fold_in", "normal", "split", "threefry2x32", "uniform"]

Array = jax.Array

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)
_MAX_WORDS = 2**31  # counters stay far below 2³²: one block of jax's original scheme


def _rotate_left(x: Array, r: int) -> Array:
    return lax.shift_left(x, np.uint32(r)) | lax.shift_right_logical(x, np.uint32(32 - r))


def threefry2x32(k1: Array, k2: Array, x0: Array, x1: Array) -> tuple[Array, Array]:
    """The Threefry-2x32 hash (20 rounds) of the counter blocks (x0, x1) under the key (k1, k2).

    Shapes: k1, k2 uint32 scalars; x0, x1 uint32 of one shape -> two arrays of it. The
    same function as jax's `threefry2x32` primitive, unrolled (module docstring).
    """
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ _rotate_left(x1, r)
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _is_typed(key: Array) -> bool:
    return jnp.issubdtype(key.dtype, jax.dtypes.prng_key)


def _handles(key: Any, dtype: Any = jnp.float32, size: int = 1) -> bool:
    """Whether this module computes the draw itself (else jax.random does)."""
    if not isinstance(key, jax.Array) or size >= _MAX_WORDS // 2:
        return False
    if jnp.dtype(dtype) not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        return False
    if _is_typed(key):
        return key.shape == () and str(jax.random.key_impl(key)) == "threefry2x32"
    return (
        key.shape == (2,)
        and key.dtype == jnp.uint32
        and jax.config.jax_default_prng_impl == "threefry2x32"  # pyright: ignore[reportAttributeAccessIssue]
    )


def _words(key: Array) -> tuple[Array, Array]:
    data = jax.random.key_data(key) if _is_typed(key) else key
    return data[0], data[1]


def _as_keys(words: Array, like: Array) -> Array:
    """Key words (…, 2) as keys of `like`'s kind: typed keys (…,) or raw uint32 (…, 2)."""
    return jax.random.wrap_key_data(words, impl="threefry2x32") if _is_typed(like) else words


def _partitionable(partitionable: bool | None) -> bool:
    if partitionable is None:  # jax's setting, context managers included
        return bool(jax.config.jax_threefry_partitionable)  # pyright: ignore[reportAttributeAccessIssue]
    return partitionable


def _original_blocks(k1: Array, k2: Array, n: int) -> tuple[Array, Array]:
    """jax's original scheme for n words: the hash of the counters 0 … n−1 paired as (i, i + ⌈n/2⌉).

    The n words are concatenate([y0, y1])[:n]; for odd n the last block's second
    counter is 0 (jax pads the counters with one 0).
    """
    half = (n + 1) // 2
    c = lax.iota(jnp.uint32, half)
    x1 = c + np.uint32(half)
    if n % 2:
        x1 = jnp.where(c == half - 1, np.uint32(0), x1)
    return threefry2x32(k1, k2, c, x1)


def _indexed_blocks(k1: Array, k2: Array, n: int) -> tuple[Array, Array]:
    """jax's partitionable scheme: block i is the hash of the counters (0, i), i < n < 2³²."""
    c = lax.iota(jnp.uint32, n)
    return threefry2x32(k1, k2, jnp.zeros_like(c), c)


def _bits(key: Array, n: int, width: int, partitionable: bool) -> Array:
    """jax.random.bits(key, (n,), uint{width}) for width 32 or 64."""
    k1, k2 = _words(key)
    if partitionable:  # one block per number: counters (high, low) word of its index
        y0, y1 = _indexed_blocks(k1, k2, n)
        if width == 32:
            return y0 ^ y1
    else:
        if width == 32:
            y0, y1 = _original_blocks(k1, k2, n)
            return jnp.concatenate([y0, y1])[:n]
        y0, y1 = _original_blocks(k1, k2, 2 * n)  # 2n words: high halves, then low
    return lax.shift_left(y0.astype(jnp.uint64), np.uint64(32)) | y1.astype(jnp.uint64)


def _uniform(key: Array, n: int, dtype: Any, low: Any, high: Any, partitionable: bool) -> Array:
    """jax.random.uniform(key, (n,), dtype, low, high): mantissa bits under the exponent of 1."""
    dtype = jnp.dtype(dtype)
    width = dtype.itemsize * 8
    bits = _bits(key, n, width, partitionable)
    unsigned = jnp.uint32 if width == 32 else jnp.uint64
    mantissa = lax.shift_right_logical(bits, unsigned(width - jnp.finfo(dtype).nmant))
    one = np.array(1.0, dtype).view(unsigned)
    floats = lax.bitcast_convert_type(mantissa | one, dtype) - np.array(1.0, dtype)  # [0, 1)
    low, high = np.array(low, dtype), np.array(high, dtype)
    return lax.max(low, floats * (high - low) + low)


def uniform(
    key: Array, shape: tuple[int, ...], dtype: Any = float, *, partitionable: bool | None = None
) -> Array:
    """`jax.random.uniform(key, shape, dtype)` on [0, 1), the same numbers.

    `partitionable`: the scheme (None: jax's current `jax_threefry_partitionable`).
    """
    dtype = jax.dtypes.canonicalize_dtype(dtype)
    n = math.prod(shape)
    if not _handles(key, dtype, n):
        with _scheme(partitionable):
            return jax.random.uniform(key, shape, dtype)
    return _uniform(key, n, dtype, 0.0, 1.0, _partitionable(partitionable)).reshape(shape)


def normal(
    key: Array, shape: tuple[int, ...], dtype: Any = float, *, partitionable: bool | None = None
) -> Array:
    """`jax.random.normal(key, shape, dtype)`, the same numbers: √2 erf⁻¹(u), u uniform on (−1, 1).

    `partitionable`: the scheme (None: jax's current `jax_threefry_partitionable`;
    False: jax's original one, both words of every block, half the blocks).
    """
    dtype = jax.dtypes.canonicalize_dtype(dtype)
    n = math.prod(shape)
    if not _handles(key, dtype, n):
        with _scheme(partitionable):
            return jax.random.normal(key, shape, dtype)
    low = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype))
    u = _uniform(key, n, dtype, low, 1.0, _partitionable(partitionable))
    return lax.erf_inv(u).reshape(shape) * jnp.asarray(np.sqrt(2), dtype)


def split(key: Array, num: int = 2, *, partitionable: bool | None = None) -> Array:
    """`jax.random.split(key, num)`: `num` new keys, the same ones (a shape `num`: jax.random's)."""
    if isinstance(num, bool) or not isinstance(num, int) or not _handles(key, size=2 * num):
        with _scheme(partitionable):
            return jax.random.split(key, num)
    if _partitionable(partitionable):  # key i: the block of counters (0, i)
        words = jnp.stack(_indexed_blocks(*_words(key), num), axis=-1)
    else:  # the 2·num words of counters 0 … 2·num − 1, in pairs
        words = _bits(key, 2 * num, 32, partitionable=False).reshape(num, 2)
    return _as_keys(words, key)


def fold_in(key: Array, data: Any) -> Array:
    """`jax.random.fold_in(key, data)`: the hash of the block (0, data) (one scheme for both)."""
    if not _handles(key):
        return jax.random.fold_in(key, data)
    k1, k2 = _words(key)
    y0, y1 = threefry2x32(k1, k2, jnp.uint32(0), jnp.asarray(data, dtype=jnp.uint32))
    return _as_keys(jnp.stack([y0, y1]), key)


def _scheme(partitionable: bool | None) -> Any:
    """A context with jax's `jax_threefry_partitionable` set to `partitionable` (None: as it is)."""
    if partitionable is None or not hasattr(jax, "threefry_partitionable"):
        return contextlib.nullcontext()
    return jax.threefry_partitionable(partitionable)
