"""RNN and LSTM layers through time: the hand-derived BPTT and every extension, in float64.

The oracle is written here, independently of manualgrad, one example at a time: a
`lax.scan` over the time steps of x (n_x, T) with jnp and jax.nn, the course's cells
(the LSTM's gates on the stacked [a_{t-1}; x_t]), a dense head at every step or on the
last state, and optax for the loss (via `reference_losses`), summed over the time
steps of a sequence output. `jax.grad`, `jax.vmap(jax.grad)`, `jax.jacfwd` and
`jax.hessian` of it are what the hand-written formulas must equal, to ≤ 1e-12.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax
from jax.flatten_util import ravel_pytree
from jax.test_util import check_grads

import manualgrad as mg
from helpers import (
    F64_TOL,
    REFERENCE_ACTIVATIONS,
    clipped_mean,
    example_norms,
    rel_err,
    sum_of_squares,
    variance,
)
from helpers import reference_losses as head_losses

L = mg.layers


# ---------------------------------------------------------------------------------------
# The oracle: one example x (n_x, T), lax.scan, jnp and jax.nn, no manualgrad code
# ---------------------------------------------------------------------------------------


def oracle_rnn(params, l, x, layer):
    """The states of an RNN layer: a_t = g(Waa a_{t-1} + Wax x_t + ba), (n_a, T) or (n_a,)."""
    Wax, Waa, ba = params[f"Wax{l}"], params[f"Waa{l}"], params[f"ba{l}"][:, 0]
    g = REFERENCE_ACTIVATIONS[layer.activation]

    def step(a, x_t):
        a = g(jnp.dot(Waa, a, precision="highest") + jnp.dot(Wax, x_t, precision="highest") + ba)
        return a, a

    _, A = lax.scan(step, jnp.zeros(Waa.shape[0], x.dtype), x.T)
    return A.T if layer.return_sequences else A[-1]


def oracle_lstm(params, l, x, layer):
    """The states of an LSTM layer, the course's cell, (n_a, T) or (n_a,)."""
    W = {g: params[f"W{g}{l}"] for g in "fico"}
    b = {g: params[f"b{g}{l}"][:, 0] for g in "fico"}
    n_a = W["f"].shape[0]

    def gate(g, s, fn):
        return fn(jnp.dot(W[g], s, precision="highest") + b[g])

    def step(carry, x_t):
        a, c = carry
        s = jnp.concatenate([a, x_t])
        f, i = gate("f", s, jax.nn.sigmoid), gate("i", s, jax.nn.sigmoid)
        c = f * c + i * gate("c", s, jnp.tanh)
        a = gate("o", s, jax.nn.sigmoid) * jnp.tanh(c)
        return (a, c), a

    zeros = jnp.zeros(n_a, x.dtype)
    _, A = lax.scan(step, (zeros, zeros), x.T)
    return A.T if layer.return_sequences else A[-1]


def oracle_dense(params, l, h, layer, last):
    """W h + b on a vector (n,) or at every column of a sequence (n, T); g unless `last`."""
    z = jnp.dot(params[f"W{l}"], h, precision="highest")
    z = z + (params[f"b{l}"][:, 0] if h.ndim == 1 else params[f"b{l}"])
    return z if last else REFERENCE_ACTIVATIONS[layer.activation](z)


def oracle_output(params, x, layers):
    """z[L] of one example: (n_y,) for many-to-one, (n_y, T) for many-to-many."""
    h = x
    for l, layer in enumerate(layers, start=1):  # every layer here has params
        if isinstance(layer, L.RNN):
            h = oracle_rnn(params, l, h, layer)
        elif isinstance(layer, L.LSTM):
            h = oracle_lstm(params, l, h, layer)
        else:
            h = oracle_dense(params, l, h, layer, l == len(layers))
    return h


def example_loss(z, y, layers, loss):
    """L of one example from z[L]: one loss, or the sum of the T per-step losses."""
    out = layers[-1].activation
    if z.ndim == 1:
        return head_losses(z[:, None], y[:, None], out, loss)[0]
    return jnp.sum(head_losses(z, y, out, loss))  # Σ_t L(z_t, y_t): columns are time steps


def oracle_loss(params, x, y, layers, loss):
    return example_loss(oracle_output(params, x, layers), y, layers, loss)


def oracle_cost(params, X, Y, layers, loss):
    """C = (1/m) Σ_i L_i over the examples on the last axis of X (…, m) and Y (…, m)."""
    losses = jax.vmap(oracle_loss, in_axes=(None, -1, -1, None, None))(params, X, Y, layers, loss)
    return jnp.mean(losses)


# ---------------------------------------------------------------------------------------
# Problems
# ---------------------------------------------------------------------------------------


def random_params(net, shape, rng):
    """Params of the network's shapes with N(0, 0.5²) entries (biases too: none is zero)."""
    params = net.init(shape, jax.random.key(0), dtype=jnp.float64)
    return {k: jnp.asarray(0.5 * rng.standard_normal(v.shape)) for k, v in params.items()}


