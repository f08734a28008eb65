r"""The classic mistakes of the course's conv, pool, RNN and LSTM backward functions.

Each function here is the course's loop (C4W1's `conv_backward` and `pool_backward`, C5W1's
`rnn_backward` and `lstm_backward`) written with **one** named mistake switched on by
`mistake`: what a student's function with that mistake returns. They are never the truth
(that is :mod:`manualgrad.checking._layer_oracles`, jax.vjp of the forward); a key that
disagrees with the truth and equals one of these is diagnosed as that mistake.
:data:`LAYER_MISTAKES` is the catalogue, with the text a report shows.

The RNN and LSTM caches they read are those of :func:`manualgrad.course.rnn_forward` and
`lstm_forward`, in the course's layout (x (n_x, m, T_x), a (n_a, m, T_x)).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class LayerMistake(NamedTuple):
    """One classic mistake of an assignment (`kind` "conv", "pool", "rnn" or "lstm")."""

    id: str
    kind: str
    label: str
    text: str


# fmt: off
LAYER_MISTAKES: tuple[LayerMistake, ...] = (
    LayerMistake("conv_pad_not_cropped", "conv", "padding not cropped",
                 "dA_prev still has the padding: after the loop, crop it — dA_prev[i] = "
                 "da_prev_pad[pad:-pad, pad:-pad, :] (or A_prev's own shape: "
                 "da_prev_pad[pad:pad + n_H_prev, pad:pad + n_W_prev, :], which also works "
                 "for pad = 0)"),
    LayerMistake("conv_stride_ignored", "conv", "stride ignored",
                 "the windows start at h and w, not at stride·h and stride·w: in the backward "
                 "loop vert_start = stride * h and horiz_start = stride * w, as in conv_forward"),
    LayerMistake("conv_W_channels_swapped", "conv", "W[:, :, c, :] for W[:, :, :, c]",
                 "the filter of output channel c is W[:, :, :, c] (W is (f, f, n_C_prev, n_C)): "
                 "W[:, :, c, :] and dW[:, :, c, :] index the input channels instead — "
                 "da_prev_pad[…] += W[:, :, :, c] * dZ[i, h, w, c], dW[:, :, :, c] += a_slice * "
                 "dZ[i, h, w, c]"),
    LayerMistake("conv_dA_overwritten", "conv", "= for += in dA_prev",
                 "da_prev_pad is assigned (=) instead of accumulated (+=): windows that overlap "
                 "and the n_C filters all add to the same entries — da_prev_pad[…] += "
                 "W[:, :, :, c] * dZ[i, h, w, c]"),
    LayerMistake("conv_db_not_summed", "conv", "db not summed",
                 "db is assigned (=) instead of summed (+=), so it holds one dZ entry: "
                 "db[:, :, :, c] += dZ[i, h, w, c] over every example and position "
                 "(db = Σ dZ over m, n_H, n_W)"),
    LayerMistake("conv_1_over_m", "conv", "1/m in dW and db",
                 "dW and db are divided by m: the course's conv_backward sums over the m examples "
                 "with no 1/m (dZ already carries the cost's 1/m) — unlike formula (2) of the "
                 "dense layers, where dZ is each example's own"),
    LayerMistake("pool_mask_not_used", "pool", "max: no mask",
                 "max pooling's gradient goes to every entry of the window: only the maximum "
                 "passed forward, so only it gets dA — da_prev[…] += create_mask_from_window("
                 "a_prev_slice) * dA[i, h, w, c]"),
    LayerMistake("pool_max_as_average", "pool", "max: spread as average",
                 "max pooling's gradient is spread evenly over the window (distribute_value, the "
                 "average's rule): use the mask of the maximum, create_mask_from_window("
                 "a_prev_slice) * dA[i, h, w, c]"),
    LayerMistake("pool_average_not_divided", "pool", "average: not ÷ f·f",
                 "average pooling's gradient is not divided by the window's f·f entries: "
                 "distribute_value(dz, (f, f)) gives each entry dz / (f·f)"),
    LayerMistake("pool_overwritten", "pool", "= for += in dA_prev",
                 "dA_prev's window is assigned (=) instead of accumulated (+=): with stride < f "
                 "the windows overlap and an entry gets the gradient of each window it is in"),
    LayerMistake("bptt_not_accumulated", "rnn lstm", "not summed over time",
                 "the weight gradients hold one time step only (= instead of +=): the weights are "
                 "shared by every step, so their gradient is the sum over t — dWax += dWaxt, "
                 "dWaa += dWaat, dba += dbat (each weight's, for the LSTM) inside the loop"),
    LayerMistake("bptt_da_prev_not_carried", "rnn lstm", "da_prev not carried",
                 "each step starts from da[:, :, t] alone: the hidden state a⟨t⟩ also feeds step "
                 "t + 1, so the cell's da_next is da[:, :, t] + da_prevt, the da_prev of the step "
                 "after it"),
    LayerMistake("rnn_tanh_derivative_at_a", "rnn", "tanh' taken at a",
                 "dtanh = (1 − tanh(a_next)²) ⊙ da_next applies tanh twice: a_next is already "
                 "tanh(…), so dtanh = (1 − a_next²) ⊙ da_next"),
    LayerMistake("lstm_dc_not_carried", "lstm", "dc_prev not carried",
                 "the gradient of the cell state never reaches the step before: each step starts "
                 "from dc_next = 0 (dc_prevt is not passed on, or dc_prev = dc_next ⊙ ft misses "
                 "the path through a⟨t⟩ = ot ⊙ tanh(c⟨t⟩), which keeps it 0) — dc_prev = "
                 "(dc_next + ot ⊙ (1 − tanh²(c_next)) ⊙ da_next) ⊙ ft, and the next step's "
                 "dc_next is this step's dc_prev"),
)
# fmt: on

BY_ID = {mistake.id: mistake for mistake in LAYER_MISTAKES}


def mistakes_of(kind: str) -> list[LayerMistake]:
    """The catalogue's mistakes of one assignment, in catalogue order."""
    return [m for m in LAYER_MISTAKES if kind in m.kind.split()]


