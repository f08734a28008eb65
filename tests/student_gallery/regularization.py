"""Student code for the regularization assignment, on the course's L-layer model.

`L_model_backward_with_regularization(AL, Y, caches, lambd)` adds (λ/m) W[l] to each dW[l]
(the cost's term (λ/(2m)) Σ ‖W[l]‖²); the other versions carry a mistake a real submission
made. Checked with `manualgrad check --against FILE.py:FUNCTION --l2 λ`.
"""

import numpy as np


def linear_backward_with_regularization(dZ, cache, lambd):
    A_prev, W, _ = cache
    m = A_prev.shape[1]
    dW = 1.0 / m * np.dot(dZ, A_prev.T) + lambd / m * W
    db = 1.0 / m * np.sum(dZ, axis=1, keepdims=True)
    dA_prev = np.dot(W.T, dZ)
    return dA_prev, dW, db


def _L_model_backward(AL, Y, caches, lambd, linear_backward):
    grads = {}
    L = len(caches)
    Y = Y.reshape(AL.shape)
    dA = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    for l in reversed(range(L)):
        linear_cache, Z = caches[l]
        if l == L - 1:
            s = 1 / (1 + np.exp(-Z))
            dZ = dA * s * (1 - s)
        else:
            dZ = np.array(dA, copy=True)
            dZ[Z <= 0] = 0
        grads["dA" + str(l)], grads["dW" + str(l + 1)], grads["db" + str(l + 1)] = linear_backward(
            dZ, linear_cache, lambd
        )
        dA = grads["dA" + str(l)]
    return grads


def L_model_backward_with_regularization(AL, Y, caches, lambd):
    return _L_model_backward(AL, Y, caches, lambd, linear_backward_with_regularization)


def L_model_backward_forgets_l2(AL, Y, caches, lambd):
    """Takes lambd, and never uses it: dW has no (λ/m) W."""
    return _L_model_backward(AL, Y, caches, 0.0, linear_backward_with_regularization)


def L_model_backward(AL, Y, caches, lambd=0.7):
    """The plain assignment's function with the regularized helper and a default lambd."""
    return _L_model_backward(AL, Y, caches, lambd, linear_backward_with_regularization)
