"""The L-layer network's hand-written gradients against jax.grad of an independent cost."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads

import manualgrad as mg
from helpers import F32_TOL, F64_TOL, max_relative_error, problem, reference_cost
from manualgrad._core.activations import HIDDEN_ACTIVATIONS
from manualgrad._core.regularization import dropout_masks

OUTPUT_PAIRS = [("sigmoid", "bce"), ("softmax", "ce")] + [
    (a, "mse") for a in ("relu", "leaky_relu", "tanh", "sigmoid", "linear", "softmax")
]


def _problem(dims, acts, loss, m, seed=0, dtype=jnp.float64):
    del acts  # the problem depends on the shapes and the loss only
    return problem(dims, loss, m, seed=seed, dtype=dtype, method="xavier")


# Both sides are jitted: one compilation per shape instead of one per primitive.
value_and_grad = jax.jit(mg.value_and_grad, static_argnames=mg.functional.STATIC_ARGNAMES)


@functools.partial(jax.jit, static_argnames=("acts", "loss", "keep_prob"))
def _reference_grads(params, X, Y, acts, loss, l2=0.0, keep_prob=1.0, masks=None):
    f = functools.partial(
        reference_cost, activations=acts, loss=loss, l2=l2, keep_prob=keep_prob, masks=masks
    )
    return jax.value_and_grad(f)(params, X, Y)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("hidden", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize(("output", "loss"), OUTPUT_PAIRS, ids=lambda x: x)
def test_grads_match_jax_grad_for_every_activation_and_loss(hidden, output, loss):
    acts = (hidden, hidden, output)
    n_L = 1 if loss == "bce" else 3
    params, X, Y = _problem([4, 6, 5, n_L], acts, loss, m=11)
    cost, grads = value_and_grad(params, X, Y, activations=acts, loss=loss)
    ref_cost, ref_grads = _reference_grads(params, X, Y, acts, loss)
    assert abs(float(cost - ref_cost)) <= F64_TOL * abs(float(ref_cost))
    assert max_relative_error(grads, ref_grads) <= F64_TOL


@st.composite
def architectures(draw):
    depth = draw(st.integers(1, 6))
    output, loss = draw(st.sampled_from(OUTPUT_PAIRS))
    n_L = 1 if loss == "bce" else draw(st.integers(1 if loss == "mse" else 2, 8))
    dims = [draw(st.integers(1, 64)) for _ in range(depth)] + [n_L]
    hidden = tuple(draw(st.sampled_from(HIDDEN_ACTIVATIONS)) for _ in range(depth - 1))
    m = draw(st.integers(1, 128))
    seed = draw(st.integers(0, 2**16))
    return dims, (*hidden, output), loss, m, seed


@functools.partial(jax.jit, static_argnames=("acts", "loss"))
def _both(params, X, Y, acts, loss):
    """Hand-written and reference (cost, grads) in one compilation (one per drawn shape)."""
    mine = mg.value_and_grad(params, X, Y, activations=acts, loss=loss)
    ref = jax.value_and_grad(functools.partial(reference_cost, activations=acts, loss=loss))
    return mine, ref(params, X, Y)


@pytest.mark.usefixtures("x64")
@given(architectures())
def test_grads_match_jax_grad_on_random_architectures(arch):
    dims, acts, loss, m, seed = arch
    params, X, Y = _problem(dims, acts, loss, m, seed)
    (cost, grads), (ref_cost, ref_grads) = _both(params, X, Y, acts, loss)
    assert abs(float(cost - ref_cost)) <= F64_TOL * max(abs(float(ref_cost)), 1e-300)
    assert max_relative_error(grads, ref_grads) <= F64_TOL


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(("l2", "keep_prob"), [(0.7, 1.0), (0.0, 0.8), (0.3, 0.5)])
def test_l2_and_dropout_grads_match_jax_grad_with_the_same_masks(l2, keep_prob):
    acts = ("relu", "tanh", "sigmoid")
    dims = [5, 8, 6, 1]
    params, X, Y = _problem(dims, acts, "bce", m=13)
    key = jax.random.key(42)
    masks = dropout_masks(key, [(8, 13), (6, 13)], keep_prob) if keep_prob < 1 else None
    cost, grads = value_and_grad(
        params, X, Y, activations=acts, loss="bce", l2=l2, keep_prob=keep_prob, key=key
    )
    ref_cost, ref_grads = _reference_grads(params, X, Y, acts, "bce", l2, keep_prob, masks)
    assert abs(float(cost - ref_cost)) <= F64_TOL * abs(float(ref_cost))
    assert max_relative_error(grads, ref_grads) <= F64_TOL


def test_dropout_zeroes_about_one_minus_keep_prob_of_hidden_units():
    params, X, _ = _problem([3, 400, 1], ("relu", "sigmoid"), "bce", m=50, dtype=jnp.float32)
    _, caches = mg.forward(
        params, X, activations=("relu", "sigmoid"), keep_prob=0.75, key=jax.random.key(1)
    )
    kept = float(jnp.mean(caches[0].D))
    assert abs(kept - 0.75) < 0.02  # 20 000 Bernoulli draws: 5 sigma ≈ 0.015


@pytest.mark.parametrize(
    ("output", "loss"), [("sigmoid", "bce"), ("softmax", "ce"), ("tanh", "mse")]
)
def test_float32_grads_match_jax_grad_at_highest_precision(output, loss):
    acts = ("relu", "leaky_relu", output)
    n_L = 1 if loss == "bce" else 4
    params, X, Y = _problem([6, 16, 12, n_L], acts, loss, m=32, dtype=jnp.float32)
    with jax.default_matmul_precision("highest"):
        cost, grads = value_and_grad(params, X, Y, activations=acts, loss=loss)
        ref_cost, ref_grads = _reference_grads(params, X, Y, acts, loss)
    assert cost.dtype == jnp.float32
    assert abs(float(cost - ref_cost)) <= F32_TOL * abs(float(ref_cost))
    assert max_relative_error(grads, ref_grads) <= F32_TOL


def _hand_written_cost(acts, loss, l2=0.0):
    """A cost whose VJP is the hand-written backward, so check_grads can test it numerically."""

    @jax.custom_vjp
    def f(params, X, Y):
        return mg.cost(params, X, Y, activations=acts, loss=loss, l2=l2)

    def fwd(params, X, Y):
        cost, grads = mg.value_and_grad(params, X, Y, activations=acts, loss=loss, l2=l2)
        return cost, (grads, X, Y)

    def bwd(res, g):
        grads, X, Y = res
        return jax.tree.map(lambda d: g * d, grads), jnp.zeros_like(X), jnp.zeros_like(Y)

    f.defvjp(fwd, bwd)
    return lambda params: f(params, X_FD, Y_FD[loss])


X_FD = None
Y_FD = {}


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(
    ("acts", "loss", "l2"),
    [
        (("tanh", "sigmoid"), "bce", 0.0),
        (("sigmoid", "tanh", "softmax"), "ce", 0.5),
        (("leaky_relu", "linear"), "mse", 0.1),
    ],
    ids=["tanh-sigmoid-bce", "sigmoid-tanh-softmax-ce-l2", "leaky-linear-mse-l2"],
)
def test_hand_written_grads_match_central_finite_differences(acts, loss, l2):
    global X_FD
    n_L = {"bce": 1, "ce": 3, "mse": 2}[loss]
    dims = [3] + [4] * (len(acts) - 1) + [n_L]
    params, X, Y = _problem(dims, acts, loss, m=6)
    X_FD, Y_FD[loss] = X, Y
    # Central differences in float64 with a small step; rev mode uses the hand-written VJP.
    check_grads(
        _hand_written_cost(acts, loss, l2),
        (params,),
        order=1,
        modes=["rev"],
        eps=1e-6,
        atol=1e-7,
        rtol=1e-7,
    )


def test_jitted_value_and_grad_does_not_retrace_for_same_shapes():
    traces = []

    def counted(params, X, Y, **kw):
        traces.append(1)
        return mg.value_and_grad(params, X, Y, **kw)

    step = jax.jit(counted, static_argnames=mg.functional.STATIC_ARGNAMES)
    acts = ("relu", "sigmoid")
    for seed in range(3):
        params, X, Y = _problem([4, 5, 1], acts, "bce", m=8, seed=seed, dtype=jnp.float32)
        jax.block_until_ready(step(params, X, Y, activations=acts, loss="bce", l2=0.1 * seed))
    assert len(traces) == 1


def test_grads_have_the_params_keys_and_shapes_and_feed_optax():
    acts = ("relu", "relu", "softmax")
    params, X, Y = _problem([4, 7, 5, 3], acts, "ce", m=9, dtype=jnp.float32)
    _, grads = mg.value_and_grad(params, X, Y, activations=acts, loss="ce")
    assert list(grads) == list(params)
    assert {k: v.shape for k, v in grads.items()} == {k: v.shape for k, v in params.items()}
    opt = optax.sgd(0.1)
    updates, _ = opt.update(grads, opt.init(params))
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["W2"], params["W2"] - 0.1 * grads["W2"], rtol=1e-6)


def test_gradient_descent_on_hand_written_grads_lowers_the_cost():
    acts = ("tanh", "sigmoid")
    params, X, _ = _problem([2, 8, 1], acts, "bce", m=64, dtype=jnp.float32)
    Y = (X[:1] * X[1:] > 0).astype(jnp.float32)
    step = jax.jit(mg.value_and_grad, static_argnames=mg.functional.STATIC_ARGNAMES)
    first = None
    for _ in range(200):
        cost, grads = step(params, X, Y, activations=acts, loss="bce")
        first = cost if first is None else first
        params = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
    assert float(cost) < 0.5 * float(first)


@pytest.mark.parametrize("method", mg.functional.INIT_METHODS)
def test_init_params_shapes_and_scale(method):
    params = mg.init_params([300, 200, 1], jax.random.key(0), method=method)
    assert params["W1"].shape == (200, 300) and params["b1"].shape == (200, 1)
    assert params["W2"].shape == (1, 200) and params["b2"].shape == (1, 1)
    expected = {"he": (2 / 300) ** 0.5, "xavier": (1 / 300) ** 0.5, "random": 0.01, "zeros": 0.0}
    assert abs(float(jnp.std(params["W1"])) - expected[method]) <= 0.02 * expected[method] + 1e-12
    assert not jnp.any(params["b1"])


def test_predict_thresholds_sigmoid_and_argmaxes_softmax():
    params = {"W1": jnp.array([[1.0, 0.0]]), "b1": jnp.zeros((1, 1))}
    X = jnp.array([[2.0, -2.0, 0.5], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(mg.predict(params, X, activations=("sigmoid",)), [[1, 0, 1]])
    params3 = {"W1": jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]), "b1": jnp.zeros((3, 1))}
    X3 = jnp.array([[3.0, 0.0, -1.0], [0.0, 3.0, -1.0]])
    np.testing.assert_array_equal(mg.predict(params3, X3, activations=("softmax",)), [[0, 1, 2]])
