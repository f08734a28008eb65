r"""A `jax.custom_vjp` bridge: code written for `jax.grad` runs the hand-written backward.

`net.custom_vjp_cost` of a :func:`manualgrad.network` (built by this private
module's :func:`custom_vjp_cost`) is a function `(params, X, Y[, key]) -> C` that computes the same
cost as :func:`manualgrad.cost`. Its forward pass saves the layer caches as residuals
and its backward pass is the engine's chain of formulas (5), (4) and then (2),
so `jax.grad`, `jax.value_and_grad`, optax loops and flax-style training code use the
formulas unchanged. The incoming cotangent ḡ (1.0 under `jax.grad`) scales every
cotangent returned:

| argument | cotangent                                                          |
|----------|--------------------------------------------------------------------|
| `params` | ḡ · ∂C/∂W[l] = ḡ (1/m) dZ[l] A[l-1]ᵀ (+ (λ/m) W[l]),  ḡ · ∂C/∂b[l]     (2) |
| `X`      | ḡ · ∂C/∂X = ḡ dA[0] / m, formula (4) (or the first layer's own) at layer 1 |
| `Y`      | ḡ · ∂C/∂Y from `jax.vjp` of the loss on the saved Z[L], A[L] (cheap)    |
| `key`    | none (a PRNG key is not differentiable)                               |

so `jax.grad` with respect to any argument is exact. Under `jax.jit` the cotangents
nobody asks for are dropped by XLA and cost nothing.

>>> import jax, jax.numpy as jnp, manualgrad as mg
>>> f = mg.network(["relu", "sigmoid"], "bce").custom_vjp_cost
>>> params = mg.init_params([2, 4, 1], jax.random.key(0))
>>> X = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
>>> Y = jnp.array([[1.0, 0.0, 1.0]])
>>> grads = jax.grad(f)(params, X, Y)  # runs the hand-written backward
>>> sorted(grads) == sorted(params)
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from manualgrad._core import engine

Array = jax.Array

__all__ = ["custom_vjp_cost"]


def _cost_and_pass(static, params, X, Y, key):
    spec, l2 = static
    m = X.shape[-1]
    _, caches = engine.forward(params, X, spec, engine.dropout_masks(params, X, spec, key))
    C = engine.cost(params, jnp.sum(engine.example_losses(caches, Y, spec)), m=m, l2=l2)
    return C, caches


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _bridge_cost(static, params, X, Y, key):
    return _cost_and_pass(static, params, X, Y, key)[0]


def _bridge_fwd(static, params, X, Y, key):
    C, caches = _cost_and_pass(static, params, X, Y, key)
    return C, (params, caches, Y)


def _bridge_bwd(static, residuals, g):
    spec, l2 = static
    params, caches, Y = residuals
    m = Y.shape[1]
    # the chain on dZ[L] / m: (2)'s 1/m once, by linearity, for the params and for X alike
    products, dX = engine.chain_with_input_grad(
        params, caches, engine.output_dZ(caches, Y, spec) / m, spec
    )  # (4), (5); dX = ∂C/∂X = (1/m) dA[0], formula (4) at layer 1
    grads = engine.grads_from_products(params, products, m=1, precision=spec.precision)  # (2)
    grads = engine.add_l2_grads(grads, params, l2, m)

    def mean_loss(Y_):
        return jnp.sum(engine.example_losses(caches, Y_, spec)) / m

    _, loss_vjp = jax.vjp(mean_loss, Y)
    (dY,) = loss_vjp(g)
    dparams = jax.tree.map(lambda d: g * d, grads)
    if dX.dtype != jax.dtypes.float0:  # integer X (token ids) has the float0 cotangent
        dX = g * dX
    return dparams, dX, dY, None


_bridge_cost.defvjp(_bridge_fwd, _bridge_bwd)


def custom_vjp_cost(spec: engine.Spec, l2: Any) -> Callable[..., Array]:
    """The cost C(params, X, Y[, key]) of `spec` and λ = `l2`, whose `jax.grad` is hand-written.

    :func:`manualgrad.network` calls this for `net.custom_vjp_cost`; use that. The
    returned function takes only arrays: params (dict), X (n_x, m), Y (n_L, m) and,
    when keep_prob < 1, a `jax.random.key` for the dropout masks. Its value equals
    :func:`manualgrad.cost`; its `jax.grad` with respect to params equals
    `value_and_grad`'s grads, and with respect to X and Y the exact ∂C/∂X and ∂C/∂Y.
    Inputs are validated at trace time, as in every other entry point.
    """
    static: Any = (spec, l2)

    def cost(params: Mapping[str, Array], X: Array, Y: Array, key: Array | None = None) -> Array:
        """C = (1/m) Σ_i L(a[L](i), y(i)) (+ L2 term); `jax.grad` runs the hand-written backward."""
        params_, X, Y_, _ = engine.check_inputs(params, X, Y, spec, l2=l2, key=key)
        return _bridge_cost(static, params_, X, Y_, key if spec.keep_prob < 1 else None)

    return cost
