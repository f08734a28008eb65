r"""Recurrent cells through time: one step of an RNN and an LSTM, forward and backward.

Examples are columns at every time step: x_t (n_x, m), a_t and c_t (n_a, m); a whole
sequence is (n, T, m), examples last. dz, da, dc are derivatives of *one example's*
loss L (no 1/m), as everywhere in manualgrad. docs/sequences.md derives every line.

**RNN** (the course's cell, any elementwise g; the course's g is tanh):

    (R1)  z_t = Waa a_{t-1} + Wax x_t + ba,     a_t = g(z_t)
    (5)   dz_t = (da_t + da_{t}^{→}) ⊙ g'(z_t)       da_t^{→} = Waaᵀ dz_{t+1}, from step t+1
    (4)   da_{t-1}^{→} = Waaᵀ dz_t,                  dx_t = Waxᵀ dz_t

where da_t is ∂L/∂a_t from above (the layer's output at step t, zero where nothing
reads it) and da_t^{→} what step t+1 sends back through Waa. A recurrent weight is
shared over the T steps, so its gradient is formula (2) summed over positions:
dWaa = (1/m) Σ_i Σ_t dz_t a_{t-1}ᵀ, dWax = (1/m) Σ_i Σ_t dz_t x_tᵀ — the engine's
products (A_prev_seq, dZ) and (X, dZ).

**LSTM** (the course's cell: gates on the stacked s_t = [a_{t-1}; x_t], (n_a + n_x, m)):

    (L1)  f = σ(Wf s_t + bf),  i = σ(Wi s_t + bi),  c̃ = tanh(Wc s_t + bc),  o = σ(Wo s_t + bo)
    (L2)  c_t = f ⊙ c_{t-1} + i ⊙ c̃
    (L3)  a_t = o ⊙ tanh(c_t)

and backward, with da = da_t + da_t^{→} and dc_t^{→} from step t+1:

    (L4)  dc = dc_t^{→} + da ⊙ o ⊙ (1 − tanh² c_t)
    (L5)  dz_o = da ⊙ tanh c_t ⊙ σ'(o),  dz_c = dc ⊙ i ⊙ tanh'(c̃),
          dz_i = dc ⊙ c̃ ⊙ σ'(i),        dz_f = dc ⊙ c_{t-1} ⊙ σ'(f)
    (L6)  dc_{t-1}^{→} = dc ⊙ f
    (4)   ds_t = Σ_g W_gᵀ dz_g = [da_{t-1}^{→}; dx_t]

σ' = a(1 − a) and tanh' = 1 − a² are read from the gate values (the activation records'
derivatives). Each gate weight W_g (n_a, n_a + n_x) is one product (S, dZ_g) with
S = [A_prev; X] (n_a + n_x, T, m).

**Stacked gates.** One matmul per step serves the four gates: W = [Wf; Wi; Wc; Wo]
(4 n_a, n_a + n_x) split by columns into W^a (4 n_a, n_a) and W^x (4 n_a, n_x), so
W s_t + b = W^a a_{t-1} + (W^x x_t + b). The input part u_t = W^x x_t + b (likewise
Wax x_t + ba for the RNN) does not depend on the recurrence and is computed for all
T steps in one matmul before the loop (:func:`input_part`); the loop over time is a
`lax.scan` of the cell.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from manualgrad._core import dense
from manualgrad._core.activations import ACTIVATIONS, Activation
from manualgrad._core.precision import matmul

Array = jax.Array

__all__ = [
    "LSTMGates",
    "input_part",
    "lstm_backward",
    "lstm_cell",
    "lstm_cell_backward",
    "lstm_forward",
    "rnn_backward",
    "rnn_cell",
    "rnn_cell_backward",
    "rnn_forward",
    "split_gates",
    "stack_gates",
]

SIGMOID = ACTIVATIONS["sigmoid"]
TANH = ACTIVATIONS["tanh"]
GATES = ("f", "i", "c", "o")  # the order of the stacked gates: forget, update, candidate, output


def _from_value(act: Activation, value: Array) -> Array:
    """g'(z) from the value a = g(z) alone: σ' = a(1 − a), tanh' = 1 − a² (these read only a)."""
    assert act.derivative is not None
    return act.derivative(value, value)


