r"""Course 4 week 1, "Convolution model – Step by Step": conv and pool layers, course layout.

Each function has the course's name, signature, return values and cache layout, so the
notebook can swap it in for its NumPy version. The arithmetic is manualgrad's own conv
and pool functions (:mod:`manualgrad.layers._conv`, :mod:`manualgrad.layers._pool`,
:mod:`manualgrad.layers._patches`), the ones `mg.layers.Conv2D`, `MaxPool2D` and
`AvgPool2D` run: each function here moves the course's axes to manualgrad's, calls
them, and moves the axes back.

| course                 | layout                            | manualgrad                |
|------------------------|-----------------------------------|---------------------------|
| A_prev, Z, A, dA, dZ   | (m, n_H, n_W, n_C), examples first | (n_H, n_W, n_C, m)        |
| W                      | (f, f, n_C_prev, n_C)              | (n_C, f, f, n_C_prev)     |
| b                      | (1, 1, 1, n_C)                     | (n_C, 1)                  |

| course function                           | returns              | core                       |
|-------------------------------------------|----------------------|----------------------------|
| `zero_pad(X, pad)`                        | X_pad                | `zero_pad`                 |
| `conv_single_step(a_slice_prev, W, b)`    | Z, a scalar          | Z = W a + b, one patch     |
| `conv_forward(A_prev, W, b, hparameters)` | Z, (A_prev, W, b, h) | `patches`, Z = W P + b     |
| `pool_forward(A_prev, hparameters, mode)` | A, (A_prev, h)       | `max_pool`, `avg_pool`     |
| `conv_backward(dZ, cache)`                | dA_prev, dW, db      | (2) with m = 1, (4), fold  |
| `create_mask_from_window(x)`              | mask, bool           | `max_mask`                 |
| `distribute_value(dz, shape)`             | dz/(n_H·n_W) each    | `distribute`               |
| `pool_backward(dA, cache, mode)`          | dA_prev              | `max_pool_backward`, `avg…` |

`hparameters` is {"stride", "pad"} for a convolution and {"f", "stride"} for a pool;
n_H = ⌊(n_H_prev + 2·pad − f)/stride⌋ + 1. `conv_backward`'s dW and db are **sums** over
the m examples and the positions, as the course writes them (formula (2) with m = 1):
dW = Σ_i Σ_t dz_t(i) p_t(i)ᵀ, db = Σ_i Σ_t dz_t(i), where p_t(i) is patch t of example i.
dA_prev is formula (4) at every position, dP_t = Wᵀ dz_t, folded back onto the image
(the course's `da_prev_pad[...] += W[:, :, :, c] * dZ[i, h, w, c]`): the transposed
convolution.

Differences from the course, all deliberate:

- **Arrays**: inputs may be NumPy or JAX arrays; outputs are JAX arrays. JAX computes in
  float32 unless float64 is on (`jax.config.update("jax_enable_x64", True)`); the course's
  printed values are float64, so expect about 7 significant digits in float32 and the
  printed digits in float64. `conv_single_step` returns a 0-d JAX array, not a
  `np.float64` (`float(Z)` gives the Python number).
- **Loops**: no loops over examples, positions or channels: every window at once, in
  one program compiled (`jax.jit`) per shape and hyperparameters, so a first call takes
  a moment and later calls with the same shapes are fast.
- **Ties**: `create_mask_from_window` marks every entry equal to the maximum (x == max(x)),
  as the course's hint does, so a max-pool window with k tied maxima passes its gradient
  to all k, in `pool_backward` too (the course assumes distinct values).
- Nothing is modified in place; the caches hold the inputs as JAX arrays.
- **Checks**: a missing or invalid hyperparameter or `mode` is a :class:`ConfigError`, a
  wrong layout or a window larger than the (padded) image a :class:`ShapeError`, with the
  fix in the message.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from manualgrad._core import dense
from manualgrad._errors import ConfigError, ShapeError
from manualgrad.course._arrays import as_float
from manualgrad.layers._conv import (
    as_images,
    as_positions,
    conv_input_grad,
    conv_pre_activation,
    patches,
)
from manualgrad.layers._patches import output_size
from manualgrad.layers._patches import zero_pad as zero_pad_images
from manualgrad.layers._pool import (
    avg_pool,
    avg_pool_backward,
    distribute,
    max_mask,
    max_pool,
    max_pool_backward,
)

Array = jax.Array
ConvCache = tuple[Array, Array, Array, Mapping[str, int]]
PoolCache = tuple[Array, Mapping[str, int]]

__all__ = [
    "conv_backward",
    "conv_forward",
    "conv_single_step",
    "create_mask_from_window",
    "distribute_value",
    "pool_backward",
    "pool_forward",
    "zero_pad",
]

MODES = ("max", "average")


# ------------------------------------------------------------------ layouts and checks


def _ours(A: Array) -> Array:
    """Course images (m, n_H, n_W, n_C) -> manualgrad's (n_H, n_W, n_C, m)."""
    return jnp.moveaxis(A, 0, -1)


