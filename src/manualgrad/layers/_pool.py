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
**Ties in a max pool**: M marks every position equal to the window's maximum, as the
course's `create_mask_from_window` (x == max(x)) does, so a window with k tied maxima
passes its gradient to all k of them. That is a subgradient only when k = 1; jax's
`reduce_window` max picks one. The two agree wherever the maxima are distinct (the tests
use distinct values); after a relu a window of zeros has dZ = 0 below it either way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from manualgrad._core.layer import Layer, Params, Product, Shape
from manualgrad.layers._conv import check_images, positive_int
from manualgrad.layers._patches import fold, output_size, unfold

Array = jax.Array

__all__ = ["AvgPool2D", "Flatten", "MaxPool2D", "PoolCache"]


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
        positive_int(kind, "size", self.size)
        if self.stride is not None:
            positive_int(kind, "stride", self.stride)

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

    def windows(self, A_prev: Array) -> Array:
        """The pooling windows of A_prev (H, W, C, m): (f, f, n_H, n_W, C, m)."""
        check_images(self.name, A_prev.shape, batch=True)
        self.output_shape(tuple(A_prev.shape[:3]))  # the window must fit
        return unfold(A_prev, self.size, self.step)


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
        A = jnp.max(self.windows(A_prev), axis=(0, 1))
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
        U = unfold(cache.A_prev, self.size, self.step)
        mask = cache.A[None, None] == U  # create_mask_from_window, per window
        dU = jnp.where(mask, dA[None, None], jnp.zeros((), dA.dtype))  # (4)
        return fold(dU, cache.A_prev.shape, self.step), ()


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
        A = jnp.mean(self.windows(A_prev), axis=(0, 1))
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
        f = self.size
        dU = jnp.broadcast_to(dA / (f * f), (f, f, *dA.shape))  # (4), distribute_value
        return fold(dU, cache.A_prev.shape, self.step), ()


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
