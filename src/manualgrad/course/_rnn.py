r"""The course's "Building a Recurrent Neural Network – Step by Step" (C5W1A1), in jax.numpy.

Each function has the notebook's name, arguments, return values, cache layout and
gradient keys; the arithmetic is the same cell functions the layers `mg.layers.RNN`
and `mg.layers.LSTM` use (:mod:`manualgrad._core.recurrent`), not a second copy.

| course function                               | returns                              | core      |
|-----------------------------------------------|--------------------------------------|-----------|
| `rnn_cell_forward(xt, a_prev, parameters)`    | a_next, yt_pred, cache (4 items)     | (R1)      |
| `rnn_forward(x, a0, parameters)`              | a, y_pred, (caches, x)               | (R1)      |
| `lstm_cell_forward(xt, a_prev, c_prev, p)`    | a_next, c_next, yt_pred, cache (10)  | (L1)–(L3) |
| `lstm_forward(x, a0, parameters)`             | a, y, c, (caches, x)                 | (L1)–(L3) |
| `rnn_cell_backward(da_next, cache)`           | {dxt, da_prev, dWax, dWaa, dba}      | (5)(4)(2) |
| `rnn_backward(da, caches)`                    | {dx, da0, dWax, dWaa, dba}           | BPTT      |
| `lstm_cell_backward(da_next, dc_next, cache)` | {dxt, da_prev, dc_prev, dWf, dbf, …} | (L4)–(L6) |
| `lstm_backward(da, caches)`                   | {dx, da0, dWf, dbf, …}               | BPTT      |

The course's layout: x (n_x, m, T_x) — time on the *last* axis here, as in the
notebook (the layers take (n_x, T, m)); Wax (n_a, n_x), Waa (n_a, n_a), Wya (n_y, n_a),
ba (n_a, 1), by (n_y, 1); the LSTM's Wf, Wi, Wc, Wo (n_a, n_a + n_x) on the stacked
[a_prev; xt], with bf, bi, bc, bo (n_a, 1) and Wy, by. yt_pred = softmax(Wya a + by).
The weight gradients are **sums over the m examples** (formula (2) without its 1/m),
as the notebook's `dba = np.sum(..., axis=1, keepdims=True)`; da is the upstream
gradient of every hidden state, and `rnn_backward` and `lstm_backward` run over the
T_x steps of `da` (the notebook's `n_a, m, T_x = da.shape`). The cell backwards do not
include the loss at y⟨t⟩, as the notebook's do not. Outputs are JAX arrays; run with
float64 on (`jax.enable_x64`) to reproduce the notebook's printed digits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from manualgrad._core import dense, recurrent
from manualgrad._core.activations import ACTIVATIONS, softmax
from manualgrad.course._arrays import as_float

Array = jax.Array
Params = Mapping[str, Any]

__all__ = [
    "lstm_backward",
    "lstm_cell_backward",
    "lstm_cell_forward",
    "lstm_forward",
    "rnn_backward",
    "rnn_cell_backward",
    "rnn_cell_forward",
    "rnn_forward",
]

TANH = ACTIVATIONS["tanh"]
PRECISION = "default"
_GRADS = ("dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo")


def _p(parameters: Params, *names: str) -> list[Array]:
    return [as_float(parameters[name], name) for name in names]


def _prediction(W: Array, b: Array, a: Array) -> Array:
    """yt_pred = softmax(W a + b) over the classes (axis 0)."""
    return softmax(dense.linear_forward(W, b, a, precision=PRECISION))


def _over_time(steps: Sequence[Array]) -> Array:
    """Per-step arrays (n, m) stacked on the last axis: (n, m, T_x), the course's layout."""
    return jnp.stack(steps, axis=-1)


# --------------------------------------------------------------------------------------
# RNN
# --------------------------------------------------------------------------------------


def rnn_cell_forward(xt: Any, a_prev: Any, parameters: Params) -> tuple[Array, Array, tuple]:
    """a_next = tanh(Waa a_prev + Wax xt + ba) (R1), yt_pred = softmax(Wya a_next + by).

    Shapes: xt (n_x, m), a_prev (n_a, m) -> a_next (n_a, m), yt_pred (n_y, m); cache
    (a_next, a_prev, xt, parameters).
    """
    xt, a_prev = as_float(xt, "xt"), as_float(a_prev, "a_prev")
    Wax, Waa, Wya, ba, by = _p(parameters, "Wax", "Waa", "Wya", "ba", "by")
    u = recurrent.input_part(Wax, ba, xt, PRECISION)  # Wax xt + ba
    _, a_next = recurrent.rnn_cell(Waa, a_prev, u, TANH, PRECISION)  # (R1)
    return a_next, _prediction(Wya, by, a_next), (a_next, a_prev, xt, parameters)


