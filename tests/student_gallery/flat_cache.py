"""Student code for the regularization assignment's own 3-layer functions (flat caches).

`backward_propagation_with_regularization(X, Y, cache, lambd)` takes the flat cache
(Z1, A1, W1, b1, Z2, A2, W2, b2, Z3, A3, W3, b3), `backward_propagation_with_dropout(X, Y,
cache, keep_prob)` the one with the masks (Z1, D1, A1, W1, b1, Z2, D2, A2, W2, b2, Z3, A3, W3,
b3); both return dZ3, dW3, db3, dA2, dZ2, dW2, db2, dA1, dZ1, dW1, db1. The other versions
each carry one mistake students make. Checked with `manualgrad check --against
FILE.py:FUNCTION --l2 λ` (or `--keep-prob p`).
"""

# student code: the course's unpacking of whole caches is kept as written
# ruff: noqa: RUF059

import numpy as np


def _backward(X, Y, cache, l2_term, dropout):
    """The assignment's backward, with the L2 term `l2_term(W, m)` and `dropout(dA, D)`."""
    m = X.shape[1]
    if len(cache) == 14:
        (Z1, D1, A1, W1, b1, Z2, D2, A2, W2, b2, Z3, A3, W3, b3) = cache
    else:
        (Z1, A1, W1, b1, Z2, A2, W2, b2, Z3, A3, W3, b3) = cache
        D1 = D2 = None
    dZ3 = A3 - Y
    dW3 = 1.0 / m * np.dot(dZ3, A2.T) + l2_term(W3, m)
    db3 = 1.0 / m * np.sum(dZ3, axis=1, keepdims=True)
    dA2 = dropout(np.dot(W3.T, dZ3), D2)
    dZ2 = np.multiply(dA2, np.int64(A2 > 0))
    dW2 = 1.0 / m * np.dot(dZ2, A1.T) + l2_term(W2, m)
    db2 = 1.0 / m * np.sum(dZ2, axis=1, keepdims=True)
    dA1 = dropout(np.dot(W2.T, dZ2), D1)
    dZ1 = np.multiply(dA1, np.int64(A1 > 0))
    dW1 = 1.0 / m * np.dot(dZ1, X.T) + l2_term(W1, m)
    db1 = 1.0 / m * np.sum(dZ1, axis=1, keepdims=True)
    return {"dZ3": dZ3, "dW3": dW3, "db3": db3, "dA2": dA2,
            "dZ2": dZ2, "dW2": dW2, "db2": db2, "dA1": dA1,
            "dZ1": dZ1, "dW1": dW1, "db1": db1}  # fmt: skip


def _no_l2(W, m):
    return 0.0


def _no_dropout(dA, D):
    return dA


def backward_propagation(X, Y, cache):
    return _backward(X, Y, cache, _no_l2, _no_dropout)


def backward_propagation_with_regularization(X, Y, cache, lambd):
    return _backward(X, Y, cache, lambda W, m: lambd / m * W, _no_dropout)


def backward_propagation_with_regularization_half(X, Y, cache, lambd):
    """(λ/(2m)) W, the cost's factor copied into the gradient."""
    return _backward(X, Y, cache, lambda W, m: lambd / (2 * m) * W, _no_dropout)


def backward_propagation_with_regularization_forgets(X, Y, cache, lambd):
    """Takes lambd and never uses it."""
    return _backward(X, Y, cache, _no_l2, _no_dropout)


def backward_propagation_with_dropout(X, Y, cache, keep_prob):
    def dropout(dA, D):
        dA = dA * D
        return dA / keep_prob

    return _backward(X, Y, cache, _no_l2, dropout)


def backward_propagation_with_dropout_no_mask(X, Y, cache, keep_prob):
    """Scales by 1/keep_prob, forgets the mask (dZ still uses A > 0, the dropped A)."""
    return _backward(X, Y, cache, _no_l2, lambda dA, D: dA / keep_prob)


def backward_propagation_with_dropout_not_scaled(X, Y, cache, keep_prob):
    """Masks, forgets to divide by keep_prob."""
    return _backward(X, Y, cache, _no_l2, lambda dA, D: dA * D)


def backward_propagation_with_dropout_forgotten(X, Y, cache, keep_prob):
    """The plain backward_propagation, copied: no dropout in the backward pass at all."""
    return _backward(X, Y, cache, _no_l2, _no_dropout)


def backward_propagation_with_dropout_lambd(X, Y, cache, lambd):
    """Copied from the L2 function: its 4th parameter is still called lambd."""
    return _backward(X, Y, cache, _no_l2, lambda dA, D: dA * D / 0.8)


def backward_propagation_with_regularization_no_m(X, Y, cache, lambd):
    """λ W: the 1/m of the L2 term forgotten."""
    return _backward(X, Y, cache, lambda W, m: lambd * W, _no_dropout)


def backward_propagation_with_dropout_times(X, Y, cache, keep_prob):
    """Multiplies by keep_prob where the forward pass divided."""
    return _backward(X, Y, cache, _no_l2, lambda dA, D: dA * D * keep_prob)


def backward_propagation_with_dropout_reads_cache_as_dict(X, Y, cache, keep_prob):
    """Written for a dict cache."""
    D1 = cache["D1"]
    return {"dD1": D1}


def backward_propagation_default_lambd(X, Y, cache, lambd=0.7):
    """The L2 version, used for the plain model: its default lambd adds (λ/m) W."""
    return _backward(X, Y, cache, lambda W, m: lambd / m * W, _no_dropout)
