"""Numpy backward passes for the tests of `mg.checking.backward`: one correct, one per mistake.

They are written the way the course's assignment is (course 1 week 4): `linear_backward`,
`relu_backward`, `sigmoid_backward`, and an `L_model_backward(AL, Y, caches)` that chains
them. Each wrong version swaps in one piece with a classic mistake, marked `# BUG`;
`tests/test_testing.py` checks the verdict and the diagnosis of each. The file is also
loaded by `manualgrad check --against tests/backward_references.py:NAME` in the CLI tests.
"""

from __future__ import annotations

import numpy as np

# ------------------------------------------------------------------------ the right pieces


def sigmoid_backward(dA, Z):
    s = 1 / (1 + np.exp(-Z))
    return dA * s * (1 - s)


def relu_backward(dA, Z):
    dZ = np.array(dA, copy=True)
    dZ[Z <= 0] = 0
    return dZ


def linear_backward(dZ, cache):
    A_prev, W, _ = cache
    m = A_prev.shape[1]
    dW = np.dot(dZ, A_prev.T) / m
    db = np.sum(dZ, axis=1, keepdims=True) / m
    dA_prev = np.dot(W.T, dZ)
    return dA_prev, dW, db


def bce_output_dZ(AL, Y, Z):
    dAL = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    return sigmoid_backward(dAL, Z)


def mse_output_dZ(AL, Y, Z):
    return sigmoid_backward(AL - Y, Z)


def make_L_model_backward(
    *,
    output_dZ=bce_output_dZ,
    hidden_backward=relu_backward,
    linear_backward=linear_backward,
    hidden_linear_backward=None,
):
    """The course's L_model_backward, built from the given pieces.

    `hidden_linear_backward` (default: `linear_backward`) serves the hidden layers' loop.
    """
    hidden_linear_backward = hidden_linear_backward or linear_backward

    def L_model_backward(AL, Y, caches):
        grads = {}
        L = len(caches)
        Y = Y.reshape(AL.shape)
        linear_cache, Z = caches[L - 1]
        dZ = output_dZ(AL, Y, Z)
        grads[f"dA{L - 1}"], grads[f"dW{L}"], grads[f"db{L}"] = linear_backward(dZ, linear_cache)
        for l in reversed(range(1, L)):
            linear_cache, Z = caches[l - 1]
            dZ = hidden_backward(grads[f"dA{l}"], Z)
            grads[f"dA{l - 1}"], grads[f"dW{l}"], grads[f"db{l}"] = hidden_linear_backward(
                dZ, linear_cache
            )
        return grads

    return L_model_backward


L_model_backward = make_L_model_backward()
L_model_backward_mse = make_L_model_backward(output_dZ=mse_output_dZ)


def grads(params, X, Y):
    """The core convention: the gradients of the course's network under the params' keys."""
    L = len(params) // 2
    m = X.shape[1]
    A, As, Zs = X, [X], []
    for l in range(1, L + 1):
        Z = params[f"W{l}"] @ A + params[f"b{l}"]
        A = np.maximum(Z, 0) if l < L else 1 / (1 + np.exp(-Z))
        Zs.append(Z)
        As.append(A)
    dZ = A - Y
    out = {}
    for l in range(L, 0, -1):
        out[f"W{l}"] = dZ @ As[l - 1].T / m
        out[f"b{l}"] = dZ.sum(axis=1, keepdims=True) / m
        if l > 1:
            dZ = (params[f"W{l}"].T @ dZ) * (Zs[l - 2] > 0)
    return out


# ------------------------------------------------------------------ one mistake per version


def _linear_backward_missing_1_over_m(dZ, cache):
    A_prev, W, _ = cache
    dW = np.dot(dZ, A_prev.T)  # BUG: no 1/m
    db = np.sum(dZ, axis=1, keepdims=True)  # BUG: no 1/m
    return np.dot(W.T, dZ), dW, db


def _linear_backward_dW_1_over_m_twice(dZ, cache):
    A_prev, W, _ = cache
    m = A_prev.shape[1]
    dW = np.dot(dZ / m, A_prev.T) / m  # BUG: 1/m twice
    return np.dot(W.T, dZ), dW, np.sum(dZ, axis=1, keepdims=True) / m


def _linear_backward_dW_transposed(dZ, cache):
    A_prev, W, _ = cache
    m = A_prev.shape[1]
    dW = np.dot(A_prev, dZ.T) / m  # BUG: (1/m) A_prev dZᵀ
    return np.dot(W.T, dZ), dW, np.sum(dZ, axis=1, keepdims=True) / m


def _linear_backward_db_without_keepdims(dZ, cache):
    A_prev, W, _ = cache
    m = A_prev.shape[1]
    db = np.sum(dZ, axis=1) / m  # BUG: shape (n,)
    return np.dot(W.T, dZ), np.dot(dZ, A_prev.T) / m, db