def rnn_forward(x: Any, a0: Any, parameters: Params) -> tuple[Array, Array, tuple]:
    """:func:`rnn_cell_forward` at every step t of x (n_x, m, T_x), from a0 (n_a, m).

    Returns a (n_a, m, T_x), y_pred (n_y, m, T_x) and caches = (list of cell caches, x).
    """
    x = as_float(x, "x")
    a_next, states, preds, caches = as_float(a0, "a0"), [], [], []
    for t in range(x.shape[2]):
        a_next, yt_pred, cache = rnn_cell_forward(x[:, :, t], a_next, parameters)
        states.append(a_next)
        preds.append(yt_pred)
        caches.append(cache)
    return _over_time(states), _over_time(preds), (caches, x)


def rnn_cell_backward(da_next: Any, cache: tuple) -> dict[str, Array]:
    """One step back: dz = da_next ⊙ (1 − a_next²) (5), dxt = Waxᵀ dz and da_prev = Waaᵀ dz
    (4), dWax = dz xtᵀ, dWaa = dz a_prevᵀ, dba = Σ_i dz (2) summed over the examples.

    Returns {"dxt", "da_prev", "dWax", "dWaa", "dba"}.
    """
    a_next, a_prev, xt, parameters = cache
    Wax, Waa, ba = _p(parameters, "Wax", "Waa", "ba")
    z, _ = recurrent.rnn_cell(
        Waa, a_prev, recurrent.input_part(Wax, ba, xt, PRECISION), TANH, PRECISION
    )
    dz, da_prev = recurrent.rnn_cell_backward(
        as_float(da_next, "da_next"), z, a_next, Waa, TANH, PRECISION
    )  # (5), (4)
    return {
        "dxt": dense.prev_activation_grad(Wax, dz, precision=PRECISION),  # (4)
        "da_prev": da_prev,
        "dWax": dense.weight_grad(dz, xt, precision=PRECISION, m=1),  # (2), no 1/m
        "dWaa": dense.weight_grad(dz, a_prev, precision=PRECISION, m=1),  # (2), no 1/m
        "dba": dense.bias_grad(dz, m=1),  # (2), no 1/m
    }


def rnn_backward(da: Any, caches: tuple) -> dict[str, Array]:
    """Backpropagation through time: :func:`rnn_cell_backward` at t = T_x … 1 on
    da⟨t⟩ + da_prev⟨t+1⟩, the weights' gradients summed over the steps.

    Shapes: da (n_a, m, T_x) -> {"dx" (n_x, m, T_x), "da0" (n_a, m), "dWax", "dWaa", "dba"}.
    """
    da = as_float(da, "da")
    cells, _ = caches
    da_prevt = jnp.zeros_like(da[:, :, 0])
    dx: list[Array] = []
    total: dict[str, Any] = {"dWax": 0, "dWaa": 0, "dba": 0}
    for t in reversed(range(da.shape[2])):
        grads = rnn_cell_backward(da[:, :, t] + da_prevt, cells[t])
        da_prevt = grads["da_prev"]
        dx.append(grads["dxt"])
        total = {k: v + grads[k] for k, v in total.items()}  # Σ_t of (2)
    return {"dx": _over_time(dx[::-1]), "da0": da_prevt, **total}


# --------------------------------------------------------------------------------------
# LSTM
# --------------------------------------------------------------------------------------


def _stacked(parameters: Params, n_a: int) -> tuple[Array, Array, Array]:
    """(W^a, W^x, b): the course's Wf, Wi, Wc, Wo stacked, split by the columns [a_prev; xt]."""
    W = recurrent.stack_gates({g: as_float(parameters[f"W{g}"], f"W{g}") for g in recurrent.GATES})
    b = recurrent.stack_gates({g: as_float(parameters[f"b{g}"], f"b{g}") for g in recurrent.GATES})
    return W[:, :n_a], W[:, n_a:], b


