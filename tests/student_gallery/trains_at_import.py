"""A student's file that loads the data set at import, as the notebook does (it is not here)."""

import numpy as np

data = np.load("train_catvnoncat.npz")
train_x, train_y = data["x"], data["y"]


def L_model_backward(AL, Y, caches):
    return {}