def labels(loss, out_shape, m, rng):
    """Valid labels (n_y, …, m): {0, 1} for bce, one-hot on axis 0 for ce, reals for mse."""
    shape = (*out_shape, m)
    if loss == "bce":
        return jnp.asarray((rng.random(shape) < 0.5).astype(np.float64))
    if loss == "ce":
        classes = rng.integers(0, out_shape[0], shape[1:])
        return jnp.asarray(np.moveaxis(np.eye(out_shape[0])[classes], -1, 0))
    return jnp.asarray(rng.standard_normal(shape))


def problem(layers, loss, n_x, T, m, seed=0):
    rng = np.random.default_rng(seed)
    net = mg.network(list(layers), loss)
    params = random_params(net, (n_x, T), rng)
    X = jnp.asarray(rng.standard_normal((n_x, T, m)))
    n_y = layers[-1].units
    Y = labels(loss, (n_y, T) if _many(layers) else (n_y,), m, rng)
    return net, params, X, Y


def _many(layers):
    """True when the recurrent layers' last one returns its sequence (many-to-many)."""
    recurrent = [layer for layer in layers if isinstance(layer, L.RNN | L.LSTM)]
    return recurrent[-1].return_sequences


# ---------------------------------------------------------------------------------------
# The mean gradient against jax.grad of the oracle, over random shapes
# ---------------------------------------------------------------------------------------


@settings(max_examples=3, deadline=None)  # each example is a new architecture: one compile
@given(
    n_x=st.integers(1, 3),
    units=st.integers(1, 4),
    T=st.integers(1, 4),
    cells=st.sampled_from(["rnn", "lstm", "lstm-rnn", "rnn-lstm"]),
    many=st.booleans(),
    head=st.sampled_from([("bce", "sigmoid", 1), ("ce", "softmax", 3), ("mse", "linear", 2)]),
    hidden_dense=st.booleans(),
)
def test_random_recurrent_networks_match_jax_grad_of_a_scan_oracle(
    x64, n_x, units, T, cells, many, head, hidden_dense
):
    loss, out, n_y = head
    kinds = cells.split("-")
    layers = []
    for k, kind in enumerate(kinds):
        seq = many or k < len(kinds) - 1
        layers.append(
            L.RNN(units, return_sequences=seq)
            if kind == "rnn"
            else L.LSTM(units + 1, return_sequences=seq)
        )
    if hidden_dense:
        layers.append(L.Dense(2, activation="tanh"))  # at every step when many
    layers.append(L.Dense(n_y, activation=out))
    net, params, X, Y = problem(layers, loss, n_x, T, m=3, seed=T + units)
    C, grads = jax.jit(net.value_and_grad)(params, X, Y)
    C_ref, grads_ref = jax.jit(jax.value_and_grad(oracle_cost), static_argnums=(3, 4))(
        params, X, Y, tuple(layers), loss
    )
    assert rel_err(C, C_ref) <= F64_TOL
    assert rel_err(grads, grads_ref) <= F64_TOL


def test_recurrent_grads_for_params_and_sequences_match_central_finite_differences(x64):
    layers = [L.LSTM(3, return_sequences=True), L.RNN(2), L.Dense(1, activation="sigmoid")]
    net, params, X, Y = problem(layers, "bce", n_x=2, T=3, m=2)
    # reverse mode runs the hand-written BPTT of both layers, down to ∂C/∂X
    check_grads(
        jax.jit(net.custom_vjp_cost),
        (params, X, Y),
        order=1,
        modes=["rev"],
        eps=1e-6,
        atol=1e-7,
        rtol=1e-7,
    )


# ---------------------------------------------------------------------------------------
# Every extension against vmap(jax.grad) and the GGN of the oracle
# ---------------------------------------------------------------------------------------

CLIP = 0.3

# The RNN many-to-one (the dense head on a_T) and the LSTM many-to-many (a dense layer at
# every step, the loss summed over the T steps); stacks of both cells are in the random test
# above. n_x = 2, T = 3: the RNN's Wax (5, 2) has d_in·d_out = 10 < 2T² = 18, so
# per-example norms form dW_i; its Waa (5, 5) and the LSTM's gate weights (4, 6) take the
# T×T Gram identity, and the dense layer at every step (2, 4) forms dW_i.
CASES = {
    "rnn-many-to-one-ce": ((L.RNN(5), L.Dense(3, activation="softmax")), "ce"),
    "lstm-many-to-many-bce": (
        (L.LSTM(4, return_sequences=True), L.Dense(2, activation="sigmoid")),
        "bce",
    ),
}
N_X, T_STEPS, M = 2, 3, 4


