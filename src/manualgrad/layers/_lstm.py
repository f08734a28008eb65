r"""`LSTM(units)`: the course's LSTM cell through time, with its formulas side by side.

Sequences are laid out (n_x, T, m), examples last; `net.init` gets one example's
shape (n_x, T). The states start at a_0 = c_0 = 0. Each gate g ∈ {f, i, c, o} has a
weight W_g (n_a, n_a + n_x) acting on the stacked s_t = [a_{t-1}; x_t] and a bias
b_g (n_a, 1), as in the course:

| symbol          | shape              | meaning                                         |
|-----------------|--------------------|-------------------------------------------------|
| `Wf`, `bf`      | (n_a, n_a + n_x), (n_a, 1) | forget gate f = σ(Wf s_t + bf)          |
| `Wi`, `bi`      | as Wf, bf          | update gate i = σ(Wi s_t + bi)                  |
| `Wc`, `bc`      | as Wf, bf          | candidate c̃ = tanh(Wc s_t + bc)                |
| `Wo`, `bo`      | as Wf, bf          | output gate o = σ(Wo s_t + bo)                  |
| `X`             | (n_x, T, m)        | the input sequences                             |
| output          | (n_a, T, m) or (n_a, m) | every a_t, or a_T                          |

    c_t = f ⊙ c_{t-1} + i ⊙ c̃,  a_t = o ⊙ tanh(c_t)                       (L1)–(L3)
    BPTT: (L4)–(L6) and (4) through the recurrent columns, t = T … 1
    dX = W^xᵀ dZ                                                           (4), all steps
    (S, dZ_g) for each gate, S = [A_prev; X] (n_a + n_x, T, m)             → (2), (1)

so each gate weight is one product over the T steps and every extension of the engine
applies unchanged. See :mod:`manualgrad._core.recurrent` and docs/sequences.md.

>>> import jax, manualgrad as mg
>>> net = mg.network([mg.layers.LSTM(4), mg.layers.Dense(1, activation="sigmoid")])
>>> params = net.init((3, 6), jax.random.key(0))  # one sequence: n_x = 3, T = 6
>>> params["Wf1"].shape, params["bf1"].shape
((4, 7), (4, 1))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from manualgrad._core import dense, recurrent
from manualgrad._core.layer import Layer, Params, Product, Shape
from manualgrad._core.validation import check_layer_int
from manualgrad.layers._dense import INIT_SCALES, check_init_method
from manualgrad.layers._rnn import check_sequence, check_sequences, previous_states

Array = jax.Array

__all__ = ["LSTM", "LSTMCache"]


class LSTMCache(NamedTuple):
    """What an LSTM layer's backward needs: X (n_x, T, m), the gates, C and A (n_a, T, m)."""

    X: Array
    gates: recurrent.LSTMGates
    C: Array
    A: Array


@dataclass(frozen=True)
class LSTM(Layer):
    """A long short-term memory layer of `units` units, the course's cell, a_0 = c_0 = 0.

    | argument           | meaning                                                      |
    |--------------------|--------------------------------------------------------------|
    | `units`            | n_a, the size of the hidden and cell states                  |
    | `return_sequences` | True: output every a_t, (n_a, T, m); False: a_T, (n_a, m)     |
    | `init_method`      | "xavier" (√(1/(n_a + n_x))), "he", "random", "zeros"          |

    Params: "Wf", "Wi", "Wc", "Wo" (n_a, n_a + n_x) and "bf", "bi", "bc", "bo" (n_a, 1);
    the network names them "Wf{l}", "bf{l}", …. The forget bias starts at bf = 1 (the
    cell keeps its memory at first; Jozefowicz et al. 2015), the other biases at 0.
    """

    units: int
    _: KW_ONLY
    return_sequences: bool = False
    init_method: str = "xavier"

    def __post_init__(self) -> None:
        check_layer_int("LSTM", "units", self.units)
        check_init_method("LSTM", self.init_method)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(f"{kind}{gate}" for gate in recurrent.GATES for kind in ("W", "b"))

    @property
    def name(self) -> str:
        return f"LSTM({self.units}, return_sequences={self.return_sequences})"

    def init(self, key: Array, in_shape: Shape, dtype: Any) -> tuple[Params, Shape]:
        """W_g ~ N(0, s(n_a + n_x)²) with s from the init method; bf = 1, bi = bc = bo = 0."""
        n_x, T = check_sequence(self.name, tuple(in_shape))
        n_a = self.units
        scale = INIT_SCALES[self.init_method](n_a + n_x)
        params: Params = {}
        for gate, k in zip(recurrent.GATES, jax.random.split(key, 4), strict=True):
            params[f"W{gate}"] = jax.random.normal(k, (n_a, n_a + n_x), dtype) * scale
            fill = 1.0 if gate == "f" else 0.0
            params[f"b{gate}"] = jnp.full((n_a, 1), fill, dtype)
        return params, (n_a, T) if self.return_sequences else (n_a,)

    def _stacked(self, params: Mapping[str, Array]) -> tuple[Array, Array, Array]:
        """(W^a (4 n_a, n_a), W^x (4 n_a, n_x), b (4 n_a, 1)): the gates stacked, W split."""
        W = recurrent.stack_gates({g: params[f"W{g}"] for g in recurrent.GATES})
        b = recurrent.stack_gates({g: params[f"b{g}"] for g in recurrent.GATES})
        n_a = self.units
        return W[:, :n_a], W[:, n_a:], b

    def forward(
        self, params: Mapping[str, Array], A_prev: Array, precision: str
    ) -> tuple[Array, LSTMCache]:
        """(L1)–(L3) at every step by a scan; output A (n_a, T, m) or a_T (n_a, m)."""
        W_a, W_x, b = self._stacked(params)
        check_sequences(self.name, W_x.shape[1], A_prev)
        U = recurrent.input_part(W_x, b, A_prev, precision)  # W^x x_t + b of (L1), every t
        zeros = jnp.zeros((self.units, A_prev.shape[2]), A_prev.dtype)
        gates, C, A = recurrent.lstm_forward(W_a, U, zeros, zeros, precision)  # (L1)–(L3)
        out = A if self.return_sequences else A[:, -1]
        return out, LSTMCache(A_prev, gates, C, A)

    def backward(
        self,
        params: Mapping[str, Array],
        cache: LSTMCache,
        dA: Array,
        precision: str,
        need_dA_prev: bool = True,
    ) -> tuple[Array | None, tuple[Product, ...]]:
        """BPTT (L4)–(L6), (4) by a reverse scan; dX = W^xᵀ dZ (4); one product per gate.

        Shapes: dA (n_a, T, m) or (n_a, m) (∂L/∂a_T) -> dX (n_x, T, m); each product's
        A = S = [A_prev; X] (n_a + n_x, T, m) and dZ_g (n_a, T, m).
        """
        W_a, W_x, _ = self._stacked(params)
        zeros = jnp.zeros_like(cache.A[:, 0])
        dZ, _, _ = recurrent.lstm_backward(dA, cache.gates, cache.C, zeros, W_a, precision)
        dX = dense.prev_activation_grad(W_x, dZ, precision=precision) if need_dA_prev else None
        S = jnp.concatenate([previous_states(zeros, cache.A), cache.X], axis=0)  # [a_{t-1}; x_t]
        dZ_gates = recurrent.split_gates(dZ)
        products = tuple(
            Product(f"W{gate}", f"b{gate}", S, dz)
            for gate, dz in zip(recurrent.GATES, dZ_gates, strict=True)
        )
        return dX, products
