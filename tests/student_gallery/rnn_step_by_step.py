"""Student code for "Building a Recurrent Neural Network - Step by Step" (course 5, week 1),
the backward part.

`rnn_backward(da, caches)` and `lstm_backward(da, caches)` with the notebook's caches and
layout (x (n_x, m, T_x)); the other versions each carry one mistake students make. Checked
with `manualgrad check --against FILE.py:rnn_backward`.
"""

# student code: the course's unpacking of whole caches is kept as written
# ruff: noqa: RUF059, SIM108

import numpy as np


def rnn_cell_backward(da_next, cache, tanh_twice=False):
    (a_next, a_prev, xt, parameters) = cache
    Wax, Waa = parameters["Wax"], parameters["Waa"]
    if tanh_twice:
        dtanh = (1 - np.tanh(a_next) ** 2) * da_next
    else:
        dtanh = (1 - a_next**2) * da_next
    dxt = np.dot(Wax.T, dtanh)
    dWax = np.dot(dtanh, xt.T)
    da_prev = np.dot(Waa.T, dtanh)
    dWaa = np.dot(dtanh, a_prev.T)
    dba = np.sum(dtanh, axis=1, keepdims=True)
    return {"dxt": dxt, "da_prev": da_prev, "dWax": dWax, "dWaa": dWaa, "dba": dba}


def _rnn_backward(da, caches, carry=True, accumulate=True, tanh_twice=False):
    (caches, x) = caches
    (a1, a0, x1, parameters) = caches[0]
    n_a, m, T_x = da.shape
    n_x, m = x1.shape
    dx = np.zeros((n_x, m, T_x))
    dWax = np.zeros((n_a, n_x))
    dWaa = np.zeros((n_a, n_a))
    dba = np.zeros((n_a, 1))
    da_prevt = np.zeros((n_a, m))
    for t in reversed(range(T_x)):
        da_next = da[:, :, t] + da_prevt if carry else da[:, :, t]
        gradients = rnn_cell_backward(da_next, caches[t], tanh_twice)
        dxt, da_prevt = gradients["dxt"], gradients["da_prev"]
        dx[:, :, t] = dxt
        if accumulate:
            dWax += gradients["dWax"]
            dWaa += gradients["dWaa"]
            dba += gradients["dba"]
        else:
            dWax, dWaa, dba = gradients["dWax"], gradients["dWaa"], gradients["dba"]
    da0 = da_prevt
    return {"dx": dx, "da0": da0, "dWax": dWax, "dWaa": dWaa, "dba": dba}


def rnn_backward(da, caches):
    return _rnn_backward(da, caches)


def rnn_backward_not_accumulated(da, caches):
    """dWax = … inside the loop: the weights' gradient of the last step computed (t = 0)."""
    return _rnn_backward(da, caches, accumulate=False)


def rnn_backward_not_carried(da, caches):
    """rnn_cell_backward(da[:, :, t], …): the da_prev of the step after it left out."""
    return _rnn_backward(da, caches, carry=False)


def rnn_backward_tanh_twice(da, caches):
    """dtanh = (1 - tanh(a_next)²) da_next: tanh applied to a_next again."""
    return _rnn_backward(da, caches, tanh_twice=True)


def lstm_cell_backward(da_next, dc_next, cache):
    (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters) = cache
    n_x, m = xt.shape
    n_a, m = a_next.shape
    tanh_c = np.tanh(c_next)
    dot = da_next * tanh_c * ot * (1 - ot)
    dcct = (dc_next * it + ot * (1 - tanh_c**2) * it * da_next) * (1 - cct**2)
    dit = (dc_next * cct + ot * (1 - tanh_c**2) * cct * da_next) * it * (1 - it)
    dft = (dc_next * c_prev + ot * (1 - tanh_c**2) * c_prev * da_next) * ft * (1 - ft)
    concat = np.concatenate((a_prev, xt), axis=0)
    dWf, dWi = np.dot(dft, concat.T), np.dot(dit, concat.T)
    dWc, dWo = np.dot(dcct, concat.T), np.dot(dot, concat.T)
    dbf = np.sum(dft, axis=1, keepdims=True)
    dbi = np.sum(dit, axis=1, keepdims=True)
    dbc = np.sum(dcct, axis=1, keepdims=True)
    dbo = np.sum(dot, axis=1, keepdims=True)
    Wf, Wi, Wc, Wo = (parameters[k] for k in ("Wf", "Wi", "Wc", "Wo"))
    da_prev = (np.dot(Wf[:, :n_a].T, dft) + np.dot(Wi[:, :n_a].T, dit)
               + np.dot(Wc[:, :n_a].T, dcct) + np.dot(Wo[:, :n_a].T, dot))  # fmt: skip
    dc_prev = dc_next * ft + ot * (1 - tanh_c**2) * ft * da_next
    dxt = (np.dot(Wf[:, n_a:].T, dft) + np.dot(Wi[:, n_a:].T, dit)
           + np.dot(Wc[:, n_a:].T, dcct) + np.dot(Wo[:, n_a:].T, dot))  # fmt: skip
    return {"dxt": dxt, "da_prev": da_prev, "dc_prev": dc_prev, "dWf": dWf, "dbf": dbf,
            "dWi": dWi, "dbi": dbi, "dWc": dWc, "dbc": dbc, "dWo": dWo, "dbo": dbo}  # fmt: skip


def _lstm_backward(da, caches, carry_c=True, accumulate=True):
    (caches, x) = caches
    (a1, c1, a0, c0, f1, i1, cc1, o1, x1, parameters) = caches[0]
    n_a, m, T_x = da.shape
    n_x, m = x1.shape
    dx = np.zeros((n_x, m, T_x))
    da_prevt = np.zeros((n_a, m))
    dc_prevt = np.zeros((n_a, m))
    grads = {k: np.zeros((n_a, n_a + n_x)) for k in ("dWf", "dWi", "dWc", "dWo")}
    grads |= {k: np.zeros((n_a, 1)) for k in ("dbf", "dbi", "dbc", "dbo")}
    for t in reversed(range(T_x)):
        dc_next = dc_prevt if carry_c else np.zeros((n_a, m))
        gradients = lstm_cell_backward(da[:, :, t] + da_prevt, dc_next, caches[t])
        da_prevt, dc_prevt = gradients["da_prev"], gradients["dc_prev"]
        dx[:, :, t] = gradients["dxt"]
        for k in grads:
            grads[k] = grads[k] + gradients[k] if accumulate else gradients[k]
    return {"dx": dx, "da0": da_prevt, **grads}


def lstm_backward(da, caches):
    return _lstm_backward(da, caches)


def lstm_backward_dc_not_carried(da, caches):
    """lstm_cell_backward(…, np.zeros((n_a, m)), …) at every step: dc_prev dropped."""
    return _lstm_backward(da, caches, carry_c=False)


def lstm_backward_not_accumulated(da, caches):
    """The gates' weight gradients of one step only."""
    return _lstm_backward(da, caches, accumulate=False)