def lstm_cell_forward(
    xt: Any, a_prev: Any, c_prev: Any, parameters: Params
) -> tuple[Array, Array, Array, tuple]:
    """The gates (L1), c_next (L2), a_next (L3) and yt_pred = softmax(Wy a_next + by).

    Shapes: xt (n_x, m), a_prev and c_prev (n_a, m). The cache is the course's
    (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters).
    """
    xt, a_prev, c_prev = as_float(xt, "xt"), as_float(a_prev, "a_prev"), as_float(c_prev, "c_prev")
    W_a, W_x, b = _stacked(parameters, a_prev.shape[0])
    u = recurrent.input_part(W_x, b, xt, PRECISION)
    gates, c_next, a_next = recurrent.lstm_cell(W_a, a_prev, c_prev, u, PRECISION)  # (L1)–(L3)
    Wy, by = _p(parameters, "Wy", "by")
    cache = (a_next, c_next, a_prev, c_prev, *gates, xt, parameters)
    return a_next, c_next, _prediction(Wy, by, a_next), cache


def lstm_forward(x: Any, a0: Any, parameters: Params) -> tuple[Array, Array, Array, tuple]:
    """:func:`lstm_cell_forward` at every step of x (n_x, m, T_x), from a0 and c0 = 0.

    Returns a (n_a, m, T_x), y (n_y, m, T_x), c (n_a, m, T_x) and (list of caches, x).
    """
    x = as_float(x, "x")
    a_next = as_float(a0, "a0")
    c_next = jnp.zeros_like(a_next)
    states, preds, cells, caches = [], [], [], []
    for t in range(x.shape[2]):
        a_next, c_next, yt, cache = lstm_cell_forward(x[:, :, t], a_next, c_next, parameters)
        states.append(a_next)
        preds.append(yt)
        cells.append(c_next)
        caches.append(cache)
    return _over_time(states), _over_time(preds), _over_time(cells), (caches, x)


def lstm_cell_backward(da_next: Any, dc_next: Any, cache: tuple) -> dict[str, Array]:
    """One step back: (L4)–(L6) for the gates, ds = Σ_g W_gᵀ dz_g (4) split into da_prev
    and dxt, dW_g = dz_g [a_prev; xt]ᵀ and db_g = Σ_i dz_g (2) summed over the examples.

    Returns {"dxt", "da_prev", "dc_prev", "dWf", "dbf", "dWi", "dbi", "dWc", "dbc",
    "dWo", "dbo"}.
    """
    a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters = cache
    n_a = a_next.shape[0]
    gates = recurrent.LSTMGates(ft, it, cct, ot)
    dz, dc_prev = recurrent.lstm_cell_backward(
        as_float(da_next, "da_next"), as_float(dc_next, "dc_next"), gates, c_next, c_prev
    )  # (L4)–(L6)
    W_a, W_x, _ = _stacked(parameters, n_a)
    ds = dense.prev_activation_grad(
        jnp.concatenate([W_a, W_x], axis=1), dz, precision=PRECISION
    )  # (4): Σ_g W_gᵀ dz_g = [da_prev; dxt]
    s = jnp.concatenate([a_prev, xt], axis=0)  # [a_prev; xt]
    grads = {"dxt": ds[n_a:], "da_prev": ds[:n_a], "dc_prev": dc_prev}
    for g, dz_g in zip(recurrent.GATES, recurrent.split_gates(dz), strict=True):
        grads[f"dW{g}"] = dense.weight_grad(dz_g, s, precision=PRECISION, m=1)  # (2), no 1/m
        grads[f"db{g}"] = dense.bias_grad(dz_g, m=1)  # (2), no 1/m
    return grads


def lstm_backward(da: Any, caches: tuple) -> dict[str, Array]:
    """Backpropagation through time: :func:`lstm_cell_backward` at t = T_x … 1 on
    da⟨t⟩ + da_prev⟨t+1⟩ and dc_prev⟨t+1⟩, the weights' gradients summed over the steps.

    Shapes: da (n_a, m, T_x) -> {"dx" (n_x, m, T_x), "da0" (n_a, m), "dWf", "dbf", …}.
    """
    da = as_float(da, "da")
    cells, _ = caches
    da_prevt = jnp.zeros_like(da[:, :, 0])
    dc_prevt = jnp.zeros_like(da_prevt)
    dx: list[Array] = []
    total: dict[str, Any] = dict.fromkeys(_GRADS, 0)
    for t in reversed(range(da.shape[2])):
        grads = lstm_cell_backward(da[:, :, t] + da_prevt, dc_prevt, cells[t])
        da_prevt, dc_prevt = grads["da_prev"], grads["dc_prev"]
        dx.append(grads["dxt"])
        total = {k: v + grads[k] for k, v in total.items()}  # Σ_t of (2)
    return {"dx": _over_time(dx[::-1]), "da0": da_prevt, **total}
