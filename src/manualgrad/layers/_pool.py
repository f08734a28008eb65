r"""`MaxPool2D`, `AvgPool2D` and `Flatten`: layers without parameters, only the chain.

Images are laid out (H, W, C, m). A pool of size f at stride s (default s = f) reduces
each f×f window of each channel to one number; n_H = ⌊(H − f)/s⌋ + 1. With the windows
U = unfold(A_prev) (f, f, n_H, n_W, C, m) (:mod:`manualgrad.layers._patches`):

| layer       | forward                    | backward: dA (n_H, n_W, C, m) -> dA_prev |
|-------------|----------------------------|------------------------------------------|
| `MaxPool2D` | A = max_{i,j} U[i, j]      | fold(M ⊙ dA), M = (U == A): the mask      |
| `AvgPool2D` | A = (1/f²) Σ_{i,j} U[i, j] | fold(dA / f²): the average spread         |
| `Flatten`   | A = A_prev.reshape(−1, m)  | dA.reshape(A_prev.shape)                 |

These are formula (4) for the pools' local Jacobians: ∂A/∂U is the mask (max) or the
constant 1/f² (average), and `fold` adds back what overlapping windows (s < f) share.
Forward mode (curvature's G v) is the same Jacobian applied the other way, formula (7)
for a layer without parameters: Ȧ = Σ_{i,j} M[i, j] ⊙ U̇[i, j] (max) and
Ȧ = (1/f²) Σ_{i,j} U̇[i, j] (average), with U̇ = unfold(Ȧ_prev).
**Ties in a max pool**: M marks every position equal to the window's maximum, as the
course's `create_mask_from_window` (x == max(x)) does, so a window with k tied maxima
passes its gradient to all k of them (and its forward-mode tangent is the sum of their
k tangents: the transpose of that backward). That is a subgradient only when k = 1;
jax's `reduce_window` max picks one. The two agree wherever the maxima are distinct (the
tests use distinct values); after a relu a window of zeros has dZ = 0 below it either way.

Each formula is one small function below, shared by the layers and the course's
`pool_forward` / `pool_backward` (:mod:`manualgrad.course`):

| function            | shapes                                                          |
|---------------------|-----------------------------------------------------------------|
| `max_pool`          | A_prev (H, W, C, m) -> A (n_H, n_W, C, m)                       |
| `avg_pool`          | A_prev (H, W, C, m) -> A (n_H, n_W, C, m)                       |
| `max_mask`          | windows U (f, f, …), maxima A (…) -> M (f, f, …), bool          |
| `distribute`        | dA (…), window (f_H, f_W) -> (f_H, f_W, …), dA/(f_H·f_W) each   |
| `max_pool_backward` | A_prev, A, dA (n_H, n_W, C, m) -> dA_prev (H, W, C, m)          |
| `avg_pool_backward` | dA (n_H, n_W, C, m) -> dA_prev (H, W, C, m)                     |
| `max_pool_jvp`      | A_prev, A, Ȧ_prev (H, W, C, m) -> Ȧ (n_H, n_W, C, m)            |
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from manualgrad._core.layer import Layer, Params, Product, Shape
from manualgrad._core.validation import check_layer_int
from manualgrad.layers._conv import check_images
from manualgrad.layers._patches import fold, output_size, unfold

Array = jax.Array

__all__ = [
    "AvgPool2D",
    "Flatten",
    "MaxPool2D",
    "PoolCache",
    "avg_pool",
    "avg_pool_backward",
    "distribute",
    "max_mask",
    "max_pool",
    "max_pool_backward",
    "max_pool_jvp",
]


def max_pool(A_prev: Array, f: int, s: int) -> Array:
    """A[h, w] = max_{i,j} U[i, j, h, w], U = unfold(A_prev): (H, W, C, m) -> (n_H, n_W, C, m)."""
    return jnp.max(unfold(A_prev, f, s), axis=(0, 1))


def avg_pool(A_prev: Array, f: int, s: int) -> Array:
    """A[h, w] = (1/f²) Σ_{i,j} U[i, j, h, w], U = unfold(A_prev): (H, W, C, m) -> (n_H, n_W, C, m).

    Linear in A_prev, so it is its own forward-mode tangent: Ȧ = avg_pool(Ȧ_prev).
    """
    return jnp.mean(unfold(A_prev, f, s), axis=(0, 1))


def max_mask(U: Array, A: Array) -> Array:
    """M = (U == A): True at every entry of a window equal to its maximum (ties: all of them).

    Shapes: windows U (f_H, f_W, …) and their maxima A (…) -> M (f_H, f_W, …). The
    course's `create_mask_from_window` (x == max(x)), for every window at once.
    """
    return A[None, None] == U


def distribute(dA: Array, window: tuple[int, int]) -> Array:
    """dA/(f_H·f_W) at each entry of its f_H×f_W window: dA (…) -> (f_H, f_W, …).

    The average pool's local Jacobian ∂a/∂u = 1/(f_H·f_W) applied by formula (4); the
    course's `distribute_value`, for every window at once.
    """
    f_H, f_W = window
    return jnp.broadcast_to(dA / (f_H * f_W), (f_H, f_W, *dA.shape))  # (4)


def max_pool_backward(A_prev: Array, A: Array, dA: Array, f: int, s: int) -> Array:
    """dA_prev = fold(M ⊙ dA), M = max_mask(unfold(A_prev), A): (4) with the mask as Jacobian.

    Shapes: A_prev (H, W, C, m), A and dA (n_H, n_W, C, m) -> dA_prev (H, W, C, m).
    """
    mask = max_mask(unfold(A_prev, f, s), A)
    dU = jnp.where(mask, dA[None, None], jnp.zeros((), dA.dtype))  # (4)
    return fold(dU, A_prev.shape, s)


def avg_pool_backward(dA: Array, image_shape: tuple[int, ...], f: int, s: int) -> Array:
    """dA_prev = fold(dA/f² over every window): (4) with the constant Jacobian 1/f².

    Shapes: dA (n_H, n_W, C, m) -> dA_prev `image_shape` (H, W, C, m).
    """
    return fold(distribute(dA, (f, f)), image_shape, s)  # (4)


def max_pool_jvp(A_prev: Array, A: Array, A_prev_dot: Array, f: int, s: int) -> Array:
    """Ȧ = Σ_{i,j} M[i, j] ⊙ U̇[i, j], U̇ = unfold(Ȧ_prev): (7) with the mask as the Jacobian.

    Shapes: A_prev, Ȧ_prev (H, W, C, m), A (n_H, n_W, C, m) -> Ȧ (n_H, n_W, C, m). The
    transpose of :func:`max_pool_backward` (with tied maxima, the sum of their tangents).
    """
    mask = max_mask(unfold(A_prev, f, s), A)
    U_dot = unfold(A_prev_dot, f, s)
    return jnp.sum(jnp.where(mask, U_dot, jnp.zeros((), U_dot.dtype)), axis=(0, 1))  # (7)


class PoolCache(NamedTuple):
    """What a pool's backward needs: A_prev (H, W, C, m) and the pooled A (n_H, n_W, C, m)."""

    A_prev: Array
    A: Array


