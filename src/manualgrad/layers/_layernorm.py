r"""`LayerNorm(eps)`: each position's feature vector normalised, then scaled and shifted.

| symbol | shape                 | meaning                                             |
|--------|-----------------------|-----------------------------------------------------|
| `X`    | (d, m) or (d, T, m)   | the input: one feature vector x per position        |
| `gamma`| (d, 1)                | γ, the scale                                        |
| `beta` | (d, 1)                | β, the shift                                        |
| `Z`    | like X                | z = γ ⊙ x̂ + β                                       |

Over the d features of one position (axis 0), with σ = √(var(x) + ε):

    μ = (1/d) Σ_j x_j,   x̂ = (x − μ) / σ,   z = γ ⊙ x̂ + β          forward
    dx̂ = γ ⊙ dz                                                     the scale's chain
    dx = (1/σ) (dx̂ − mean(dx̂) − x̂ ⊙ mean(dx̂ ⊙ x̂))                 the normalisation's
    dγ_i = Σ_t dz_t(i) ⊙ x̂_t(i),  dβ_i = Σ_t dz_t(i)                 (1); (2) their mean

(means over the d features; docs/embeddings_and_layernorm.md derives dx). The product
is a :class:`~manualgrad._core.products.ScaleShift` (x̂, dz): γ multiplies x̂ elementwise,
not as a matrix. No activation follows: put one in the next `Dense` layer. Forward mode
(curvature's G v) is the base class's `jax.jvp` of :meth:`LayerNorm.forward`.

>>> import jax, jax.numpy as jnp, manualgrad as mg
>>> net = mg.network([mg.layers.Dense(8), mg.layers.LayerNorm(),
...                   mg.layers.Dense(1, activation="sigmoid")], loss="bce")
>>> params = net.init((3,), jax.random.key(0))
>>> {k: v.shape for k, v in params.items()}
{'W1': (8, 3), 'b1': (8, 1), 'gamma2': (8, 1), 'beta2': (8, 1), 'W3': (1, 8), 'b3': (1, 1)}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from manualgrad._core.layer import Layer, Params, Product, ScaleShift, Shape
from manualgrad._errors import ConfigError, ShapeError

Array = jax.Array

__all__ = ["LayerNorm", "LayerNormCache"]


class LayerNormCache(NamedTuple):
    """What the backward needs: x̂ (like X) and 1/σ (1, …, m), one per position."""

    X_hat: Array
    inv_sigma: Array


def _per_feature(v: Array, ndim: int) -> Array:
    """γ or β (d, 1) shaped (d, 1, …) to broadcast against an input of `ndim` axes."""
    return v.reshape((v.shape[0],) + (1,) * (ndim - 1))


def _positions(x: Array) -> Array:
    """(d, m) or (d, T, m) as (d, T, m): the product's position axis (T = 1 for vectors)."""
    return x[:, None, :] if x.ndim == 2 else x


def normalise_backward(dX_hat: Array, X_hat: Array, inv_sigma: Array) -> Array:
    """dx = (1/σ) (dx̂ − mean(dx̂) − x̂ ⊙ mean(dx̂ ⊙ x̂)), the means over the features (axis 0).

    Shapes: dX_hat, X_hat (d, …, m), inv_sigma (1, …, m) -> dX like X_hat. The chain
    through μ and σ (docs/embeddings_and_layernorm.md, "LayerNorm's backward").
    """
    mean_dx_hat = jnp.mean(dX_hat, axis=0, keepdims=True)
    mean_dx_hat_x_hat = jnp.mean(dX_hat * X_hat, axis=0, keepdims=True)
    return inv_sigma * (dX_hat - mean_dx_hat - X_hat * mean_dx_hat_x_hat)  # dx


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Layer normalisation over the features (axis 0) of every position, then γ ⊙ x̂ + β.

    | argument | meaning                                              |
    |----------|------------------------------------------------------|
    | `eps`    | ε > 0 added to the variance before the square root   |

    Params: "gamma" (d, 1) = 1 and "beta" (d, 1) = 0 at init; the network names them
    "gamma{l}", "beta{l}". Not in the L2 term (which acts on the "W" weights only).
    Input one example (d,) or (d, T), with d ≥ 2 features.
    """

    eps: float = 1e-5

    def __post_init__(self) -> None:
        if (
            isinstance(self.eps, bool)
            or not isinstance(self.eps, int | float)
            or not 0 < self.eps < math.inf
        ):
            raise ConfigError(
                f"`LayerNorm(eps=...)` must be a finite number > 0, got {self.eps!r}: "
                "e.g. LayerNorm(eps=1e-5)"
            )

    @property
    def param_names(self) -> tuple[str, ...]:
        return ("gamma", "beta")

    @property
    def name(self) -> str:
        return f"LayerNorm(eps={self.eps})"

    def init(self, key: Array, in_shape: Shape, dtype: Any) -> tuple[Params, Shape]:
        """γ = 1, β = 0, each (d, 1); the output shape is the input's, (d,) or (d, T)."""
        in_shape = tuple(in_shape)
        if len(in_shape) not in (1, 2):
            raise ShapeError(
                f"{self.name} normalises the features of each position, one example of shape "
                f"(d,) or (d, T), but its input has shape {in_shape}: flatten images first "
                "(mg.layers.Flatten()), or put the features on the first axis"
            )
        d = in_shape[0]
        if d < 2:
            raise ConfigError(
                f"{self.name} over d = {d} feature normalises every value to x̂ = 0, so its "
                "output would be β whatever the input: normalise a layer of 2 or more "
                "units, or leave LayerNorm out"
            )
        return {"gamma": jnp.ones((d, 1), dtype), "beta": jnp.zeros((d, 1), dtype)}, in_shape

    def forward(
        self, params: Mapping[str, Array], A_prev: Array, precision: str
    ) -> tuple[Array, LayerNormCache]:
        """Z = γ ⊙ (X − μ)/σ + β, μ and σ² the mean and variance over axis 0 (σ² + ε)."""
        mu = jnp.mean(A_prev, axis=0, keepdims=True)
        centred = A_prev - mu
        var = jnp.mean(centred * centred, axis=0, keepdims=True)
        inv_sigma = jax.lax.rsqrt(var + jnp.asarray(self.eps, A_prev.dtype))
        X_hat = centred * inv_sigma
        gamma = _per_feature(params["gamma"], A_prev.ndim)
        beta = _per_feature(params["beta"], A_prev.ndim)
        return gamma * X_hat + beta, LayerNormCache(X_hat, inv_sigma)

    def backward(
        self,
        params: Mapping[str, Array],
        cache: LayerNormCache,
        dA: Array,
        precision: str,
        need_dA_prev: bool = True,
    ) -> tuple[Array | None, tuple[Product, ...]]:
        """dx̂ = γ ⊙ dz, dx by :func:`normalise_backward`; the product (x̂, dz) for γ and β."""
        product = ScaleShift("gamma", "beta", _positions(cache.X_hat), _positions(dA))
        if not need_dA_prev:
            return None, (product,)
        dX_hat = _per_feature(params["gamma"], dA.ndim) * dA  # dx̂ = γ ⊙ dz
        return normalise_backward(dX_hat, cache.X_hat, cache.inv_sigma), (product,)