def _course(A: Array) -> Array:
    """manualgrad's images (n_H, n_W, n_C, m) -> the course's (m, n_H, n_W, n_C)."""
    return jnp.moveaxis(A, -1, 0)


def _images(x: Any, name: str, function: str) -> Array:
    """x as a JAX float array of 4 axes, the course's (m, n_H, n_W, n_C)."""
    x = as_float(x, name)
    if x.ndim != 4:
        raise ShapeError(
            f"`{function}` expected `{name}` of shape (m, n_H, n_W, n_C), examples first and "
            f"channels last as in the course, got shape {tuple(x.shape)} — a single image "
            f"(n_H, n_W, n_C) becomes {name}[None]"
        )
    return x


def _hparameter(hparameters: Any, key: str, function: str, minimum: int) -> int:
    """hparameters[key] as an int ≥ minimum, or a ConfigError naming the keys `function` needs."""
    needs = ("stride", "pad") if function == "conv_forward" else ("f", "stride")
    example = {k: 2 if k == "f" else 1 if k == "stride" else 0 for k in needs}
    if not isinstance(hparameters, Mapping) or key not in hparameters:
        got = sorted(hparameters) if isinstance(hparameters, Mapping) else type(hparameters)
        raise ConfigError(
            f"`{function}` needs `hparameters` with keys {list(needs)}, got {got}: e.g. "
            f"hparameters = {example}"
        )
    value = hparameters[key]
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(
            f"`{function}`: hparameters[{key!r}] must be an int ≥ {minimum}, got {value!r}: "
            f"e.g. hparameters = {example}"
        )
    return int(value)


def _mode(mode: Any, function: str) -> str:
    if mode not in MODES:
        raise ConfigError(
            f"`{function}`: `mode` must be 'max' or 'average', got {mode!r} — e.g. "
            f'{function}(..., mode="average")'
        )
    return mode


def _conv_params(A_prev: Array, W: Any, b: Any) -> tuple[Array, Array]:
    """The course's W (f, f, n_C_prev, n_C), b (1, 1, 1, n_C) as manualgrad's
    (C, f, f, C_prev) and (C, 1)."""
    W, b = as_float(W, "W"), as_float(b, "b")
    square = W.ndim == 4 and W.shape[0] == W.shape[1]
    if not square or W.shape[2] != A_prev.shape[3] or b.size != W.shape[3]:
        raise ShapeError(
            f"`conv_forward` expected W (f, f, n_C_prev, n_C) with n_C_prev = "
            f"A_prev.shape[3] = {A_prev.shape[3]} and b (1, 1, 1, n_C), got W {tuple(W.shape)}, "
            f"b {tuple(b.shape)} — the course lays filters out (f, f, n_C_prev, n_C); "
            "mg.layers.Conv2D's W (n_C, f, f, n_C_prev) is jnp.moveaxis(W, 0, -1) here"
        )
    return jnp.moveaxis(W, -1, 0), b.reshape(-1, 1)


# ------------------------------------------------------------------------------- forward


def zero_pad(X: Any, pad: int) -> Array:
    """X (m, n_H, n_W, n_C) with `pad` zero rows and columns around each image:
    (m, n_H + 2·pad, n_W + 2·pad, n_C)."""
    X = _images(X, "X", "zero_pad")
    if isinstance(pad, bool) or not isinstance(pad, int | np.integer) or pad < 0:
        raise ConfigError(f"`zero_pad`: `pad` must be an int ≥ 0, got {pad!r}: e.g. zero_pad(X, 2)")
    return _course(zero_pad_images(_ours(X), pad))


def conv_single_step(a_slice_prev: Any, W: Any, b: Any) -> Array:
    """Z = Σ (a_slice_prev ⊙ W) + b: one filter on one patch, the dense Z = W a + b.

    Shapes: a_slice_prev and W (f, f, n_C_prev), b (1, 1, 1) -> Z, a scalar (0-d array).
    """
    a, W, b = as_float(a_slice_prev, "a_slice_prev"), as_float(W, "W"), as_float(b, "b")
    if a.shape != W.shape or b.size != 1:
        raise ShapeError(
            "`conv_single_step` expected a_slice_prev and W of the same shape (f, f, n_C_prev) "
            f"and one bias, got a_slice_prev {tuple(a.shape)}, W {tuple(W.shape)}, "
            f"b {tuple(b.shape)} — pass one filter W[:, :, :, c] and b[:, :, :, c]"
        )
    # the patch as a column, the filter as a row, in the same (i, j, c) order
    Z = dense.linear_forward(W.reshape(1, -1), b.reshape(1, 1), a.reshape(-1, 1))
    return Z[0, 0]


