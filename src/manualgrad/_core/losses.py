r"""Losses L(a[L], y) of one example, written from the output pre-activation z[L].

The cost over m examples is C = (1/m) Σ_i L(a[L](i), y(i)). Every loss here is
evaluated from Z[L] (the logits) in a form that stays finite when the output
saturates: there is never a log(0).

| name  | g[L]    | per-example loss L                       | stable form used            |
|-------|---------|------------------------------------------|-----------------------------|
| `bce` | sigmoid | −[y log a + (1 − y) log(1 − a)]          | softplus(z) − y z           |
| `ce`  | softmax | −Σ_k y_k log a_k (y one-hot, (n_L, m))   | −Σ_k y_k log_softmax(z)_k   |
| `mse` | any     | ½ ‖a − y‖²                               | as written                  |

Each loss provides dA[L] = ∂L/∂a[L] (for `bce` the course's
dAL = −(Y/AL − (1 − Y)/(1 − AL))). For sigmoid + bce and softmax + ce the product
of dA[L] with g[L]'(Z[L]) collapses to the fused, stable

    dZ[L] = A[L] − Y,

which is what the network backward uses (it never forms Y/AL). All functions take
(n_L, m) arrays, or (n_L,) for one example, and reduce over axis 0 (the outputs of
one example), returning one loss per example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


def bce_loss(ZL: Array, AL: Array, Y: Array) -> Array:
    """L = −[y log σ(z) + (1 − y) log(1 − σ(z))] = softplus(z) − y z, summed over axis 0."""
    del AL
    return jnp.sum(jnp.logaddexp(0, ZL) - Y * ZL, axis=0)


def bce_dA(AL: Array, Y: Array) -> Array:
    """dA[L] = ∂L/∂a = −(y/a − (1 − y)/(1 − a)) (the course's dAL; infinite when a saturates)."""
    return -(Y / AL - (1 - Y) / (1 - AL))


def ce_loss(ZL: Array, AL: Array, Y: Array) -> Array:
    """L = −Σ_k y_k log a_k = −Σ_k y_k log_softmax(z)_k, over the classes on axis 0."""
    del AL
    return -jnp.sum(Y * jax.nn.log_softmax(ZL, axis=0), axis=0)


def ce_dA(AL: Array, Y: Array) -> Array:
    """dA[L] = ∂L/∂a_k = −y_k / a_k."""
    return -Y / AL


def mse_loss(ZL: Array, AL: Array, Y: Array) -> Array:
    """L = ½ ‖a − y‖², summed over the outputs on axis 0."""
    del ZL
    return 0.5 * jnp.sum((AL - Y) ** 2, axis=0)


def mse_dA(AL: Array, Y: Array) -> Array:
    """dA[L] = ∂L/∂a = a − y."""
    return AL - Y


def fused_dZ(AL: Array, Y: Array) -> Array:
    """dZ[L] = A[L] − Y: dA[L] ⊙ σ'(Z[L]) for sigmoid + bce, the softmax JVP for softmax + ce."""
    return AL - Y


class Loss(NamedTuple):
    """A loss: its per-example value from (Z[L], A[L], Y), its dA[L], and its output activations.

    `output_activations` lists the output activations it may follow (`None`: any).
    `fused_with` names the output activation for which dZ[L] = A[L] − Y.
    `default_output` is the output activation a network gets for this loss when the
    user names only the hidden ones (see :func:`output_activation`).
    """

    name: str
    per_example: Callable[[Array, Array, Array], Array]
    dA: Callable[[Array, Array], Array]
    output_activations: tuple[str, ...] | None
    fused_with: str | None
    default_output: str


LOSSES: dict[str, Loss] = {
    "bce": Loss("bce", bce_loss, bce_dA, ("sigmoid",), "sigmoid", "sigmoid"),
    "ce": Loss("ce", ce_loss, ce_dA, ("softmax",), "softmax", "softmax"),
    "mse": Loss("mse", mse_loss, mse_dA, None, None, "linear"),  # regression: unbounded output
}


def get_loss(name: str) -> Loss:
    """Look up a loss by name, with an error that lists the valid names."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        from manualgrad._errors import ConfigError

        raise ConfigError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}") from None


def output_activation(loss: str) -> str:
    """The output activation that goes with `loss`: sigmoid for bce, softmax for ce, linear for mse.

    The one place this rule lives; both command-line tools and any code that builds a
    network from hidden activations plus a loss take it from here.

    >>> output_activation("ce")
    'softmax'
    """
    return get_loss(loss).default_output


def cost_from_losses(losses: Array) -> Array:
    """C = (1/m) Σ_i L_i for a vector of per-example losses of shape (m,)."""
    return jnp.mean(losses)
