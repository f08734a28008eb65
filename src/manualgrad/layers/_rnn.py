r"""`RNN(units)`: the course's recurrent cell through time, with its formulas side by side.

Sequences are laid out (n_x, T, m), examples last; `net.init` gets one example's
shape (n_x, T). The hidden state starts at a_0 = 0.

| symbol | shape          | meaning                                               |
|--------|----------------|-------------------------------------------------------|
| `Wax`  | (n_a, n_x)     | input weights                                         |
| `Waa`  | (n_a, n_a)     | recurrent weights                                     |
| `ba`   | (n_a, 1)       | bias                                                  |
| `X`    | (n_x, T, m)    | the input sequences                                   |
| `Z, A` | (n_a, T, m)    | pre-activations and hidden states a_1 … a_T           |
| output | (n_a, T, m) or (n_a, m) | every a_t (`return_sequences=True`) or a_T   |

Forward and backward are :mod:`manualgrad._core.recurrent`'s:

    z_t = Waa a_{t-1} + Wax x_t + ba,  a_t = g(z_t)           (R1), a lax.scan over t
    dz_t = (da_t + Waaᵀ dz_{t+1}) ⊙ g'(z_t)                     (5) and (4), t = T … 1
    dX = Waxᵀ dZ                                                (4), all steps at once
    (X, dZ) for Wax and ba, (A_prev, dZ) for Waa, T positions   → (2) and (1) in the engine

with A_prev = [a_0, a_1, …, a_{T-1}]: each recurrent weight is one product over the
T steps, so per-example gradients, norms (from the T×T Gram where cheaper), clipping,
DP, Σg², variance and the diagonal GGN come from the engine with no code here. See
docs/sequences.md.

>>> import jax, manualgrad as mg
>>> net = mg.network([mg.layers.RNN(4), mg.layers.Dense(1, activation="sigmoid")])
>>> params = net.init((3, 6), jax.random.key(0))  # one sequence: n_x = 3, T = 6
>>> {k: v.shape for k, v in params.items()}
{'Wax1': (4, 3), 'Waa1': (4, 4), 'ba1': (4, 1), 'W2': (1, 4), 'b2': (1, 1)}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from manualgrad._core import dense, recurrent
from manualgrad._core.activations import HIDDEN_ACTIVATIONS, Activation, get_activation
from manualgrad._core.layer import Layer, Params, Product, Shape
from manualgrad._core.validation import check_layer_int
from manualgrad._errors import ConfigError, ShapeError
from manualgrad.layers._dense import INIT_SCALES, check_activation, check_init_method

Array = jax.Array

__all__ = ["RNN", "RNNCache", "check_sequence", "check_sequences", "previous_states"]


def check_sequence(layer: str, in_shape: Shape) -> tuple[int, int]:
    """(n_x, T) of one example's input shape, or a ShapeError: a sequence (n_x, T), T ≥ 1."""
    if len(in_shape) != 2:
        raise ShapeError(
            f"{layer} takes sequences, one example of shape (n_x, T), but its input has shape "
            f"{tuple(in_shape)}: give net.init one sequence's shape (n_x, T) and pass X as "
            "(n_x, T, m), examples last"
        )
    n_x, T = in_shape
    if n_x < 1:
        raise ShapeError(
            f"{layer} got sequences of n_x = {n_x} features (one example's shape "
            f"{tuple(in_shape)}): each time step needs at least one feature"
        )
    if T < 1:
        raise ShapeError(
            f"{layer} got sequences of T = {T} time steps (one example's shape "
            f"{tuple(in_shape)}): a recurrent layer needs T ≥ 1 — drop empty sequences, or "
            "pad them to at least one step"
        )
    return n_x, T


def check_sequences(layer: str, n_x: int, X: Array) -> None:
    """Raise a ShapeError unless X is a batch of sequences (n_x, T, m) with the params' n_x."""
    if X.ndim != 3 or X.shape[0] != n_x:
        hint = (
            " — examples first, (m, T, n_x)? use jnp.transpose(X, (2, 1, 0))"
            if X.ndim == 3 and X.shape[2] == n_x
            else " — build the params with net.init((n_x, T), key) for these sequences"
            if X.ndim == 3
            else ""
        )
        raise ShapeError(
            f"{layer}: expected sequences (n_x, T, m) with n_x = {n_x} features (the input "
            f"weights' columns), got shape {tuple(X.shape)}{hint}"
        )


def previous_states(a0: Array, A: Array) -> Array:
    """A_prev = [a_0, a_1, …, a_{T-1}] (n_a, T, m): the state each step's recurrent weight reads."""
    return jnp.concatenate([a0[:, None], A[:, :-1]], axis=1)


