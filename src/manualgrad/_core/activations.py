r"""Activation functions g and their hand-written derivatives g'.

Each activation sits next to its derivative, micrograd-style. The derivative is a
function of the pre-activation Z *and* the activation A = g(Z), because for several
activations the cheapest exact form uses A (σ' = A(1 − A), tanh' = 1 − A²). All
functions are elementwise and work on any shape: (n_l, m) in the batched formulas,
(n_l,) in the single-example ones.

| name         | g(z)                   | g'(z)                         | g''(z)            |
|--------------|------------------------|-------------------------------|-------------------|
| `relu`       | z if z > 0 else 0      | 1 if z > 0 else 0 (g'(0) = 0) | 0                 |
| `leaky_relu` | z if z > 0 else 0.01 z | 1 if z > 0 else 0.01          | 0                 |
| `tanh`       | tanh z                 | 1 − tanh² z                   | −2a(1 − a²)       |
| `sigmoid`    | 1 / (1 + e^{−z})       | σ(z)(1 − σ(z))                | a(1 − a)(1 − 2a)  |
| `linear`     | z                      | 1                             | 0                 |
| `softmax`    | e^{z_k} / Σ_j e^{z_j}  | not elementwise: see below    | not elementwise   |

The second derivatives serve curvature (:mod:`manualgrad.curvature`): the exact
Hessian of the cost differs from the Gauss-Newton matrix by terms g''(Z) ⊙ dA, and
those vanish for the piecewise-linear activations (their record's `piecewise_linear`;
g'' = 0 wherever it is defined).

`softmax` normalises over axis 0 (the classes of each example column) and is meant
for the output layer. Its Jacobian is diag(a) − a aᵀ, so formula (5) becomes the
Jacobian-vector product dz = a ⊙ (da − ⟨da, a⟩) (:func:`softmax_backward`).

relu and leaky_relu have a kink at z = 0, where g' is not defined and any value
between the one-sided slopes is a valid subgradient. Both here take the left slope
(relu'(0) = 0 as in the course, leaky_relu'(0) = 0.01), and their forward functions
are written with `jnp.where(Z > 0, …)` so that `jax.grad` of the forward picks the
same one: `jnp.maximum(Z, 0)` would give ½ at a tie, and a gradient check of the
hand-written backward against it would fail wherever some Z is exactly 0 (zero
biases and a dropped-out previous layer make that common). `kink_at_zero` marks
them, so that finite differences can leave out a stencil that straddles the kink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = [
    "ACTIVATIONS",
    "HIDDEN_ACTIVATIONS",
    "LEAKY_SLOPE",
    "PIECEWISE_LINEAR",
    "Activation",
    "get_activation",
    "leaky_relu",
    "leaky_relu_derivative",
    "leaky_relu_second_derivative",
    "linear",
    "linear_derivative",
    "linear_second_derivative",
    "relu",
    "relu_derivative",
    "relu_second_derivative",
    "sigmoid",
    "sigmoid_derivative",
    "sigmoid_second_derivative",
    "softmax",
    "softmax_backward",
    "tanh",
    "tanh_derivative",
    "tanh_second_derivative",
]

LEAKY_SLOPE = 0.01


def relu(Z: Array) -> Array:
    """g(z) = z for z > 0, else 0; `jax.grad` of it at z = 0 is 0, like :func:`relu_derivative`."""
    return jnp.where(Z > 0, Z, jnp.zeros_like(Z))


def relu_derivative(Z: Array, A: Array) -> Array:
    """g'(z) = 1 for z > 0, else 0; g'(0) = 0 as in the course."""
    del A
    return (Z > 0).astype(Z.dtype)


def relu_second_derivative(Z: Array, A: Array) -> Array:
    """g''(z) = 0 wherever it is defined (z ≠ 0)."""
    del A
    return jnp.zeros_like(Z)


def leaky_relu(Z: Array) -> Array:
    """g(z) = z for z > 0, else 0.01 z; `jax.grad` of it at z = 0 is 0.01, as is g'(0)."""
    return jnp.where(Z > 0, Z, LEAKY_SLOPE * Z)


def leaky_relu_derivative(Z: Array, A: Array) -> Array:
    """g'(z) = 1 for z > 0, else 0.01."""
    del A
    return jnp.where(Z > 0, jnp.ones_like(Z), jnp.full_like(Z, LEAKY_SLOPE))


def leaky_relu_second_derivative(Z: Array, A: Array) -> Array:
    """g''(z) = 0 wherever it is defined (z ≠ 0)."""
    del A
    return jnp.zeros_like(Z)