def _linear_backward_db_wrong_axis(dZ, cache):
    A_prev, W, _ = cache
    m = A_prev.shape[1]
    db = np.sum(dZ, axis=0, keepdims=True) / m  # BUG: over the units
    return np.dot(W.T, dZ), np.dot(dZ, A_prev.T) / m, db


def _linear_backward_db_summed_over_everything(dZ, cache):
    A_prev, W, _ = cache
    m = A_prev.shape[1]
    db = np.sum(dZ) / m  # BUG: no axis
    return np.dot(W.T, dZ), np.dot(dZ, A_prev.T) / m, db


def _linear_backward_dA_with_1_over_m(dZ, cache):
    A_prev, W, _ = cache
    m = A_prev.shape[1]
    dA_prev = np.dot(W.T, dZ) / m  # BUG: dA is per example
    return dA_prev, np.dot(dZ, A_prev.T) / m, np.sum(dZ, axis=1, keepdims=True) / m


def _linear_backward_dA_without_transpose(dZ, cache):
    A_prev, W, _ = cache
    m = A_prev.shape[1]
    dA_prev = np.dot(W, dZ)  # BUG: W, not Wᵀ
    return dA_prev, np.dot(dZ, A_prev.T) / m, np.sum(dZ, axis=1, keepdims=True) / m


def _linear_backward_dW_sign(dZ, cache):
    A_prev, W, _ = cache
    m = A_prev.shape[1]
    dW = -np.dot(dZ, A_prev.T) / m  # BUG: the sign
    return np.dot(W.T, dZ), dW, np.sum(dZ, axis=1, keepdims=True) / m


def _linear_backward_db_sign(dZ, cache):
    A_prev, W, _ = cache
    m = A_prev.shape[1]
    db = -np.sum(dZ, axis=1, keepdims=True) / m  # BUG: the sign
    return np.dot(W.T, dZ), np.dot(dZ, A_prev.T) / m, db


def _linear_backward_db_1_over_m_twice(dZ, cache):
    A_prev, W, _ = cache
    m = A_prev.shape[1]
    db = np.sum(dZ / m, axis=1, keepdims=True) / m  # BUG: 1/m twice
    return np.dot(W.T, dZ), np.dot(dZ, A_prev.T) / m, db


def _linear_backward_dA_sign(dZ, cache):
    A_prev, W, _ = cache
    m = A_prev.shape[1]
    dA_prev = -np.dot(W.T, dZ)  # BUG: the sign
    return dA_prev, np.dot(dZ, A_prev.T) / m, np.sum(dZ, axis=1, keepdims=True) / m


def _bce_output_dZ_relu(AL, Y, Z):
    dAL = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    return relu_backward(dAL, Z)  # BUG: the output layer is sigmoid


def _bce_output_dZ_Z_one_minus_Z(AL, Y, Z):
    dAL = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    return dAL * Z * (1 - Z)  # BUG: A(1 − A) with Z for A


def _bce_output_dZ_sign(AL, Y, Z):
    dAL = np.divide(Y, AL) - np.divide(1 - Y, 1 - AL)  # BUG: the minus sign
    return sigmoid_backward(dAL, Z)


def _bce_output_dZ_at_A(AL, Y, Z):
    dAL = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    return sigmoid_backward(dAL, AL)  # BUG: σ' at A, the cache holds Z


def _bce_output_dZ_fused_as_dA(AL, Y, Z):
    return sigmoid_backward(AL - Y, Z)  # BUG: A − Y is already dZ for cross-entropy


def _mse_output_dZ_fused(AL, Y, Z):
    return AL - Y  # BUG: the fused form belongs to cross-entropy


def _relu_backward_at_zero(dA, Z):
    dZ = np.array(dA, copy=True)
    dZ[Z < 0] = 0  # BUG: relu'(0) = 1
    return dZ


def _relu_backward_without_derivative(dA, Z):
    return np.array(dA, copy=True)  # BUG: no ⊙ g'(Z)


