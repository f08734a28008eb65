r"""`Dense(units, activation)`: Z = W A_prev + b, A = g(Z), with its formulas side by side.

| symbol   | shape            | meaning                                     |
|----------|------------------|---------------------------------------------|
| `W`      | (n_l, n_{l-1})   | weights                                      |
| `b`      | (n_l, 1)         | biases                                       |
| `A_prev` | (n_{l-1}, m)     | the layer's input, examples as columns       |
| `Z`, `A` | (n_l, m)         | pre-activations and activations              |

Forward and backward are the seed's formulas, each from :mod:`manualgrad._core.dense`:

    Z = W A_prev + b,   A = g(Z)                    forward
    dZ = dA ⊙ g'(Z)                                  (5)
    dA_prev = Wᵀ dZ                                  (4)
    (A_prev, dZ), one position per example           → (2) and (1) in the engine

and forward mode for curvature: Ż = W Ȧ_prev + Ẇ A_prev + ḃ (6), Ȧ = g'(Z) ⊙ Ż (7).

**On sequences.** Given a sequence (n_{l-1}, T, m) — the output of a recurrent layer
with `return_sequences=True` — the same W and b act at every time step t:
Z_t = W A_prev,t + b, output (n_l, T, m), and the product is (A_prev, dZ) with T
positions per example (CS231n's `temporal_affine`, Keras's `TimeDistributed(Dense)`).
With a loss on it, each example's loss is summed over its T steps,
C = (1/m) Σ_i Σ_t L(a_t(i), y_t(i)), labels (n_L, T, m).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from manualgrad._core import dense
from manualgrad._core.activations import ACTIVATIONS, Activation, get_activation
from manualgrad._core.layer import Layer, Params, Product, Shape
from manualgrad._errors import ConfigError, ShapeError

Array = jax.Array

#: init method -> the standard deviation of W's entries for n_{l-1} inputs
INIT_SCALES = {
    "he": lambda n_prev: math.sqrt(2 / n_prev),
    "xavier": lambda n_prev: math.sqrt(1 / n_prev),
    "random": lambda n_prev: 0.01,
    "zeros": lambda n_prev: 0.0,
}


def check_activation(layer: str, activation: Any, allowed: Collection[str]) -> None:
    """Raise a ConfigError unless `activation` names an activation; the message lists `allowed`."""
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ConfigError(
            f"`{layer}(activation=...)` got unknown activation {activation!r}; expected "
            f"one of {sorted(allowed)}"
        )


def check_init_method(layer: str, init_method: Any) -> None:
    """Raise a ConfigError unless `init_method` is one of :data:`INIT_SCALES`."""
    if init_method not in INIT_SCALES:
        raise ConfigError(
            f"`{layer}(init_method=...)` got {init_method!r}; expected one of {list(INIT_SCALES)}"
        )


def _at_positions(b: Array, A_prev: Array) -> Array:
    """b (n_l, 1) as (n_l, 1, 1) for a sequence A_prev (n_{l-1}, T, m): the same b at every t."""
    return b[:, :, None] if A_prev.ndim == 3 else b


class DenseCache(NamedTuple):
    """What a dense layer's backward needs: A_prev (n_{l-1}, m), Z and A (n_l, m)."""

    A_prev: Array
    Z: Array
    A: Array