@dataclass(frozen=True)
class _Pool(Layer):
    size: int
    _: KW_ONLY
    stride: int | None = None

    def __post_init__(self) -> None:
        kind = type(self).__name__
        check_layer_int(kind, "size", self.size)
        if self.stride is not None:
            check_layer_int(kind, "stride", self.stride)

    @property
    def step(self) -> int:
        """s, the stride: `size` when not given (windows side by side)."""
        return self.size if self.stride is None else self.stride

    @property
    def name(self) -> str:
        return f"{type(self).__name__}({self.size}, stride={self.step})"

    def output_shape(self, in_shape: Shape) -> Shape:
        """(n_H, n_W, C) for one image (H, W, C), with a clear error if the window does not fit."""
        check_images(self.name, in_shape, batch=False)
        H, W, C = in_shape
        n_H = output_size(H, self.size, self.step, layer=self.name, axis="H")
        n_W = output_size(W, self.size, self.step, layer=self.name, axis="W")
        return (n_H, n_W, C)

    def init(self, key: Array, in_shape: Shape, dtype: Any) -> tuple[Params, Shape]:
        """No params; one example's output shape (n_H, n_W, C)."""
        return {}, self.output_shape(tuple(in_shape))

    def check(self, A_prev: Array) -> None:
        """Raise a ShapeError unless A_prev is a batch (H, W, C, m) the window fits."""
        check_images(self.name, A_prev.shape, batch=True)
        self.output_shape(tuple(A_prev.shape[:3]))  # the window must fit


