"""A student's file that prints at import, and its backward prints too (stdout stays JSON)."""

import numpy as np

print("Building your Deep Neural Network: Step by Step")


def L_model_backward(AL, Y, caches):
    grads = {}
    L = len(caches)
    Y = Y.reshape(AL.shape)
    dA = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    for l in reversed(range(L)):
        (A_prev, W, _), Z = caches[l]
        s = 1 / (1 + np.exp(-Z))
        dZ = dA * s * (1 - s) if l == L - 1 else dA * (Z > 0)
        m = A_prev.shape[1]
        grads["dW" + str(l + 1)] = np.dot(dZ, A_prev.T) / m
        grads["db" + str(l + 1)] = np.sum(dZ, axis=1, keepdims=True) / m
        dA = np.dot(W.T, dZ)
        grads["dA" + str(l)] = dA
    print("dW1 =", grads["dW1"])
    return grads