@dataclass(frozen=True)
class Dense(Layer):
    """A dense layer of `units` units with activation g: Z = W A_prev + b, A = g(Z).

    | argument     | meaning                                                         |
    |--------------|-----------------------------------------------------------------|
    | `units`      | n_l, the number of units (None: taken from the params, for the  |
    |              | shorthand `mg.network(["relu", "sigmoid"])` with layer_dims)     |
    | `activation` | one of :data:`manualgrad.activations.ACTIVATIONS`                |
    | `init`       | "he" (√(2/n_{l-1})), "xavier" (√(1/n_{l-1})), "random" (0.01), "zeros" |

    Params: "W" (n_l, n_{l-1}) and "b" (n_l, 1); the network names them "W{l}", "b{l}".
    """

    units: int | None = None
    activation: str = "relu"
    init_method: str = "he"

    def __post_init__(self) -> None:
        if self.units is not None and (
            isinstance(self.units, bool) or not isinstance(self.units, int) or self.units < 1
        ):
            raise ConfigError(
                f"`Dense(units)` must be a positive int, got {self.units!r}: e.g. "
                "mg.layers.Dense(20, activation='relu')"
            )
        check_activation("Dense", self.activation, ACTIVATIONS)
        check_init_method("Dense", self.init_method)

    @property
    def param_names(self) -> tuple[str, ...]:
        return ("W", "b")

    @property
    def name(self) -> str:
        units = "" if self.units is None else f"{self.units}, "
        return f"Dense({units}activation={self.activation!r})"

    @property
    def g(self) -> Activation:
        """The activation record: g, g', g''."""
        return get_activation(self.activation)

    def init(
        self, key: Array, in_shape: Shape, dtype: Any, units: int | None = None, method: str = ""
    ) -> tuple[Params, Shape]:
        """W ~ N(0, s²) of shape (n_l, n_{l-1}) with s from the init method, b = 0 (n_l, 1)."""
        if len(in_shape) not in (1, 2):
            raise ShapeError(
                f"{self.name} takes vectors, one example of shape (n_{{l-1}},), or sequences "
                f"(n_{{l-1}}, T), but its input has shape {tuple(in_shape)}: flatten each "
                "example to a vector first, X.reshape(-1, m), and give net.init its length"
            )
        n = self.units if units is None else units
        if n is None:
            raise ConfigError(
                f"{self.name} has no `units`: give Dense(units, ...), or initialise the "
                "shorthand network with layer_dims, net.init([n_x, n_1, …, n_L], key)"
            )
        n_prev, *positions = in_shape
        scale = INIT_SCALES[method or self.init_method](n_prev)
        W = jax.random.normal(key, (n, n_prev), dtype) * scale
        return {"W": W, "b": jnp.zeros((n, 1), dtype)}, (n, *positions)

    def forward(
        self, params: Mapping[str, Array], A_prev: Array, precision: str
    ) -> tuple[Array, DenseCache]:
        """Z = W A_prev + b, A = g(Z); cache (A_prev, Z, A). On a sequence, at every step."""
        b = _at_positions(params["b"], A_prev)
        Z = dense.linear_forward(params["W"], b, A_prev, precision=precision)
        A = self.g.forward(Z)
        return A, DenseCache(A_prev, Z, A)

    def backward(
        self,
        params: Mapping[str, Array],
        cache: DenseCache,
        dA: Array,
        precision: str,
        need_dA_prev: bool = True,
    ) -> tuple[Array | None, tuple[Product, ...]]:
        """dZ = dA ⊙ g'(Z) (5), then :meth:`backward_from_dZ`."""
        dZ = dense.activation_backward(dA, cache.Z, cache.A, self.g)  # (5)
        return self.backward_from_dZ(params, cache, dZ, precision, need_dA_prev)

    def backward_from_dZ(
        self,
        params: Mapping[str, Array],
        cache: DenseCache,
        dZ: Array,
        precision: str,
        need_dA_prev: bool = True,
    ) -> tuple[Array | None, tuple[Product, ...]]:
        """dA_prev = Wᵀ dZ (4), and the product (A_prev, dZ) with one position per example."""
        dA_prev = (
            dense.prev_activation_grad(params["W"], dZ, precision=precision)  # (4)
            if need_dA_prev
            else None
        )
        if dZ.ndim == 3:  # a sequence: T positions per example
            return dA_prev, (Product("W", "b", cache.A_prev, dZ),)
        return dA_prev, (Product("W", "b", cache.A_prev[:, None, :], dZ[:, None, :]),)

    @property
    def output_activation(self) -> Activation:
        return self.g

    def output_values(self, cache: DenseCache) -> tuple[Array, Array, Activation]:
        return cache.Z, cache.A, self.g

    def jvp(
        self,
        params: Mapping[str, Array],
        tangent: Mapping[str, Array],
        cache: DenseCache,
        A_prev: Array,
        A_prev_dot: Array | None,
        precision: str,
    ) -> Array:
        """Ȧ = g'(Z) ⊙ Ż (7), Ż = W Ȧ_prev + Ẇ A_prev + ḃ (6)."""
        Z_dot = self.pre_activation_jvp(params, tangent, A_prev, A_prev_dot, precision)  # (6)
        return dense.activation_jvp(Z_dot, cache.Z, cache.A, self.g)  # (7)

    def pre_activation_jvp(
        self,
        params: Mapping[str, Array],
        tangent: Mapping[str, Array],
        A_prev: Array,
        A_prev_dot: Array | None,
        precision: str,
    ) -> Array:
        """Ż = W Ȧ_prev + Ẇ A_prev + ḃ: formula (6), the tangent of Z at the output layer."""
        b_dot = _at_positions(tangent["b"], A_prev)
        return dense.linear_jvp(
            params["W"], A_prev, tangent["W"], b_dot, A_prev_dot, precision=precision
        )  # (6)