def tanh(Z: Array) -> Array:
    """g(z) = tanh z."""
    return jnp.tanh(Z)


def tanh_derivative(Z: Array, A: Array) -> Array:
    """g'(z) = 1 − tanh² z = 1 − a²."""
    del Z
    return 1 - A * A


def tanh_second_derivative(Z: Array, A: Array) -> Array:
    """g''(z) = d/dz (1 − tanh² z) = −2 tanh z (1 − tanh² z) = −2a(1 − a²)."""
    del Z
    return -2 * A * (1 - A * A)


def sigmoid(Z: Array) -> Array:
    """g(z) = 1 / (1 + e^{−z}), evaluated without overflow for large |z|."""
    return jax.nn.sigmoid(Z)


def sigmoid_derivative(Z: Array, A: Array) -> Array:
    """g'(z) = σ(z)(1 − σ(z)) = a(1 − a)."""
    del Z
    return A * (1 - A)


def sigmoid_second_derivative(Z: Array, A: Array) -> Array:
    """g''(z) = d/dz σ(1 − σ) = σ'(1 − σ) − σσ' = a(1 − a)(1 − 2a)."""
    del Z
    return A * (1 - A) * (1 - 2 * A)


def linear(Z: Array) -> Array:
    """g(z) = z (identity; for regression outputs)."""
    return Z


def linear_derivative(Z: Array, A: Array) -> Array:
    """g'(z) = 1."""
    del A
    return jnp.ones_like(Z)


def linear_second_derivative(Z: Array, A: Array) -> Array:
    """g''(z) = 0."""
    del A
    return jnp.zeros_like(Z)


def softmax(Z: Array) -> Array:
    """a_k = e^{z_k} / Σ_j e^{z_j} over axis 0, shifted by max_k z_k so it never overflows."""
    return jax.nn.softmax(Z, axis=0)


def softmax_backward(dA: Array, A: Array) -> Array:
    """Formula (5) for softmax: dz = (diag(a) − a aᵀ) da = a ⊙ (da − Σ_k da_k a_k), per column."""
    return A * (dA - jnp.sum(dA * A, axis=0, keepdims=True))


class Activation(NamedTuple):
    """An activation g with its hand-written first and second derivatives.

    `derivative(Z, A)` returns g'(Z) elementwise; it is `None` for `softmax`, whose
    backward is the Jacobian-vector product :func:`softmax_backward`.
    `second_derivative(Z, A)` returns g''(Z) elementwise (None for `softmax`).
    `kink_at_zero` is True when g' jumps at z = 0 (relu, leaky_relu).
    `piecewise_linear` is True when g'' = 0 wherever it is defined (relu, leaky_relu,
    linear): the Hessian's residual terms g''(Z) ⊙ dA then vanish (curvature).
    """

    name: str
    forward: Callable[[Array], Array]
    derivative: Callable[[Array, Array], Array] | None
    second_derivative: Callable[[Array, Array], Array] | None = None
    kink_at_zero: bool = False
    piecewise_linear: bool = False


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(
        "relu", relu, relu_derivative, relu_second_derivative, True, piecewise_linear=True
    ),
    "leaky_relu": Activation(
        "leaky_relu",
        leaky_relu,
        leaky_relu_derivative,
        leaky_relu_second_derivative,
        True,
        piecewise_linear=True,
    ),
    "tanh": Activation("tanh", tanh, tanh_derivative, tanh_second_derivative),
    "sigmoid": Activation("sigmoid", sigmoid, sigmoid_derivative, sigmoid_second_derivative),
    "linear": Activation(
        "linear", linear, linear_derivative, linear_second_derivative, piecewise_linear=True
    ),
    "softmax": Activation("softmax", softmax, None, None),
}

#: The names of the activations whose g'' is 0 wherever it is defined (their
#: `piecewise_linear` field): for them the Hessian's residual terms g''(Z) ⊙ dA vanish,
#: so the Hessian's diagonal blocks equal the GGN's.
PIECEWISE_LINEAR = frozenset(name for name, g in ACTIVATIONS.items() if g.piecewise_linear)

#: Activations allowed on hidden layers (softmax is for the output layer only).
HIDDEN_ACTIVATIONS = tuple(name for name in ACTIVATIONS if name != "softmax")


def get_activation(name: str) -> Activation:
    """Look up an activation by name, with an error that lists the valid names."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        from manualgrad._errors import ConfigError

        raise ConfigError(
            f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}"
        ) from None
