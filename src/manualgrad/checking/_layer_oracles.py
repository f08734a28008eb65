r"""The truth for the course's conv, pool, RNN and LSTM backward functions: float64 `jax.vjp`.

Each oracle writes the layer's *forward* pass with jax's own primitives, in the course's
layout, and differentiates it with `jax.vjp` against the upstream gradient the student's
function is given; nothing here is a hand-written backward (those are in
:mod:`manualgrad.checking._layer_mistakes`, with one mistake each, to name what is wrong).

| oracle        | the forward, with jax's primitives                         | vjp of          |
|---------------|------------------------------------------------------------|-----------------|
| `conv_vjp`    | Z = conv(A_prev, W) + b, `lax.conv_general_dilated`        | A_prev, W, b    |
| `pool_vjp`    | max or mean over f×f windows, `lax.reduce_window`          | A_prev          |
| `sequence_vjp`| the RNN or LSTM cell over t, `lax.scan` (c⟨0⟩ = 0)         | x, a0, weights  |

Layouts (the course's): images examples first, (m, n_H, n_W, n_C), W (f, f, n_C_prev, n_C),
b (1, 1, 1, n_C); sequences (n_x, m, T_x), hidden states (n_a, m, T_x). Every function
takes and returns numpy float64 arrays.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np


def _to_numpy(tree: Any) -> Any:
    import jax

    return jax.tree.map(lambda v: np.asarray(v, np.float64), tree)


@functools.cache
def _conv_vjp(stride: int, pad: int) -> Any:
    import jax
    from jax import lax

    def forward(A_prev, W, b):
        Z = lax.conv_general_dilated(
            A_prev,
            W,
            window_strides=(stride, stride),
            padding=((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=lax.Precision.HIGHEST,
        )
        return Z + b

    return jax.jit(lambda A_prev, W, b, dZ: jax.vjp(forward, A_prev, W, b)[1](dZ))


def conv_vjp(A_prev, W, b, dZ, stride: int, pad: int) -> dict[str, np.ndarray]:
    """{"dA_prev", "dW", "db"}: the vjp of the conv layer's Z with the upstream `dZ`
    (m, n_H, n_W, n_C). dW and db are sums over the m examples (the course's: no 1/m)."""
    import jax

    with jax.enable_x64(True):
        dA_prev, dW, db = _conv_vjp(stride, pad)(A_prev, W, b, dZ)
    return _to_numpy({"dA_prev": dA_prev, "dW": dW, "db": db})


@functools.cache
def _pool_vjp(f: int, stride: int, mode: str) -> Any:
    import jax
    import jax.numpy as jnp
    from jax import lax

    def forward(A_prev):
        window, strides = (1, f, f, 1), (1, stride, stride, 1)
        if mode == "max":
            return lax.reduce_window(A_prev, -jnp.inf, lax.max, window, strides, "VALID")
        return lax.reduce_window(A_prev, 0.0, lax.add, window, strides, "VALID") / (f * f)

    return jax.jit(lambda A_prev, dA: jax.vjp(forward, A_prev)[1](dA)[0])


def pool_vjp(A_prev, dA, f: int, stride: int, mode: str) -> dict[str, np.ndarray]:
    """{"dA_prev"}: the vjp of max or average pooling (f×f windows, `stride`, no padding)."""
    import jax

    with jax.enable_x64(True):
        return _to_numpy({"dA_prev": _pool_vjp(f, stride, mode)(A_prev, dA)})


@functools.cache
def _sequence_vjp(cell_name: str) -> Any:
    import jax
    import jax.numpy as jnp
    from jax import lax

    def rnn(x, a0, p):
        def step(a, xt):
            a = jnp.tanh(p["Waa"] @ a + p["Wax"] @ xt + p["ba"])
            return a, a

        _, a = lax.scan(step, a0, jnp.moveaxis(x, 2, 0))
        return jnp.moveaxis(a, 0, 2)

    def lstm(x, a0, p):
        def step(carry, xt):
            a, c = carry
            concat = jnp.concatenate([a, xt])
            ft = jax.nn.sigmoid(p["Wf"] @ concat + p["bf"])
            it = jax.nn.sigmoid(p["Wi"] @ concat + p["bi"])
            cct = jnp.tanh(p["Wc"] @ concat + p["bc"])
            c = ft * c + it * cct
            ot = jax.nn.sigmoid(p["Wo"] @ concat + p["bo"])
            a = ot * jnp.tanh(c)
            return (a, c), a

        _, a = lax.scan(step, (a0, jnp.zeros_like(a0)), jnp.moveaxis(x, 2, 0))
        return jnp.moveaxis(a, 0, 2)

    forward = rnn if cell_name == "rnn" else lstm
    with jax.default_matmul_precision("highest"):
        return jax.jit(lambda x, a0, p, da: jax.vjp(forward, x, a0, p)[1](da))


def sequence_vjp(cell: str, x, a0, params, da) -> dict[str, np.ndarray]:
    """{"dx", "da0", "d" + each weight}: the vjp of every hidden state a⟨t⟩ (n_a, m, T_x) of
    the RNN (`cell` "rnn") or LSTM ("lstm", c⟨0⟩ = 0) with the upstream `da`."""
    import jax

    with jax.enable_x64(True), jax.default_matmul_precision("highest"):
        dx, da0, dp = _sequence_vjp(cell)(x, a0, params, da)
    return _to_numpy({"dx": dx, "da0": da0} | {f"d{k}": v for k, v in dp.items()})
