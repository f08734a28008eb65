r"""A `jax.custom_vjp` bridge: code written for `jax.grad` runs the hand-written backward.

:func:`cost_fn` returns a function `(params, X, Y[, key]) -> C` that computes the same
cost as :func:`manualgrad.cost`. Its forward pass saves the layer caches as residuals
and its backward pass is :func:`manualgrad.backward`'s chain of formulas (5), (2), (4),
so `jax.grad`, `jax.value_and_grad`, optax loops and flax-style training code use the
formulas unchanged. The incoming cotangent ḡ (1.0 under `jax.grad`) scales every
cotangent returned:

| argument | cotangent                                                          |
|----------|--------------------------------------------------------------------|
| `params` | ḡ · ∂C/∂W[l] = ḡ (1/m) dZ[l] A[l-1]ᵀ (+ (λ/m) W[l]),  ḡ · ∂C/∂b[l]     (2) |
| `X`      | ḡ · ∂C/∂X = ḡ (1/m) W[1]ᵀ dZ[1] = ḡ dA[0] / m                         (4) |
| `Y`      | ḡ · ∂C/∂Y from `jax.vjp` of the loss on the saved Z[L], A[L] (cheap)    |
| `key`    | none (a PRNG key is not differentiable)                               |

so `jax.grad` with respect to any argument is exact. Under `jax.jit` the cotangents
nobody asks for are dropped by XLA and cost nothing.

>>> import jax, jax.numpy as jnp, manualgrad as mg
>>> f = mg.cost_fn(("relu", "sigmoid"), "bce")
>>> params = mg.init_params([2, 4, 1], jax.random.key(0))
>>> X = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
>>> Y = jnp.array([[1.0, 0.0, 1.0]])
>>> grads = jax.grad(f)(params, X, Y)  # runs the hand-written backward
>>> sorted(grads) == sorted(params)
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import jax

from manualgrad import _validation as check
from manualgrad._errors import ConfigError
from manualgrad.dense import prev_activation_grad
from manualgrad.losses import cost_from_losses
from manualgrad.network import _backward_dZ, _cost_from_caches, _forward, _grads_from_dZ, _prepare

Array = jax.Array


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _bridge_cost(static, params, X, Y, key):
    acts, loss_spec, l2, keep_prob, precision = static
    _, caches = _forward(params, X, acts, keep_prob, key, precision)
    return _cost_from_caches(params, caches, Y, loss_spec, l2)


def _bridge_fwd(static, params, X, Y, key):
    acts, loss_spec, l2, keep_prob, precision = static
    _, caches = _forward(params, X, acts, keep_prob, key, precision)
    C = _cost_from_caches(params, caches, Y, loss_spec, l2)
    return C, (params, caches, Y)


def _bridge_bwd(static, residuals, g):
    acts, loss_spec, l2, keep_prob, precision = static
    params, caches, Y = residuals
    m = Y.shape[1]
    dZs = _backward_dZ(params, caches, Y, acts, loss_spec, keep_prob, precision, scale=1 / m)
    grads = _grads_from_dZ(params, caches, dZs, l2, m, precision, dZ_has_1_over_m=True)
    # ∂C/∂X = (1/m) W[1]ᵀ dZ[1]: formula (4) at layer 1 (the dZs already carry the 1/m)
    dX = prev_activation_grad(params["W1"], dZs[0], precision=precision)  # (4)
    last = caches[-1]
    _, loss_vjp = jax.vjp(lambda Y_: cost_from_losses(loss_spec.per_example(last.Z, last.A, Y_)), Y)
    (dY,) = loss_vjp(g)
    dparams = jax.tree.map(lambda d: g * d, grads)
    return dparams, g * dX, dY, None


_bridge_cost.defvjp(_bridge_fwd, _bridge_bwd)


def cost_fn(
    activations: Sequence[str],
    loss: str = "bce",
    *,
    l2: float = 0.0,
    keep_prob: float = 1.0,
    precision: str = "default",
) -> Callable[..., Array]:
    """The cost C(params, X, Y[, key]) as a function whose `jax.grad` is the hand-written one.

    `activations`, `loss`, `l2` (λ, a Python number), `keep_prob` and `precision` mean
    what they mean for :func:`manualgrad.value_and_grad` and are fixed here, so the
    returned function takes only arrays: params (dict), X (n_x, m), Y (n_L, m) and, when
    keep_prob < 1, a `jax.random.key` for the dropout masks. Its value equals
    :func:`manualgrad.cost`; its `jax.grad` with respect to params equals
    `value_and_grad`'s grads, and with respect to X and Y the exact ∂C/∂X and ∂C/∂Y.
    Inputs are validated at trace time, as in every other entry point.
    """
    activations = tuple(activations)
    try:
        l2 = float(l2)
    except (TypeError, jax.errors.ConcretizationTypeError):
        raise ConfigError(
            f"`cost_fn` fixes `l2` when it is built, so it must be a Python number, got {l2!r}; "
            "to vary λ, build one function per value (or use manualgrad.value_and_grad)"
        ) from None
    check.check_options(l2=l2, keep_prob=keep_prob, key=True, precision=precision)

    def cost(params: Mapping[str, Array], X: Array, Y: Array, key: Array | None = None) -> Array:
        """C = (1/m) Σ_i L(a[L](i), y(i)) (+ L2 term); `jax.grad` runs the hand-written backward."""
        X, Y, acts, loss_spec = _prepare(
            params, X, Y, activations, loss, l2, keep_prob, key, precision
        )
        static: Any = (acts, loss_spec, l2, keep_prob, precision)
        return _bridge_cost(static, dict(params), X, Y, key if keep_prob < 1 else None)

    return cost