L_model_backward_missing_1_over_m = make_L_model_backward(
    linear_backward=_linear_backward_missing_1_over_m
)
L_model_backward_dW_1_over_m_twice = make_L_model_backward(
    linear_backward=_linear_backward_dW_1_over_m_twice
)
L_model_backward_dW_transposed = make_L_model_backward(
    linear_backward=_linear_backward_dW_transposed
)
L_model_backward_db_without_keepdims = make_L_model_backward(
    linear_backward=_linear_backward_db_without_keepdims
)
L_model_backward_db_wrong_axis = make_L_model_backward(
    linear_backward=_linear_backward_db_wrong_axis
)
L_model_backward_db_summed_over_everything = make_L_model_backward(
    linear_backward=_linear_backward_db_summed_over_everything
)
L_model_backward_dA_with_1_over_m = make_L_model_backward(
    linear_backward=_linear_backward_dA_with_1_over_m
)
L_model_backward_dA_without_transpose = make_L_model_backward(  # runs on square layers only
    hidden_linear_backward=_linear_backward_dA_without_transpose
)
L_model_backward_dW_sign = make_L_model_backward(linear_backward=_linear_backward_dW_sign)
L_model_backward_db_sign = make_L_model_backward(linear_backward=_linear_backward_db_sign)
L_model_backward_db_1_over_m_twice = make_L_model_backward(
    linear_backward=_linear_backward_db_1_over_m_twice
)
L_model_backward_dA_sign = make_L_model_backward(linear_backward=_linear_backward_dA_sign)
L_model_backward_relu_on_sigmoid = make_L_model_backward(output_dZ=_bce_output_dZ_relu)
L_model_backward_Z_one_minus_Z = make_L_model_backward(output_dZ=_bce_output_dZ_Z_one_minus_Z)
L_model_backward_sign = make_L_model_backward(output_dZ=_bce_output_dZ_sign)
L_model_backward_derivative_at_A = make_L_model_backward(output_dZ=_bce_output_dZ_at_A)
L_model_backward_fused_as_dA = make_L_model_backward(output_dZ=_bce_output_dZ_fused_as_dA)
L_model_backward_mse_fused = make_L_model_backward(output_dZ=_mse_output_dZ_fused)
L_model_backward_relu_at_zero = make_L_model_backward(hidden_backward=_relu_backward_at_zero)
L_model_backward_sigmoid_on_relu = make_L_model_backward(hidden_backward=sigmoid_backward)
L_model_backward_without_derivative = make_L_model_backward(
    hidden_backward=_relu_backward_without_derivative
)


def L_model_backward_dA_from_W_below(AL, Y, caches):
    """dA[l-1] from the weights of layer l − 1 in the hidden layers: runs on square ones only."""
    grads = {}
    L = len(caches)
    dZ = AL - Y.reshape(AL.shape)
    for l in range(L, 0, -1):
        (A_prev, W, _), Z = caches[l - 1]
        m = A_prev.shape[1]
        if l < L:
            dZ = relu_backward(grads[f"dA{l}"], Z)
        grads[f"dW{l}"] = np.dot(dZ, A_prev.T) / m
        grads[f"db{l}"] = np.sum(dZ, axis=1, keepdims=True) / m
        W_used = caches[l - 2][0][1] if 1 < l < L else W  # BUG: W[l-1] for 1 < l < L
        grads[f"dA{l - 1}"] = np.dot(W_used.T, dZ)
    return grads


def grads_missing_1_over_m(params, X, Y):
    """The core convention with dW = dZ A_prevᵀ (no 1/m)."""
    out = grads(params, X, Y)
    m = X.shape[1]
    return {k: v * m if k.startswith("W") else v for k, v in out.items()}  # BUG


def grads_sigmoid_on_relu(params, X, Y):
    """The core convention with σ' in the hidden layers."""
    L = len(params) // 2
    m = X.shape[1]
    A, As, Zs = X, [X], []
    for l in range(1, L + 1):
        Z = params[f"W{l}"] @ A + params[f"b{l}"]
        A = np.maximum(Z, 0) if l < L else 1 / (1 + np.exp(-Z))
        Zs.append(Z)
        As.append(A)
    dZ = A - Y
    out = {}
    for l in range(L, 0, -1):
        out[f"dW{l}"] = dZ @ As[l - 1].T / m
        out[f"db{l}"] = dZ.sum(axis=1, keepdims=True) / m
        if l > 1:
            s = 1 / (1 + np.exp(-Zs[l - 2]))
            dZ = (params[f"W{l}"].T @ dZ) * s * (1 - s)  # BUG: σ' on a relu layer
    return out


def grads_dA_from_W_below(params, X, Y):
    """The core convention with dA[l-1] = W[l-1]ᵀ dZ[l] in the hidden layers: square ones only."""
    L = len(params) // 2
    m = X.shape[1]
    A, As, Zs = X, [X], []
    for l in range(1, L + 1):
        Z = params[f"W{l}"] @ A + params[f"b{l}"]
        A = np.maximum(Z, 0) if l < L else 1 / (1 + np.exp(-Z))
        Zs.append(Z)
        As.append(A)
    dZ = A - Y
    out = {}
    for l in range(L, 0, -1):
        out[f"dW{l}"] = dZ @ As[l - 1].T / m
        out[f"db{l}"] = dZ.sum(axis=1, keepdims=True) / m
        if l > 1:
            W = params[f"W{l - 1}"] if l < L else params[f"W{l}"]  # BUG: W[l-1] for l < L
            dZ = (W.T @ dZ) * (Zs[l - 2] > 0)
    return out


def _returning_list(AL, Y, caches):
    """Not a backward pass: returns the gradients as a list (for the exit-2 test of the CLI)."""
    return list(L_model_backward(AL, Y, caches).values())
