"""Student code for "Convolution model - Step by Step" (course 4, week 1), backward part.

`conv_backward(dZ, cache)` and `pool_backward(dA, cache, mode)` in the notebook's layout
(examples first, channels last; W (f, f, n_C_prev, n_C)); the other versions each carry one
mistake students make. Checked with `manualgrad check --against FILE.py:conv_backward`.
"""

# student code: the course's unpacking of whole caches is kept as written
# ruff: noqa: RUF059

import numpy as np


def zero_pad(X, pad):
    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="constant", constant_values=0)


def _conv_backward(
    dZ, cache, stride_used=None, crop=True, swap=False, db_add=True, over_m=False, dA_add=True
):
    (A_prev, W, b, hparameters) = cache
    (m, n_H_prev, n_W_prev, n_C_prev) = A_prev.shape
    (f, f, n_C_prev, n_C) = W.shape
    stride = hparameters["stride"] if stride_used is None else stride_used
    pad = hparameters["pad"]
    (m, n_H, n_W, n_C) = dZ.shape
    dA_prev = np.zeros((m, n_H_prev, n_W_prev, n_C_prev))
    dW = np.zeros((f, f, n_C_prev, n_C))
    db = np.zeros((1, 1, 1, n_C))
    A_prev_pad = zero_pad(A_prev, pad)
    dA_prev_pad = zero_pad(dA_prev, pad)
    for i in range(m):
        a_prev_pad = A_prev_pad[i]
        da_prev_pad = dA_prev_pad[i]
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    vert_start = stride * h
                    vert_end = vert_start + f
                    horiz_start = stride * w
                    horiz_end = horiz_start + f
                    a_slice = a_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :]
                    if swap:
                        da_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :] += (
                            W[:, :, c, :] * dZ[i, h, w, c]
                        )
                        dW[:, :, c, :] += a_slice * dZ[i, h, w, c]
                    elif dA_add:
                        da_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :] += (
                            W[:, :, :, c] * dZ[i, h, w, c]
                        )
                        dW[:, :, :, c] += a_slice * dZ[i, h, w, c]
                    else:
                        da_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :] = (
                            W[:, :, :, c] * dZ[i, h, w, c]
                        )
                        dW[:, :, :, c] += a_slice * dZ[i, h, w, c]
                    if db_add:
                        db[:, :, :, c] += dZ[i, h, w, c]
                    else:
                        db[:, :, :, c] = dZ[i, h, w, c]
        if crop:
            dA_prev[i, :, :, :] = da_prev_pad[pad : pad + n_H_prev, pad : pad + n_W_prev, :]
    if not crop:
        dA_prev = dA_prev_pad
    if over_m:
        dW, db = dW / m, db / m
    return dA_prev, dW, db


def conv_backward(dZ, cache):
    return _conv_backward(dZ, cache)


def conv_backward_pad_not_cropped(dZ, cache):
    """Returns da_prev_pad as it is."""
    return _conv_backward(dZ, cache, crop=False)


def conv_backward_stride_ignored(dZ, cache):
    """vert_start = h: the stride left out of the backward loop."""
    return _conv_backward(dZ, cache, stride_used=1)


def conv_backward_W_swapped(dZ, cache):
    """W[:, :, c, :] for W[:, :, :, c] (runs only when n_C == n_C_prev)."""
    return _conv_backward(dZ, cache, swap=True)


def conv_backward_db_assigned(dZ, cache):
    """db[:, :, :, c] = dZ[i, h, w, c]: not summed."""
    return _conv_backward(dZ, cache, db_add=False)


def conv_backward_over_m(dZ, cache):
    """The 1/m of course 1 carried over to dW and db."""
    return _conv_backward(dZ, cache, over_m=True)


def conv_backward_dA_assigned(dZ, cache):
    """da_prev_pad[…] = …: overlapping windows and the n_C filters overwrite each other."""
    return _conv_backward(dZ, cache, dA_add=False)


def create_mask_from_window(x):
    return x == np.max(x)


def distribute_value(dz, shape):
    (n_H, n_W) = shape
    return np.ones(shape) * dz / (n_H * n_W)


def _pool_backward(dA, cache, mode, use_mask=True, divide=True, max_rule=True, add=True):
    (A_prev, hparameters) = cache
    stride = hparameters["stride"]
    f = hparameters["f"]
    m, n_H, n_W, n_C = dA.shape
    dA_prev = np.zeros(A_prev.shape)
    for i in range(m):
        a_prev = A_prev[i]
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    vert_start, horiz_start = h * stride, w * stride
                    vert_end, horiz_end = vert_start + f, horiz_start + f
                    if mode == "max" and max_rule:
                        a_prev_slice = a_prev[vert_start:vert_end, horiz_start:horiz_end, c]
                        mask = create_mask_from_window(a_prev_slice) if use_mask else 1
                        grad = mask * dA[i, h, w, c]
                    else:
                        da = dA[i, h, w, c]
                        grad = distribute_value(da, (f, f)) if divide else np.ones((f, f)) * da
                    if add:
                        dA_prev[i, vert_start:vert_end, horiz_start:horiz_end, c] += grad
                    else:
                        dA_prev[i, vert_start:vert_end, horiz_start:horiz_end, c] = grad
    return dA_prev


def pool_backward(dA, cache, mode="max"):
    return _pool_backward(dA, cache, mode)


def pool_backward_no_mask(dA, cache, mode="max"):
    """Max pooling's dA added to the whole window."""
    return _pool_backward(dA, cache, mode, use_mask=False)


def pool_backward_not_divided(dA, cache, mode="max"):
    """Average pooling's dA not divided by f·f."""
    return _pool_backward(dA, cache, mode, divide=False)


def pool_backward_max_as_average(dA, cache, mode="max"):
    """distribute_value for both modes."""
    return _pool_backward(dA, cache, mode, max_rule=False)


def pool_backward_assigned(dA, cache, mode="max"):
    """dA_prev[…] = …: overlapping windows overwrite each other."""
    return _pool_backward(dA, cache, mode, add=False)
