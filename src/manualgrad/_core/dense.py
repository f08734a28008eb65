r"""The dense-layer formulas, one small function each, cited by number.

Notation (examples are columns; m examples):

| symbol      | shape            | meaning                                       |
|-------------|------------------|-----------------------------------------------|
| `W`         | (n_l, n_{l-1})   | weights of layer l                            |
| `b`         | (n_l, 1)         | biases of layer l                             |
| `A_prev`    | (n_{l-1}, m)     | activations of layer l−1 (A[0] = X)           |
| `Z`         | (n_l, m)         | pre-activations Z[l] = W A_prev + b           |
| `A`         | (n_l, m)         | activations A[l] = g(Z[l])                    |
| `dZ`, `dA`  | as Z, A          | ∂L_i/∂z, ∂L_i/∂a of each example's loss L_i   |

dZ and dA are derivatives of the per-example loss L, not of the cost C, which is why
1/m appears only in dW and db (formula (2)). The same functions accept one example
as vectors of shape (n_l,), except the batched formula (2) and its one-example form
(1), which are separate functions.

    (1)  dW[l] = dz[l] a[l-1]ᵀ,          db[l] = dz[l]                 (one example)
    (2)  dW[l] = (1/m) dZ[l] A[l-1]ᵀ,    db[l] = (1/m) Σ_i dZ[l](i)     (m examples)
    (3)  dZ[l] = W[l+1]ᵀ dZ[l+1] ⊙ g[l]'(Z[l])   = (4) followed by (5)
    (4)  dA[l-1] = W[l]ᵀ dZ[l]
    (5)  dZ[l] = dA[l] ⊙ g[l]'(Z[l])

Forward mode (the R-operator): the change Ż, Ȧ of the activations when the params
move along a direction (Ẇ, ḃ), and the second-order term of (5) (see
docs/curvature.md):

    (6)  Ż[l] = W[l] Ȧ[l-1] + Ẇ[l] A[l-1] + ḃ[l],    Ȧ[0] = 0
    (7)  Ȧ[l] = g[l]'(Z[l]) ⊙ Ż[l]
    (8)  ∂²L/∂z[l]² = diag(g') (∂²L/∂a[l]²) diag(g') + diag(r[l]),  r[l] = g[l]''(Z[l]) ⊙ dA[l]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from manualgrad._core.activations import Activation, softmax_backward
from manualgrad._core.precision import matmul

Array = jax.Array

__all__ = [
    "activation_backward",
    "activation_jvp",
    "activation_residual",
    "bias_grad",
    "example_bias_grad",
    "example_weight_grad",
    "linear_backward",
    "linear_forward",
    "linear_jvp",
    "prev_activation_grad",
    "weight_grad",
]


def linear_forward(W: Array, b: Array, A_prev: Array, *, precision: str = "default") -> Array:
    """Z[l] = W[l] A[l-1] + b[l].

    Shapes: W (n_l, n_{l-1}), b (n_l, 1), A_prev (n_{l-1}, m) -> Z (n_l, m).
    For one example, A_prev (n_{l-1},) and b (n_l,) give z (n_l,).
    """
    return matmul(W, A_prev, 1, 0, precision) + b


def weight_grad(
    dZ: Array, A_prev: Array, *, precision: str = "default", m: int | float | Array | None = None
) -> Array:
    """Formula (2): dW[l] = (1/m) dZ[l] A[l-1]ᵀ.

    Shapes: dZ (n_l, m), A_prev (n_{l-1}, m) -> dW (n_l, n_{l-1}). The contraction is
    over the example axis of both, so A_prevᵀ is never formed. `m` is the normaliser,
    dZ.shape[1] by default (the engine passes it: a device's shard of a batch divides
    by the global m, DP-SGD by the expected batch size). The 1/m is applied to
    whichever of dZ (n_l·m numbers) and the product (n_l·n_{l-1}) is smaller, so it
    never costs a pass over a large dW that the matmul cannot absorb (the course's
    12288-pixel input layer).
    """
    m = dZ.shape[1] if m is None else m
    if dZ.shape[1] < A_prev.shape[0]:
        return matmul(dZ / m, A_prev, 1, 1, precision)  # (2), (1/m) dZ first
    return matmul(dZ, A_prev, 1, 1, precision) / m  # (2)


def bias_grad(dZ: Array, *, m: int | float | Array | None = None) -> Array:
    """Formula (2) for b: db[l] = (1/m) Σ_i dZ[l](i) = (1/m) sum(dZ, axis=1, keepdims=True).

    Shapes: dZ (n_l, m) -> db (n_l, 1). `m` as for :func:`weight_grad`.
    """
    m = dZ.shape[1] if m is None else m
    return jnp.sum(dZ, axis=1, keepdims=True) / m  # (2)


def example_weight_grad(dz: Array, a_prev: Array) -> Array:
    """Formula (1): dW[l]_ij = dz[l]_i · a[l-1]_j, i.e. dW[l] = dz[l] a[l-1]ᵀ (outer product).

    Shapes: dz (n_l,), a_prev (n_{l-1},) -> dW (n_l, n_{l-1}). No 1/m: this is the
    gradient of one example's loss L.
    """
    return jnp.outer(dz, a_prev)  # (1)


def example_bias_grad(dz: Array) -> Array:
    """Formula (1) for b: db[l] = dz[l], returned with the params' shape (n_l, 1)."""
    return dz[:, None]  # (1)