def input_part(W_x: Array, b: Array, X: Array, precision: str) -> Array:
    """u = W_x X + b: the part of a cell's pre-activation that does not depend on a_{t-1}.

    Shapes: W_x (k, n_x), b (k, 1), X (n_x, m) -> (k, m), or a sequence X (n_x, T, m) ->
    (k, T, m) (the same b at every step). RNN: Wax x_t + ba of (R1); LSTM: W^x x_t + b of (L1).
    """
    bias = b if X.ndim == 2 else b[:, :, None]
    return dense.linear_forward(
        W_x, bias, X, precision=precision
    )  # W x + b, as formula Z = W A + b


# --------------------------------------------------------------------------------------
# RNN
# --------------------------------------------------------------------------------------


def rnn_cell(
    Waa: Array, a_prev: Array, u_t: Array, g: Activation, precision: str
) -> tuple[Array, Array]:
    """(R1): z_t = Waa a_{t-1} + u_t with u_t = Wax x_t + ba, a_t = g(z_t). Shapes (n_a, m)."""
    z = matmul(Waa, a_prev, 1, 0, precision) + u_t  # (R1)
    return z, g.forward(z)  # (R1)


def rnn_cell_backward(
    da: Array, z: Array, a: Array, Waa: Array, g: Activation, precision: str
) -> tuple[Array, Array]:
    """(dz_t, da_{t-1}^{→}) from da = da_t + da_t^{→}: dz_t = da ⊙ g'(z_t) (5), Waaᵀ dz_t (4).

    Shapes: all (n_a, m). dx_t = Waxᵀ dz_t (4) is
    :func:`manualgrad._core.dense.prev_activation_grad` of Wax, done for all steps at once
    by the caller.
    """
    dz = dense.activation_backward(da, z, a, g)  # (5)
    return dz, dense.prev_activation_grad(Waa, dz, precision=precision)  # (4), through Waa


def rnn_forward(
    Waa: Array, U: Array, a0: Array, g: Activation, precision: str
) -> tuple[Array, Array]:
    """(Z, A), each (n_a, T, m): (R1) at every step, from U = Wax X + ba (n_a, T, m) and a0."""

    def step(a_prev, u_t):
        z, a = rnn_cell(Waa, a_prev, u_t, g, precision)  # (R1)
        return a, (z, a)

    _, (Z, A) = lax.scan(step, a0, jnp.moveaxis(U, 1, 0))
    return jnp.moveaxis(Z, 0, 1), jnp.moveaxis(A, 0, 1)


def rnn_backward(
    dA: Array, Z: Array, A: Array, Waa: Array, g: Activation, precision: str
) -> tuple[Array, Array]:
    """(dZ (n_a, T, m), da_0^{→} (n_a, m)): backpropagation through time, t = T … 1.

    `dA` is ∂L/∂a_t from above: (n_a, T, m) for a layer that returns its sequence, or
    (n_a, m), ∂L/∂a_T, for one that returns its last state. At each step (5) on
    da_t + da_t^{→}, then (4) through Waa to step t − 1.
    """
    if dA.ndim == 2:  # only a_T is read from above: da_T^{→} starts as dA, da_t = 0

        def last(da_next, za):
            z, a = za
            dz, da_prev = rnn_cell_backward(da_next, z, a, Waa, g, precision)  # (5), (4)
            return da_prev, dz

        da0, dZ = lax.scan(last, dA, (jnp.moveaxis(Z, 1, 0), jnp.moveaxis(A, 1, 0)), reverse=True)
        return jnp.moveaxis(dZ, 0, 1), da0

    def every(da_next, xs):
        da_t, z, a = xs
        dz, da_prev = rnn_cell_backward(da_t + da_next, z, a, Waa, g, precision)  # (5), (4)
        return da_prev, dz

    xs = tuple(jnp.moveaxis(x, 1, 0) for x in (dA, Z, A))
    da0, dZ = lax.scan(every, jnp.zeros_like(dA[:, 0]), xs, reverse=True)
    return jnp.moveaxis(dZ, 0, 1), da0


# --------------------------------------------------------------------------------------
# LSTM
# --------------------------------------------------------------------------------------


class LSTMGates(NamedTuple):
    """The gate values of one step, each (n_a, m) (or (n_a, T, m) for a sequence):
    forget f, update i, candidate c̃ and output o of (L1)."""

    f: Array
    i: Array
    c: Array
    o: Array


def stack_gates(parts: dict[str, Array]) -> Array:
    """[Wf; Wi; Wc; Wo] (or the biases) stacked on axis 0 in :data:`GATES` order."""
    return jnp.concatenate([parts[gate] for gate in GATES], axis=0)


def split_gates(stacked: Array) -> LSTMGates:
    """The inverse of :func:`stack_gates`: (4 n_a, …) -> four (n_a, …) blocks."""
    return LSTMGates(*jnp.split(stacked, 4, axis=0))


