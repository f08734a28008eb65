r"""The course-2 terms: L2 regularisation and inverted dropout.

L2 with strength λ adds to the cost and to each weight gradient

    C_L2 = C + (λ / 2m) Σ_l ‖W[l]‖_F²,        dW[l] += (λ/m) W[l],

and leaves the biases alone. Inverted dropout on hidden layer l draws a mask
D[l] ~ Bernoulli(keep_prob) of A[l]'s shape and uses A[l] · D[l] / keep_prob in
place of A[l]; backward multiplies dA[l] by the same D[l] / keep_prob.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["apply_dropout", "dropout_masks", "l2_cost", "l2_weight_grad"]


def l2_cost(params: Mapping[str, Array], l2: float | Array, m: int | float | Array) -> Array:
    """(λ / 2m) Σ_l ‖W[l]‖_F² over the weights of `params` (the keys "W…"; biases excluded)."""
    squares = sum(jnp.sum(W**2) for k, W in params.items() if k.startswith("W"))
    return jnp.asarray(l2 / (2 * m) * squares)


def l2_weight_grad(W: Array, l2: float | Array, m: int | float | Array) -> Array:
    """∂/∂W of (λ / 2m) ‖W‖_F²: the (λ/m) W added to dW[l]."""
    return l2 / m * W


def dropout_masks(key: Array, shapes: list[tuple[int, ...]], keep_prob: float) -> list[Array]:
    """One Bernoulli(keep_prob) mask per hidden layer, from `jax.random.split(key, len(shapes))`.

    `shapes` are the shapes of A[1] … A[L-1]. The masks are booleans; the same key and
    shapes always give the same masks, so a `jax.grad` oracle can reuse them.
    """
    keys = jax.random.split(key, len(shapes))
    return [jax.random.bernoulli(k, keep_prob, s) for k, s in zip(keys, shapes, strict=True)]


def apply_dropout(A: Array, D: Array, keep_prob: float) -> Array:
    """A · D / keep_prob: forward on A[l], and the same rule backward on dA[l]."""
    return jnp.where(D, A / keep_prob, jnp.zeros_like(A))