# ---------------------------------------------------------------------------------- conv, pool


def conv_backward(dZ, A_prev, W, b, stride, pad, mistake=None) -> dict[str, np.ndarray] | None:
    """The course's conv_backward loop with `mistake` (None: without); None when that mistake
    cannot run on these shapes (W's channels swapped with n_C ≠ n_C_prev)."""
    m, n_H_prev, n_W_prev, n_C_prev = A_prev.shape
    f, _, _, n_C = W.shape
    _, n_H, n_W, _ = dZ.shape
    swapped = mistake == "conv_W_channels_swapped"
    if swapped and n_C != n_C_prev:
        return None
    step = 1 if mistake == "conv_stride_ignored" else stride
    A_prev_pad = np.pad(A_prev, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dA_prev_pad = np.zeros_like(A_prev_pad)
    dW, db = np.zeros_like(W), np.zeros_like(b)
    for i in range(m):
        for h in range(n_H):
            for w in range(n_W):
                vs, hs = h * step, w * step
                a_slice = A_prev_pad[i, vs : vs + f, hs : hs + f, :]
                for c in range(n_C):
                    g = dZ[i, h, w, c]
                    filt = W[:, :, c, :] if swapped else W[:, :, :, c]
                    if mistake == "conv_dA_overwritten":
                        dA_prev_pad[i, vs : vs + f, hs : hs + f, :] = filt * g
                    else:
                        dA_prev_pad[i, vs : vs + f, hs : hs + f, :] += filt * g
                    if swapped:
                        dW[:, :, c, :] += a_slice * g
                    else:
                        dW[:, :, :, c] += a_slice * g
                    if mistake == "conv_db_not_summed":
                        db[:, :, :, c] = g
                    else:
                        db[:, :, :, c] += g
    dA_prev = dA_prev_pad
    if mistake != "conv_pad_not_cropped":
        dA_prev = dA_prev_pad[:, pad : pad + n_H_prev, pad : pad + n_W_prev, :]
    if mistake == "conv_1_over_m":
        dW, db = dW / m, db / m
    return {"dA_prev": dA_prev, "dW": dW, "db": db}


def pool_backward(dA, A_prev, f, stride, mode, mistake=None) -> dict[str, np.ndarray] | None:
    """The course's pool_backward loop with `mistake`; None when it does not apply to `mode`."""
    if mistake in ("pool_mask_not_used", "pool_max_as_average") and mode != "max":
        return None
    if mistake == "pool_average_not_divided" and mode != "average":
        return None
    m, n_H, n_W, n_C = dA.shape
    dA_prev = np.zeros_like(A_prev)
    for i in range(m):
        for h in range(n_H):
            for w in range(n_W):
                vs, hs = h * stride, w * stride
                for c in range(n_C):
                    window = A_prev[i, vs : vs + f, hs : hs + f, c]
                    g = dA[i, h, w, c]
                    if mistake == "pool_mask_not_used":
                        grad = np.full((f, f), g)
                    elif mode == "max" and mistake != "pool_max_as_average":
                        grad = (window == np.max(window)) * g
                    elif mistake == "pool_average_not_divided":
                        grad = np.full((f, f), g)
                    else:
                        grad = np.full((f, f), g / (f * f))
                    if mistake == "pool_overwritten":
                        dA_prev[i, vs : vs + f, hs : hs + f, c] = grad
                    else:
                        dA_prev[i, vs : vs + f, hs : hs + f, c] += grad
    return {"dA_prev": dA_prev}


# ------------------------------------------------------------------------------ RNN, LSTM


def rnn_backward(da, caches, mistake=None) -> dict[str, np.ndarray]:
    """The course's rnn_backward (and rnn_cell_backward) with `mistake`."""
    steps, x = caches
    p = steps[0][3]
    n_a, m, T_x = da.shape
    grads = {"dx": np.zeros_like(x), "dWax": np.zeros_like(p["Wax"]),
             "dWaa": np.zeros_like(p["Waa"]), "dba": np.zeros_like(p["ba"])}  # fmt: skip
    da_prevt = np.zeros((n_a, m))
    for t in reversed(range(T_x)):
        a_next, a_prev, xt, _ = steps[t]
        da_next = da[:, :, t] + (0 if mistake == "bptt_da_prev_not_carried" else da_prevt)
        if mistake == "rnn_tanh_derivative_at_a":
            dtanh = (1 - np.tanh(a_next) ** 2) * da_next
        else:
            dtanh = (1 - a_next**2) * da_next
        grads["dx"][:, :, t] = p["Wax"].T @ dtanh
        da_prevt = p["Waa"].T @ dtanh
        step = {"dWax": dtanh @ xt.T, "dWaa": dtanh @ a_prev.T,
                "dba": dtanh.sum(axis=1, keepdims=True)}  # fmt: skip
        for k, v in step.items():
            grads[k] = v if mistake == "bptt_not_accumulated" else grads[k] + v
    return grads | {"da0": da_prevt}


def lstm_backward(da, caches, mistake=None) -> dict[str, np.ndarray]:
    """The course's lstm_backward (and lstm_cell_backward) with `mistake`."""
    steps, x = caches
    p = steps[0][9]
    n_a, m, T_x = da.shape
    gates = ("f", "i", "c", "o")
    grads = {"dx": np.zeros_like(x)}
    grads |= {f"d{w}{g}": np.zeros_like(p[f"{w}{g}"]) for g in gates for w in "Wb"}
    da_prevt, dc_prevt = np.zeros((n_a, m)), np.zeros((n_a, m))
    for t in reversed(range(T_x)):
        _, c_next, a_prev, c_prev, ft, it, cct, ot, xt, _ = steps[t]
        da_next = da[:, :, t] + (0 if mistake == "bptt_da_prev_not_carried" else da_prevt)
        dc_next = 0 * dc_prevt if mistake == "lstm_dc_not_carried" else dc_prevt
        tanh_c = np.tanh(c_next)
        dc = dc_next + ot * (1 - tanh_c**2) * da_next  # what reaches c⟨t⟩
        d_pre = {
            "o": da_next * tanh_c * ot * (1 - ot),
            "c": dc * it * (1 - cct**2),
            "i": dc * cct * it * (1 - it),
            "f": dc * c_prev * ft * (1 - ft),
        }
        concat = np.concatenate([a_prev, xt])
        dconcat = np.sum([p[f"W{g}"].T @ d_pre[g] for g in gates], axis=0)
        da_prevt, dxt = dconcat[:n_a], dconcat[n_a:]
        dc_prevt = dc * ft
        grads["dx"][:, :, t] = dxt
        for g in gates:
            step = {f"dW{g}": d_pre[g] @ concat.T, f"db{g}": d_pre[g].sum(axis=1, keepdims=True)}
            for k, v in step.items():
                grads[k] = v if mistake == "bptt_not_accumulated" else grads[k] + v
    return grads | {"da0": da_prevt}