class RNNCache(NamedTuple):
    """What an RNN layer's backward needs: X (n_x, T, m), Z and A (n_a, T, m)."""

    X: Array
    Z: Array
    A: Array


@dataclass(frozen=True)
class RNN(Layer):
    """A recurrent layer of `units` units: a_t = g(Waa a_{t-1} + Wax x_t + ba), a_0 = 0.

    | argument           | meaning                                                     |
    |--------------------|-------------------------------------------------------------|
    | `units`            | n_a, the size of the hidden state                           |
    | `activation`       | g, an elementwise activation ("tanh", the course's)          |
    | `return_sequences` | True: output every a_t, (n_a, T, m); False: a_T, (n_a, m)    |
    | `init_method`      | "xavier" (√(1/n_in) for Wax and Waa), "he", "random", "zeros" |

    Params: "Wax" (n_a, n_x), "Waa" (n_a, n_a), "ba" (n_a, 1); the network names them
    "Wax{l}", "Waa{l}", "ba{l}". Input (n_x, T, m). Many-to-one: end with a `Dense`
    layer on a_T; many-to-many: `return_sequences=True` and a `Dense` layer, which acts
    at every time step, with labels (n_y, T, m).
    """

    units: int
    _: KW_ONLY
    activation: str = "tanh"
    return_sequences: bool = False
    init_method: str = "xavier"

    def __post_init__(self) -> None:
        check_layer_int("RNN", "units", self.units)
        check_activation("RNN", self.activation, HIDDEN_ACTIVATIONS)
        if self.activation == "softmax":
            raise ConfigError(
                "`RNN(activation='softmax')`: a recurrent cell needs an elementwise activation, "
                "e.g. 'tanh' — put softmax on the Dense output layer"
            )
        check_init_method("RNN", self.init_method)

    @property
    def param_names(self) -> tuple[str, ...]:
        return ("Wax", "Waa", "ba")

    @property
    def name(self) -> str:
        return (
            f"RNN({self.units}, activation={self.activation!r}, "
            f"return_sequences={self.return_sequences})"
        )

    @property
    def g(self) -> Activation:
        """The activation record: g, g', g''."""
        return get_activation(self.activation)

    def init(self, key: Array, in_shape: Shape, dtype: Any) -> tuple[Params, Shape]:
        """Wax ~ N(0, s(n_x)²), Waa ~ N(0, s(n_a)²) with s from the init method; ba = 0."""
        n_x, T = check_sequence(self.name, tuple(in_shape))
        n_a = self.units
        scale = INIT_SCALES[self.init_method]
        k_x, k_a = jax.random.split(key)
        params = {
            "Wax": jax.random.normal(k_x, (n_a, n_x), dtype) * scale(n_x),
            "Waa": jax.random.normal(k_a, (n_a, n_a), dtype) * scale(n_a),
            "ba": jnp.zeros((n_a, 1), dtype),
        }
        return params, (n_a, T) if self.return_sequences else (n_a,)

    def forward(
        self, params: Mapping[str, Array], A_prev: Array, precision: str
    ) -> tuple[Array, RNNCache]:
        """(R1) at every step by a scan; output A (n_a, T, m) or a_T (n_a, m)."""
        Wax, Waa, ba = params["Wax"], params["Waa"], params["ba"]
        check_sequences(self.name, Wax.shape[1], A_prev)
        U = recurrent.input_part(Wax, ba, A_prev, precision)  # Wax x_t + ba of (R1), every t
        a0 = jnp.zeros((Waa.shape[0], A_prev.shape[2]), A_prev.dtype)
        Z, A = recurrent.rnn_forward(Waa, U, a0, self.g, precision)  # (R1)
        return (A if self.return_sequences else A[:, -1]), RNNCache(A_prev, Z, A)

    def backward(
        self,
        params: Mapping[str, Array],
        cache: RNNCache,
        dA: Array,
        precision: str,
        need_dA_prev: bool = True,
    ) -> tuple[Array | None, tuple[Product, ...]]:
        """BPTT (5), (4) by a reverse scan; dX = Waxᵀ dZ (4); products (X, dZ), (A_prev, dZ).

        Shapes: dA (n_a, T, m) or (n_a, m) (∂L/∂a_T) -> dX (n_x, T, m); dZ (n_a, T, m).
        """
        Wax, Waa = params["Wax"], params["Waa"]
        dZ, _ = recurrent.rnn_backward(dA, cache.Z, cache.A, Waa, self.g, precision)  # (5), (4)
        dX = dense.prev_activation_grad(Wax, dZ, precision=precision) if need_dA_prev else None
        A_prev = previous_states(jnp.zeros_like(cache.A[:, 0]), cache.A)
        return dX, (Product("Wax", "ba", cache.X, dZ), Product("Waa", None, A_prev, dZ))