def _conv_setup(
    A_prev: Any, W: Any, b: Any, hparameters: Any
) -> tuple[Array, Array, Array, int, int, int, int]:
    """Checked (A_prev, W (C, f, f, C_prev), b (C, 1), stride, pad, n_H, n_W) of a convolution."""
    A_prev = _images(A_prev, "A_prev", "conv_forward")
    W_ours, b_ours = _conv_params(A_prev, W, b)
    s = _hparameter(hparameters, "stride", "conv_forward", 1)
    p = _hparameter(hparameters, "pad", "conv_forward", 0)
    f = W_ours.shape[1]
    n_H = output_size(A_prev.shape[1], f, s, layer="conv_forward", axis="n_H_prev", pad=p)
    n_W = output_size(A_prev.shape[2], f, s, layer="conv_forward", axis="n_W_prev", pad=p)
    return A_prev, W_ours, b_ours, s, p, n_H, n_W


def conv_forward(
    A_prev: Any, W: Any, b: Any, hparameters: Mapping[str, int]
) -> tuple[Array, ConvCache]:
    """Z = A_prev convolved with the n_C filters W, plus b; cache (A_prev, W, b, hparameters).

    Shapes: A_prev (m, n_H_prev, n_W_prev, n_C_prev), W (f, f, n_C_prev, n_C),
    b (1, 1, 1, n_C) -> Z (m, n_H, n_W, n_C). Z_t = W P_t + b at every position t, P the
    patches of the zero-padded A_prev (:func:`manualgrad.layers._conv.patches`).
    """
    A_prev, W_ours, b_ours, s, p, n_H, n_W = _conv_setup(A_prev, W, b, hparameters)
    Z = _conv_forward(A_prev, W_ours, b_ours, s, p, n_H, n_W)
    return Z, (A_prev, as_float(W), as_float(b), hparameters)


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _conv_forward(A_prev: Array, W: Array, b: Array, s: int, p: int, n_H: int, n_W: int) -> Array:
    """Z (m, n_H, n_W, C) from the course's A_prev and our W (C, f, f, C_prev), b (C, 1)."""
    P = patches(_ours(A_prev), W.shape[1], s, p)  # (f·f·C_prev, T, m)
    Z = conv_pre_activation(W, b, P)  # Z_t = W P_t + b, (C, T, m)
    return _course(as_images(Z, n_H, n_W))


def _pool_setup(A_prev: Any, hparameters: Any, mode: Any, function: str) -> tuple[Array, int, int]:
    """Checked (A_prev, f, stride) of a pool, with the window fitting the image."""
    A_prev = _images(A_prev, "A_prev", function)
    f = _hparameter(hparameters, "f", function, 1)
    s = _hparameter(hparameters, "stride", function, 1)
    _mode(mode, function)
    output_size(A_prev.shape[1], f, s, layer=function, axis="n_H_prev")
    output_size(A_prev.shape[2], f, s, layer=function, axis="n_W_prev")
    return A_prev, f, s


def pool_forward(
    A_prev: Any, hparameters: Mapping[str, int], mode: str = "max"
) -> tuple[Array, PoolCache]:
    """The max (or mean) of each f×f window at stride s, per channel; cache (A_prev, hparameters).

    Shapes: A_prev (m, n_H_prev, n_W_prev, n_C) -> A (m, n_H, n_W, n_C), with
    n_H = ⌊(n_H_prev − f)/stride⌋ + 1.
    """
    A_prev, f, s = _pool_setup(A_prev, hparameters, mode, "pool_forward")
    return _pool_forward(A_prev, f, s, mode), (A_prev, hparameters)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _pool_forward(A_prev: Array, f: int, s: int, mode: str) -> Array:
    """A (m, n_H, n_W, C): max_pool or avg_pool of the course's A_prev."""
    pool = max_pool if mode == "max" else avg_pool
    return _course(pool(_ours(A_prev), f, s))


# ------------------------------------------------------------------------------ backward


def _gradient(dX: Any, name: str, shape: tuple[int, ...], function: str) -> Array:
    """dX as a JAX float array of the given shape, or a ShapeError."""
    dX = as_float(dX, name)
    if dX.shape != shape:
        raise ShapeError(
            f"`{function}` expected `{name}` of shape {shape} (m, n_H, n_W, n_C), the shape of "
            f"the forward pass's output for this cache, got {tuple(dX.shape)}"
        )
    return dX


