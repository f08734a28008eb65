"""Student mistakes of the course's "Building your Deep Neural Network: Step by Step", in its style.

Each `L_model_backward_*` below is the assignment's function as real submissions write it,
with one of the mistakes `manualgrad check --against` must name (issue 25); the helpers are
the assignment's, written out so the file runs alone. `tests/test_testing.py` and
`tests/test_cli_check.py` check the report on each.
"""

import numpy as np


def sigmoid_backward(dA, cache):
    Z = cache
    s = 1 / (1 + np.exp(-Z))
    dZ = dA * s * (1 - s)
    return dZ


def relu_backward(dA, cache):
    Z = cache
    dZ = np.array(dA, copy=True)
    dZ[Z <= 0] = 0
    return dZ


def linear_backward(dZ, cache):
    A_prev, W, _ = cache
    m = A_prev.shape[1]
    dW = 1.0 / m * np.dot(dZ, A_prev.T)
    db = 1.0 / m * np.sum(dZ, axis=1, keepdims=True)
    dA_prev = np.dot(W.T, dZ)
    return dA_prev, dW, db


def linear_activation_backward(dA, cache, activation):
    linear_cache, activation_cache = cache
    if activation == "relu":
        dZ = relu_backward(dA, activation_cache)
    elif activation == "sigmoid":
        dZ = sigmoid_backward(dA, activation_cache)
    dA_prev, dW, db = linear_backward(dZ, linear_cache)
    return dA_prev, dW, db


def L_model_backward_shifted(AL, Y, caches):
    """The widely copied version: the output layer's dA_prev is stored as "dA" + str(L)."""
    grads = {}
    L = len(caches)
    Y = Y.reshape(AL.shape)
    dAL = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    current_cache = caches[L - 1]
    grads["dA" + str(L)], grads["dW" + str(L)], grads["db" + str(L)] = linear_activation_backward(
        dAL, current_cache, "sigmoid"
    )
    for l in reversed(range(L - 1)):
        current_cache = caches[l]
        dA_prev_temp, dW_temp, db_temp = linear_activation_backward(
            grads["dA" + str(l + 2)], current_cache, "relu"
        )
        grads["dA" + str(l + 1)] = dA_prev_temp
        grads["dW" + str(l + 1)] = dW_temp
        grads["db" + str(l + 1)] = db_temp
    return grads


def L_model_backward_shifted_sign(AL, Y, caches):
    """Shifted keys, and dAL with its sign flipped: the bug the key error used to hide."""
    grads = {}
    L = len(caches)
    Y = Y.reshape(AL.shape)
    dAL = np.divide(Y, AL) - np.divide(1 - Y, 1 - AL)
    current_cache = caches[L - 1]
    grads["dA" + str(L)], grads["dW" + str(L)], grads["db" + str(L)] = linear_activation_backward(
        dAL, current_cache, "sigmoid"
    )
    for l in reversed(range(L - 1)):
        current_cache = caches[l]
        dA_prev_temp, dW_temp, db_temp = linear_activation_backward(
            grads["dA" + str(l + 2)], current_cache, "relu"
        )
        grads["dA" + str(l + 1)] = dA_prev_temp
        grads["dW" + str(l + 1)] = dW_temp
        grads["db" + str(l + 1)] = db_temp
    return grads


def L_model_backward_undefined_helper(AL, Y, caches):
    """The loop calls a helper the notebook defined and the file does not; the output layer's
    dA_prev is stored as "dA" + str(L). On a one-layer network the loop never runs."""
    grads = {}
    L = len(caches)
    Y = Y.reshape(AL.shape)
    dAL = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    grads["dA" + str(L)], grads["dW" + str(L)], grads["db" + str(L)] = linear_activation_backward(
        dAL, caches[L - 1], "sigmoid"
    )
    for l in reversed(range(L - 1)):
        dA_prev, dW, db = linear_activation_backward_relu(grads["dA" + str(l + 2)], caches[l])  # noqa: F821
        grads["dA" + str(l + 1)], grads["dW" + str(l + 1)], grads["db" + str(l + 1)] = (
            dA_prev,
            dW,
            db,
        )
    return grads


def L_model_backward_only_dW_db(AL, Y, caches):
    """Returns what `update_parameters` needs, dW and db, and keeps dA to itself."""
    grads = {}
    L = len(caches)
    Y = Y.reshape(AL.shape)
    dA = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    for l in reversed(range(L)):
        activation = "sigmoid" if l == L - 1 else "relu"
        dA, grads["dW" + str(l + 1)], grads["db" + str(l + 1)] = linear_activation_backward(
            dA, caches[l], activation
        )
    return grads


def L_model_backward_lowercase(AL, Y, caches):
    """Right values under the keys "dw1", "db1", "da0", …."""
    grads = {}
    L = len(caches)
    Y = Y.reshape(AL.shape)
    dA = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    for l in reversed(range(L)):
        activation = "sigmoid" if l == L - 1 else "relu"
        dA, grads["dw" + str(l + 1)], grads["db" + str(l + 1)] = linear_activation_backward(
            dA, caches[l], activation
        )
        grads["da" + str(l)] = dA
    return grads


class NN:
    """The model as a class, its backward a staticmethod (`FILE.py:NN.L_model_backward`)."""

    @staticmethod
    def L_model_backward(AL, Y, caches):
        grads = {}
        L = len(caches)
        Y = Y.reshape(AL.shape)
        dA = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
        for l in reversed(range(L)):
            activation = "sigmoid" if l == L - 1 else "relu"
            grads["dA" + str(l)], grads["dW" + str(l + 1)], grads["db" + str(l + 1)] = (
                linear_activation_backward(dA, caches[l], activation)
            )
            dA = grads["dA" + str(l)]
        return grads


def linear_backward_dict_cache(dZ, cache):
    """Written for a forward pass whose linear cache is a dict {"A_prev", "W", "b"}."""
    A_prev, W = cache["A_prev"], cache["W"]
    m = A_prev.shape[1]
    dW = 1.0 / m * np.dot(dZ, A_prev.T)
    db = 1.0 / m * np.sum(dZ, axis=1, keepdims=True)
    return np.dot(W.T, dZ), dW, db


def L_model_backward_dict_cache(AL, Y, caches):
    """Right formulas for another cache format: its own line raises on the course's caches."""
    grads = {}
    L = len(caches)
    Y = Y.reshape(AL.shape)
    dA = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    for l in reversed(range(L)):
        linear_cache, Z = caches[l]
        dZ = sigmoid_backward(dA, Z) if l == L - 1 else relu_backward(dA, Z)
        dA, grads["dW" + str(l + 1)], grads["db" + str(l + 1)] = linear_backward_dict_cache(
            dZ, linear_cache
        )
        grads["dA" + str(l)] = dA
    return grads