def lstm_cell(
    W_a: Array, a_prev: Array, c_prev: Array, u_t: Array, precision: str
) -> tuple[LSTMGates, Array, Array]:
    """(gates, c_t, a_t) of one step: (L1)–(L3). W_a (4 n_a, n_a), u_t = W^x x_t + b (4 n_a, m)."""
    pre = split_gates(matmul(W_a, a_prev, 1, 0, precision) + u_t)  # (L1): W s_t + b
    gates = LSTMGates(
        SIGMOID.forward(pre.f), SIGMOID.forward(pre.i), TANH.forward(pre.c), SIGMOID.forward(pre.o)
    )  # (L1)
    c = gates.f * c_prev + gates.i * gates.c  # (L2)
    a = gates.o * TANH.forward(c)  # (L3)
    return gates, c, a


def lstm_cell_backward(
    da: Array, dc_next: Array, gates: LSTMGates, c: Array, c_prev: Array
) -> tuple[Array, Array]:
    """(dZ_gates (4 n_a, m), dc_{t-1}^{→}) from da = da_t + da_t^{→} and dc_next = dc_t^{→}.

    (L4)–(L6); the stacked dZ = [dz_f; dz_i; dz_c; dz_o] feeds (4), ds_t = Wᵀ dZ, and the
    products of the four gate weights.
    """
    tanh_c = TANH.forward(c)
    dc = dc_next + da * gates.o * _from_value(TANH, tanh_c)  # (L4)
    dz = LSTMGates(
        f=dc * c_prev * _from_value(SIGMOID, gates.f),  # (L5)
        i=dc * gates.c * _from_value(SIGMOID, gates.i),  # (L5)
        c=dc * gates.i * _from_value(TANH, gates.c),  # (L5)
        o=da * tanh_c * _from_value(SIGMOID, gates.o),  # (L5)
    )
    return jnp.concatenate(dz, axis=0), dc * gates.f  # (L6)


def lstm_forward(
    W_a: Array, U: Array, a0: Array, c0: Array, precision: str
) -> tuple[LSTMGates, Array, Array]:
    """(gates, C, A) for every step, each (n_a, T, m): (L1)–(L3) from U = W^x X + b.

    Shapes: W_a (4 n_a, n_a), U (4 n_a, T, m), a0 and c0 (n_a, m).
    """

    def step(carry, u_t):
        a_prev, c_prev = carry
        gates, c, a = lstm_cell(W_a, a_prev, c_prev, u_t, precision)  # (L1)–(L3)
        return (a, c), (gates, c, a)

    _, (gates, C, A) = lax.scan(step, (a0, c0), jnp.moveaxis(U, 1, 0))
    return (
        LSTMGates(*(jnp.moveaxis(x, 0, 1) for x in gates)),
        jnp.moveaxis(C, 0, 1),
        jnp.moveaxis(A, 0, 1),
    )


def lstm_backward(
    dA: Array, gates: LSTMGates, C: Array, c0: Array, W_a: Array, precision: str
) -> tuple[Array, Array, Array]:
    """(dZ (4 n_a, T, m), da_0^{→}, dc_0^{→}): backpropagation through time, t = T … 1.

    `dA` as for :func:`rnn_backward`. At each step (L4)–(L6) on da_t + da_t^{→}, then
    (4) through W^a: da_{t-1}^{→} = W^aᵀ dZ_t.
    """
    C_prev = jnp.concatenate([c0[:, None], C[:, :-1]], axis=1)
    seq = tuple(jnp.moveaxis(x, 1, 0) for x in (*gates, C, C_prev))
    many = dA.ndim == 3
    xs = (jnp.moveaxis(dA, 1, 0), *seq) if many else seq

    def step(carry, x):
        da_next, dc_next = carry
        da = x[0] + da_next if many else da_next
        f, i, c_bar, o, c, c_prev = x[1:] if many else x
        dz, dc_prev = lstm_cell_backward(da, dc_next, LSTMGates(f, i, c_bar, o), c, c_prev)
        da_prev = dense.prev_activation_grad(W_a, dz, precision=precision)  # (4), through W^a
        return (da_prev, dc_prev), dz

    zeros = jnp.zeros_like(c0)
    start = (zeros, zeros) if many else (dA, zeros)
    (da0, dc0), dZ = lax.scan(step, start, xs, reverse=True)
    return jnp.moveaxis(dZ, 0, 1), da0, dc0