@dataclass(frozen=True)
class MaxPool2D(_Pool):
    """Max pooling over `size`×`size` windows at `stride` (default: `size`), per channel.

    Input (H, W, C, m), output (n_H, n_W, C, m). Backward: the max-pool mask, every tied
    maximum included (the course's `create_mask_from_window`); see the module docstring.
    """

    def forward(
        self, params: Mapping[str, Array], A_prev: Array, precision: str
    ) -> tuple[Array, PoolCache]:
        """A[h, w] = max over window (h, w) of A_prev."""
        self.check(A_prev)
        A = max_pool(A_prev, self.size, self.step)
        return A, PoolCache(A_prev, A)

    def backward(
        self,
        params: Mapping[str, Array],
        cache: PoolCache,
        dA: Array,
        precision: str,
        need_dA_prev: bool = True,
    ) -> tuple[Array | None, tuple[Product, ...]]:
        """dA_prev = fold(M ⊙ dA), M = (window == its max): (4) with the mask as the Jacobian."""
        if not need_dA_prev:
            return None, ()
        return max_pool_backward(cache.A_prev, cache.A, dA, self.size, self.step), ()  # (4)

    def jvp(
        self,
        params: Mapping[str, Array],
        tangent: Mapping[str, Array],
        cache: PoolCache,
        A_prev: Array,
        A_prev_dot: Array | None,
        precision: str,
    ) -> Array:
        """Ȧ = Σ_{i,j} M ⊙ unfold(Ȧ_prev): the tangent at each window's maximum (7)."""
        if A_prev_dot is None:
            return jnp.zeros_like(cache.A)
        return max_pool_jvp(cache.A_prev, cache.A, A_prev_dot, self.size, self.step)  # (7)


@dataclass(frozen=True)
class AvgPool2D(_Pool):
    """Average pooling over `size`×`size` windows at `stride` (default: `size`), per channel.

    Input (H, W, C, m), output (n_H, n_W, C, m). Backward: dA spread evenly, dA/f² to
    each pixel of its window (the course's `distribute_value`).
    """

    def forward(
        self, params: Mapping[str, Array], A_prev: Array, precision: str
    ) -> tuple[Array, PoolCache]:
        """A[h, w] = the mean of window (h, w) of A_prev."""
        self.check(A_prev)
        A = avg_pool(A_prev, self.size, self.step)
        return A, PoolCache(A_prev, A)

    def backward(
        self,
        params: Mapping[str, Array],
        cache: PoolCache,
        dA: Array,
        precision: str,
        need_dA_prev: bool = True,
    ) -> tuple[Array | None, tuple[Product, ...]]:
        """dA_prev = fold(dA / f²) over every window: (4) with the constant Jacobian 1/f²."""
        if not need_dA_prev:
            return None, ()
        return avg_pool_backward(dA, cache.A_prev.shape, self.size, self.step), ()  # (4)

    def jvp(
        self,
        params: Mapping[str, Array],
        tangent: Mapping[str, Array],
        cache: PoolCache,
        A_prev: Array,
        A_prev_dot: Array | None,
        precision: str,
    ) -> Array:
        """Ȧ = avg_pool(Ȧ_prev): the pool is linear, its own tangent (7)."""
        if A_prev_dot is None:
            return jnp.zeros_like(cache.A)
        return avg_pool(A_prev_dot, self.size, self.step)  # (7)


@dataclass(frozen=True)
class Flatten(Layer):
    """Images (H, W, C, m) to vectors (H·W·C, m), row-major over (H, W, C); and back.

    Put it between the last conv/pool layer and the first `Dense` layer.
    """

    @property
    def name(self) -> str:
        return "Flatten()"

    def init(self, key: Array, in_shape: Shape, dtype: Any) -> tuple[Params, Shape]:
        """No params; one example's output shape (H·W·C,)."""
        return {}, (math.prod(in_shape),)

    def forward(
        self, params: Mapping[str, Array], A_prev: Array, precision: str
    ) -> tuple[Array, Array]:
        """A = A_prev.reshape(−1, m); the cache is A_prev (for its shape)."""
        return A_prev.reshape(-1, A_prev.shape[-1]), A_prev

    def backward(
        self,
        params: Mapping[str, Array],
        cache: Array,
        dA: Array,
        precision: str,
        need_dA_prev: bool = True,
    ) -> tuple[Array | None, tuple[Product, ...]]:
        """dA_prev = dA reshaped to the input's shape (4), with no parameters."""
        return (dA.reshape(cache.shape) if need_dA_prev else None), ()

    def jvp(
        self,
        params: Mapping[str, Array],
        tangent: Mapping[str, Array],
        cache: Array,
        A_prev: Array,
        A_prev_dot: Array | None,
        precision: str,
    ) -> Array:
        """Ȧ = Ȧ_prev.reshape(−1, m): the reshape is linear (7)."""
        if A_prev_dot is None:
            return jnp.zeros((math.prod(A_prev.shape[:-1]), A_prev.shape[-1]), A_prev.dtype)
        return A_prev_dot.reshape(-1, A_prev_dot.shape[-1])