def prev_activation_grad(W: Array, dZ: Array, *, precision: str = "default") -> Array:
    """Formula (4): dA[l-1] = W[l]ᵀ dZ[l].

    Shapes: W (n_l, n_{l-1}), dZ (n_l, m) -> dA_prev (n_{l-1}, m); or dz (n_l,) ->
    da_prev (n_{l-1},). Contracts axis 0 of W with axis 0 of dZ (no transpose formed).
    """
    return matmul(W, dZ, 0, 0, precision)  # (4)


def activation_backward(dA: Array, Z: Array, A: Array, activation: Activation) -> Array:
    """Formula (5): dZ[l] = dA[l] ⊙ g[l]'(Z[l]).

    Shapes: dA, Z, A all (n_l, m) or all (n_l,). For softmax the Jacobian is not
    diagonal and (5) becomes the product with diag(a) − a aᵀ (see
    :func:`manualgrad._core.activations.softmax_backward`).
    """
    if activation.derivative is None:
        return softmax_backward(dA, A)  # (5), softmax's Jacobian-vector product
    return dA * activation.derivative(Z, A)  # (5)


def linear_jvp(
    W: Array,
    A_prev: Array,
    W_dot: Array,
    b_dot: Array,
    A_prev_dot: Array | None,
    *,
    precision: str = "default",
) -> Array:
    """Formula (6): Ż[l] = W[l] Ȧ[l-1] + Ẇ[l] A[l-1] + ḃ[l] (the product rule on Z = W A + b).

    Shapes: W, W_dot (n_l, n_{l-1}), b_dot (n_l, 1), A_prev, A_prev_dot (n_{l-1}, m) ->
    Ż (n_l, m). `A_prev_dot` is None at layer 1, where A[0] = X does not move.
    """
    Z_dot = matmul(W_dot, A_prev, 1, 0, precision) + b_dot  # (6), Ẇ A[l-1] + ḃ
    if A_prev_dot is not None:
        Z_dot = Z_dot + matmul(W, A_prev_dot, 1, 0, precision)  # (6), + W Ȧ[l-1]
    return Z_dot


def activation_jvp(Z_dot: Array, Z: Array, A: Array, activation: Activation) -> Array:
    """Formula (7): Ȧ[l] = g[l]'(Z[l]) ⊙ Ż[l].

    Shapes: all (n_l, m). Softmax's Jacobian diag(a) − a aᵀ is symmetric, so its
    Jacobian-vector product is the same product as in (5):
    ȧ = a ⊙ (ż − ⟨ż, a⟩) (:func:`manualgrad._core.activations.softmax_backward`).
    """
    if activation.derivative is None:
        return softmax_backward(Z_dot, A)  # (7), softmax's symmetric Jacobian
    return Z_dot * activation.derivative(Z, A)  # (7)


def activation_residual(dA: Array, Z: Array, A: Array, activation: Activation) -> Array:
    """Formula (8)'s residual r[l] = g[l]''(Z[l]) ⊙ dA[l]: what the Hessian adds to the GGN at l.

    Shapes: dA, Z, A (n_l, m) -> (n_l, m), one diagonal of ∂²L_i/∂z[l]² per column. Zero
    for the piecewise-linear activations; softmax (not elementwise) has no such diagonal.
    """
    assert activation.second_derivative is not None, "softmax's g'' is not elementwise"
    return activation.second_derivative(Z, A) * dA  # (8)


def linear_backward(
    dZ: Array,
    A_prev: Array,
    W: Array,
    *,
    precision: str = "default",
    m: int | float | Array | None = None,
) -> tuple[Array, Array, Array]:
    """Formulas (2) and (4) for one layer: (dW, db, dA_prev) from dZ[l].

    Shapes: dZ (n_l, m), A_prev (n_{l-1}, m), W (n_l, n_{l-1}) ->
    dW (n_l, n_{l-1}), db (n_l, 1), dA_prev (n_{l-1}, m). `m` as for :func:`weight_grad`.
    """
    dW = weight_grad(dZ, A_prev, precision=precision, m=m)
    db = bias_grad(dZ, m=m)
    dA_prev = prev_activation_grad(W, dZ, precision=precision)
    return dW, db, dA_prev