def conv_backward(dZ: Any, cache: ConvCache) -> tuple[Array, Array, Array]:
    """(dA_prev, dW, db) from dZ = ∂L/∂Z: formula (4) folded back, and (2) as a sum (m = 1).

    Shapes: dZ (m, n_H, n_W, n_C) -> dA_prev (m, n_H_prev, n_W_prev, n_C_prev),
    dW (f, f, n_C_prev, n_C), db (1, 1, 1, n_C). dW = Σ_i Σ_t dz_t(i) p_t(i)ᵀ and
    db = Σ_i Σ_t dz_t(i) are sums over the examples and positions, as in the course.
    """
    A_prev, W, b, hparameters = cache
    A_prev, W_ours, _, s, p, n_H, n_W = _conv_setup(A_prev, W, b, hparameters)
    shape = (A_prev.shape[0], n_H, n_W, W_ours.shape[0])
    dZ = _gradient(dZ, "dZ", shape, "conv_backward")
    return _conv_backward(dZ, A_prev, W_ours, s, p)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _conv_backward(
    dZ_course: Array, A_prev: Array, W_ours: Array, s: int, p: int
) -> tuple[Array, Array, Array]:
    """(dA_prev, dW, db) in the course's layout from its dZ and A_prev, W (C, f, f, C_prev)."""
    C, f = W_ours.shape[0], W_ours.shape[1]
    dZ = as_positions(_ours(dZ_course))  # (C, T, m)
    A_ours = _ours(A_prev)
    P = patches(A_ours, f, s, p)  # (f·f·C_prev, T, m)
    d, T, m = P.shape
    dZ_cols, P_cols = dZ.reshape(C, T * m), P.reshape(d, T * m)  # the T·m patch columns
    dW = dense.weight_grad(dZ_cols, P_cols, m=1)  # (2) with m = 1: a sum
    db = dense.bias_grad(dZ_cols, m=1)  # (2) with m = 1: a sum
    dA_prev = conv_input_grad(W_ours, dZ, A_ours.shape, s, p)  # (4), folded
    dW_course = jnp.moveaxis(dW.reshape(W_ours.shape), 0, -1)
    return _course(dA_prev), dW_course, db.reshape(1, 1, 1, C)


def create_mask_from_window(x: Any) -> Array:
    """mask = (x == max(x)): True at the maximum of the window x (at every tied maximum).

    Shapes: x (f, f) (any 2-d window) -> mask of the same shape, bool.
    """
    x = as_float(x, "x")
    if x.ndim != 2:
        raise ShapeError(
            f"`create_mask_from_window` expected one window x (f, f), got shape {tuple(x.shape)}"
        )
    return max_mask(x, jnp.max(x))


def distribute_value(dz: Any, shape: tuple[int, int]) -> Array:
    """dz/(n_H·n_W) at each entry of an (n_H, n_W) matrix: an average's gradient, spread.

    Shapes: dz a scalar, shape (n_H, n_W) -> (n_H, n_W).
    """
    dz = as_float(dz, "dz")
    if dz.ndim != 0 or len(shape) != 2:
        raise ShapeError(
            f"`distribute_value` expected a scalar dz and shape (n_H, n_W), got dz of shape "
            f"{tuple(dz.shape)} and shape {tuple(shape)}"
        )
    return distribute(dz, (int(shape[0]), int(shape[1])))


def pool_backward(dA: Any, cache: PoolCache, mode: str = "max") -> Array:
    """dA_prev from dA = ∂L/∂A: formula (4) through each window's mask (max) or 1/f² (average).

    Shapes: dA (m, n_H, n_W, n_C) -> dA_prev (m, n_H_prev, n_W_prev, n_C). What
    overlapping windows (stride < f) pass back to the same pixel adds up.
    """
    A_prev, hparameters = cache
    A_prev, f, s = _pool_setup(A_prev, hparameters, mode, "pool_backward")
    n_H, n_W = (A_prev.shape[1] - f) // s + 1, (A_prev.shape[2] - f) // s + 1
    shape = (A_prev.shape[0], n_H, n_W, A_prev.shape[3])
    return _pool_backward(_gradient(dA, "dA", shape, "pool_backward"), A_prev, f, s, mode)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _pool_backward(dA_course: Array, A_prev: Array, f: int, s: int, mode: str) -> Array:
    """dA_prev (m, n_H_prev, n_W_prev, C) from the course's dA and A_prev."""
    A_ours, dA = _ours(A_prev), _ours(dA_course)
    if mode == "max":
        A = max_pool(A_ours, f, s)  # each window's maximum, for its mask
        return _course(max_pool_backward(A_ours, A, dA, f, s))  # (4), the mask
    return _course(avg_pool_backward(dA, A_ours.shape, f, s))  # (4), distribute_value