@functools.cache
def extension_results(case):
    """(computed, oracle) for every extension of one case: one compile each side."""
    layers, loss = CASES[case]
    net, params, X, Y = problem(layers, loss, N_X, T_STEPS, M)

    def computed(params, X, Y):
        return {
            "per_example_grads": net.per_example_grads(params, X, Y),
            "per_example_norms": net.per_example_norms(params, X, Y),
            "clipped_grads": net.clipped_grads(params, X, Y, CLIP),
            # the DP path once: its noise draws cost a compile of their own
            **(
                {"dp_grads_sigma0": net.dp_grads(params, X, Y, jax.random.key(7), CLIP, 0.0)}
                if case == "lstm-many-to-many-bce"
                else {}
            ),
            "sum_grad_squared": net.sum_grad_squared(params, X, Y),
            "grad_variance": net.grad_variance(params, X, Y),
            "diag_ggn": net.diag_ggn(params, X, Y),
        }

    def oracle(params, X, Y):
        g = jax.vmap(jax.grad(oracle_loss), in_axes=(None, 2, -1, None, None))(
            params, X, Y, layers, loss
        )
        flat, unravel = ravel_pytree(params)

        def ggn_one(x, y):
            out = oracle_output(params, x, layers)
            J = jax.jacfwd(lambda th: oracle_output(unravel(th), x, layers))(flat)
            J = J.reshape(-1, flat.size)
            H = jax.hessian(lambda o: example_loss(o, y, layers, loss))(out)
            H = H.reshape(out.size, out.size)
            return J.T @ H @ J

        ggn = jnp.mean(jax.vmap(ggn_one, in_axes=(2, -1))(X, Y), axis=0)
        clipped = clipped_mean(g, CLIP)
        return {
            "per_example_grads": g,
            "per_example_norms": example_norms(g),
            "clipped_grads": clipped,
            "dp_grads_sigma0": clipped,
            "sum_grad_squared": sum_of_squares(g),
            "grad_variance": variance(g),
            "diag_ggn": unravel(jnp.diag(ggn)),
        }

    with jax.enable_x64(True):
        got = jax.jit(computed)(params, X, Y)
        want = jax.jit(oracle)(params, X, Y)
        norms = want["per_example_norms"]
    return got, want, norms


EXTENSIONS = [
    "per_example_grads",
    "per_example_norms",
    "clipped_grads",
    "dp_grads_sigma0",
    "sum_grad_squared",
    "grad_variance",
    "diag_ggn",
]


@pytest.mark.parametrize(
    ("case", "quantity"),
    [
        (case, quantity)
        for case in CASES
        for quantity in EXTENSIONS
        if quantity != "dp_grads_sigma0" or case == "lstm-many-to-many-bce"
    ],
)
def test_recurrent_extension_matches_vmap_grad_or_dense_ggn_oracle(x64, case, quantity):
    got, want, _ = extension_results(case)
    assert rel_err(got[quantity], want[quantity]) <= F64_TOL


def test_the_cases_take_both_per_example_norm_routes():
    """fastDP's rule in mg.per_example: the T×T Gram when d_in·d_out ≥ 2T², else dW_i."""
    gram = 2 * T_STEPS**2
    rnn, lstm = CASES["rnn-many-to-one-ce"][0][0], CASES["lstm-many-to-many-bce"][0][0]
    assert rnn.units * N_X < gram <= rnn.units * rnn.units  # Wax forms dW_i, Waa the Gram
    assert lstm.units * (lstm.units + N_X) >= gram  # the gate weights: the Gram
    assert 2 * lstm.units < gram  # the dense layer at every step forms dW_i


@pytest.mark.parametrize("case", list(CASES))
def test_clipping_is_active_in_every_case(x64, case):
    _, _, norms = extension_results(case)
    assert jnp.any(norms > CLIP)


# ---------------------------------------------------------------------------------------
# Layouts and shapes
# ---------------------------------------------------------------------------------------


def test_params_have_the_course_names_and_shapes():
    net = mg.network([L.LSTM(4, return_sequences=True), L.RNN(3), L.Dense(1, "sigmoid")])
    params = jax.eval_shape(lambda key: net.init((2, 5), key), jax.random.key(0))
    shapes = {k: v.shape for k, v in params.items()}
    gates = {f"{w}{g}1": (4, 6) if w == "W" else (4, 1) for g in "fico" for w in "Wb"}
    assert shapes == {
        **gates,
        "Wax2": (3, 4),
        "Waa2": (3, 3),
        "ba2": (3, 1),
        "W3": (1, 3),
        "b3": (1, 1),
    }


def test_a_sequence_output_predicts_every_time_step(x64):
    layers = (L.RNN(3, return_sequences=True), L.Dense(4, activation="softmax"))
    net, params, X, _ = problem(layers, "ce", n_x=2, T=5, m=3)
    out = jax.jit(jax.vmap(oracle_output, in_axes=(None, 2, None)), static_argnums=2)(
        params, X, layers
    )  # (m, n_y, T)
    assert jax.jit(net.predict)(params, X).tolist() == [jnp.argmax(out, axis=1).T.tolist()]
