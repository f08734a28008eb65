"""`mg.network`: its hand-written gradients against jax.grad of an independent cost, and the
network as users hold it (layers or the shorthand, frozen, hashable, jitted as it is).

The networks are built as users are taught: `mg.network([mg.layers.Dense(…), …])` or the
shorthand `mg.network(["relu", "sigmoid"])`, and their bound functions are jitted
directly (`jax.jit(net.value_and_grad)`). The oracle is `helpers.reference_cost`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads

import manualgrad as mg
from helpers import (
    F32_TOL,
    F64_TOL,
    dense_network,
    max_relative_error,
    problem,
    reference_cost,
    rel_err,
)
from manualgrad._core.activations import HIDDEN_ACTIVATIONS
from manualgrad._core.regularization import dropout_masks

OUTPUT_PAIRS = [("sigmoid", "bce"), ("softmax", "ce")] + [
    (a, "mse") for a in ("relu", "leaky_relu", "tanh", "sigmoid", "linear", "softmax")
]


def _problem(dims, loss, m, seed=0, dtype=jnp.float64):
    return problem(dims, loss, m, seed=seed, dtype=dtype, method="xavier")


def _both(net, acts, l2=0.0, keep_prob=1.0):
    """One jitted function: the network's (C, grads) and the oracle's, from the same masks."""

    def both(params, X, Y, key=None, masks=None):
        ref = functools.partial(
            reference_cost, activations=acts, loss=net.loss, l2=l2, keep_prob=keep_prob
        )
        mine = net.value_and_grad(params, X, Y, key)
        return mine, jax.value_and_grad(ref)(params, X, Y, masks=masks)

    return jax.jit(both)


def _assert_matches(mine, ref, tol):
    (cost, grads), (ref_cost, ref_grads) = mine, ref
    assert abs(float(cost - ref_cost)) <= tol * max(abs(float(ref_cost)), 1e-300)
    assert max_relative_error(grads, ref_grads) <= tol


# ---------------------------------------------------------------------------------------
# Whole network vs jax.grad of the oracle
# ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("hidden", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize(("output", "loss"), OUTPUT_PAIRS, ids=lambda x: x)
def test_grads_match_jax_grad_for_every_activation_and_loss(hidden, output, loss):
    acts = (hidden, hidden, output)
    dims = [4, 6, 5, 1 if loss == "bce" else 3]
    params, X, Y = _problem(dims, loss, m=11)
    mine, ref = _both(dense_network(dims, acts, loss), acts)(params, X, Y)
    _assert_matches(mine, ref, F64_TOL)


@st.composite
def architectures(draw):
    depth = draw(st.integers(1, 6))
    output, loss = draw(st.sampled_from(OUTPUT_PAIRS))
    n_L = 1 if loss == "bce" else draw(st.integers(1 if loss == "mse" else 2, 8))
    dims = [draw(st.integers(1, 64)) for _ in range(depth)] + [n_L]
    hidden = tuple(draw(st.sampled_from(HIDDEN_ACTIVATIONS)) for _ in range(depth - 1))
    m = draw(st.integers(1, 128))
    seed = draw(st.integers(0, 2**16))
    shorthand = draw(st.booleans())
    return dims, (*hidden, output), loss, m, seed, shorthand


@pytest.mark.usefixtures("x64")
@given(architectures())
def test_grads_match_jax_grad_on_random_architectures(arch):
    dims, acts, loss, m, seed, shorthand = arch
    params, X, Y = _problem(dims, loss, m, seed)
    net = mg.network(acts, loss) if shorthand else dense_network(dims, acts, loss)
    mine, ref = _both(net, acts)(params, X, Y)
    _assert_matches(mine, ref, F64_TOL)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(("l2", "keep_prob"), [(0.7, 1.0), (0.0, 0.8), (0.3, 0.5)])
def test_l2_and_dropout_grads_match_jax_grad_with_the_same_masks(l2, keep_prob):
    acts, dims = ("relu", "tanh", "sigmoid"), [5, 8, 6, 1]
    params, X, Y = _problem(dims, "bce", m=13)
    key = jax.random.key(42)
    masks = dropout_masks(key, [(8, 13), (6, 13)], keep_prob) if keep_prob < 1 else None
    net = dense_network(dims, acts, "bce", l2=l2, keep_prob=keep_prob)
    mine, ref = _both(net, acts, l2, keep_prob)(params, X, Y, key, masks)
    _assert_matches(mine, ref, F64_TOL)


def test_dropout_zeroes_about_one_minus_keep_prob_of_hidden_units():
    params, X, _ = _problem([3, 400, 1], "bce", m=50, dtype=jnp.float32)
    net = mg.network(["relu", "sigmoid"], keep_prob=0.75)
    _, caches = jax.jit(net.forward)(params, X, jax.random.key(1))
    kept = float(jnp.mean(caches.masks[0]))
    assert abs(kept - 0.75) < 0.02  # 20 000 Bernoulli draws: 5 sigma ≈ 0.015


@pytest.mark.parametrize(
    ("output", "loss"), [("sigmoid", "bce"), ("softmax", "ce"), ("tanh", "mse")]
)
def test_float32_grads_match_jax_grad_at_highest_precision(output, loss):
    acts = ("relu", "leaky_relu", output)
    dims = [6, 16, 12, 1 if loss == "bce" else 4]
    params, X, Y = _problem(dims, loss, m=32, dtype=jnp.float32)
    with jax.default_matmul_precision("highest"):
        mine, ref = _both(dense_network(dims, acts, loss), acts)(params, X, Y)
    assert mine[0].dtype == jnp.float32
    _assert_matches(mine, ref, F32_TOL)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("precision", ["default", "highest"])
def test_every_precision_policy_gives_float64_grads_that_match_jax_grad(precision):
    """In float64 the full-precision policies differ only in how matmuls are issued."""
    acts, dims = ("tanh", "sigmoid"), [4, 5, 1]
    params, X, Y = _problem(dims, "bce", m=9)
    (cost, grads), (ref_cost, ref_grads) = _both(
        dense_network(dims, acts, "bce", precision=precision), acts
    )(params, X, Y)
    assert all(g.dtype == jnp.float64 for g in grads.values())
    assert abs(float(cost - ref_cost)) <= F64_TOL * abs(float(ref_cost))
    assert max_relative_error(grads, ref_grads) <= F64_TOL


def test_bf16_policy_rounds_only_the_matmul_inputs_of_float32_params():
    """bf16 keeps params, accumulation and elementwise math in float32: within bf16's 2^-8."""
    acts, dims = ("tanh", "sigmoid"), [4, 5, 1]
    params, X, Y = _problem(dims, "bce", m=9)
    params = {k: v.astype(jnp.float32) for k, v in params.items()}
    X, Y = X.astype(jnp.float32), Y.astype(jnp.float32)
    (cost, grads), (ref_cost, ref_grads) = _both(
        dense_network(dims, acts, "bce", precision="bf16"), acts
    )(params, X, Y)
    assert all(g.dtype == jnp.float32 for g in grads.values())
    assert abs(float(cost - ref_cost)) <= 1e-2 * abs(float(ref_cost))
    assert max_relative_error(grads, ref_grads) <= 1e-2


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
    dims = [3] + [4] * (len(acts) - 1) + [{"bce": 1, "ce": 3, "mse": 2}[loss]]
    params, X, Y = _problem(dims, loss, m=6)
    net = dense_network(dims, acts, loss, l2=l2)
    # float64 central differences with a small step; reverse mode runs the hand-written
    # backward (net.custom_vjp_cost's VJP), for params, X and Y.
    check_grads(
        net.custom_vjp_cost, (params, X, Y), order=1, modes=["rev"], eps=1e-6, atol=1e-7, rtol=1e-7
    )


# ---------------------------------------------------------------------------------------
# A layer of one's own: a parameter-free layer between dense layers
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Scale(mg.layers.Layer):
    """A = c · A_prev: no parameters, no activation (so it cannot end a network)."""

    c: float = 2.0

    def init(self, key, in_shape, dtype):
        return {}, tuple(in_shape)

    def forward(self, params, A_prev, precision):
        return self.c * A_prev, None

    def backward(self, params, cache, dA, precision, need_dA_prev=True):
        return (self.c * dA if need_dA_prev else None), ()


@pytest.mark.usefixtures("x64")
def test_a_parameter_free_layer_takes_part_in_the_chain_only():
    """Dense, Scale(c), Dense is the dense network with W2 → c W2: ∂C/∂W2 = c ∂C/∂(cW2)."""
    acts, dims, c = ("tanh", "sigmoid"), [4, 5, 1], 3.0
    params, X, Y = _problem(dims, "bce", m=7)
    net = mg.network(
        [mg.layers.Dense(5, activation="tanh"), Scale(c), mg.layers.Dense(1, activation="sigmoid")]
    )
    assert net.param_keys == ("W1", "b1", "W2", "b2")
    cost, grads = jax.jit(net.value_and_grad)(params, X, Y)
    folded = {**params, "W2": c * params["W2"]}
    ref_cost, ref = jax.value_and_grad(reference_cost)(folded, X, Y, acts, "bce")
    assert rel_err(cost, ref_cost) <= F64_TOL
    assert max_relative_error(grads, {**ref, "W2": c * ref["W2"]}) <= F64_TOL


# ---------------------------------------------------------------------------------------
# Layers and the shorthand are the same network
# ---------------------------------------------------------------------------------------


def _twins(l2=0.0, keep_prob=1.0):
    """The same network twice: from mg.layers.Dense and from the shorthand's names."""
    layers = mg.network(
        [mg.layers.Dense(6, activation="relu"), mg.layers.Dense(3, activation="softmax")],
        "ce",
        l2=l2,
        keep_prob=keep_prob,
    )
    shorthand = mg.network(["relu", "softmax"], "ce", l2=l2, keep_prob=keep_prob)
    return layers, shorthand


def test_dense_layers_and_the_shorthand_init_identical_params():
    layers, shorthand = _twins()
    key = jax.random.key(3)
    a, b = layers.init((4,), key), shorthand.init([4, 6, 3], key)
    assert list(a) == list(b) == ["W1", "b1", "W2", "b2"]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("fn", ["value_and_grad", "per_example_norms", "clipped_grads", "dp_grads"])
def test_dense_layers_and_the_shorthand_give_identical_numbers(fn):
    layers, shorthand = _twins(l2=0.1, keep_prob=0.8)
    params, X, Y = _problem([4, 6, 3], "ce", m=10, dtype=jnp.float32)
    key = jax.random.key(5)
    args = {
        "value_and_grad": (key,),
        "per_example_norms": (key,),
        "clipped_grads": (0.5, key),
        "dp_grads": (jax.random.key(9), 0.5, 1.1, key),
    }[fn]
    a = jax.jit(getattr(layers, fn))(params, X, Y, *args)
    b = jax.jit(getattr(shorthand, fn))(params, X, Y, *args)
    jax.tree.map(np.testing.assert_array_equal, a, b)


# ---------------------------------------------------------------------------------------
# The network as a value: frozen, hashable, its functions jit as they are
# ---------------------------------------------------------------------------------------


def test_network_is_frozen():
    net = mg.network(["relu", "sigmoid"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        net.l2 = 1.0  # type: ignore[misc]


def test_equal_networks_hash_equal_and_serve_as_static_arguments():
    a, b = _twins()[0], _twins()[0]
    assert a == b and hash(a) == hash(b) and len({a, b, _twins()[1]}) == 2
    params, X, Y = _problem([4, 6, 3], "ce", m=5, dtype=jnp.float32)
    traces = []

    @functools.partial(jax.jit, static_argnums=0)
    def cost(net, params, X, Y):
        traces.append(net)
        return net.cost(params, X, Y)

    cost(a, params, X, Y), cost(b, params, X, Y)
    assert len(traces) == 1  # b is a: the cached compilation serves it


EXTRA_ARGS = {"clipped_grads": (0.3,), "dp_grads": (jax.random.key(0), 0.3, 1.0)}
BOUND = [
    "forward", "cost", "value_and_grad", "predict", "custom_vjp_cost",
    "per_example_grads", "per_example_norms", "clipped_grads", "dp_grads",
]  # fmt: skip


@pytest.mark.parametrize("name", BOUND)
def test_bound_functions_jit_as_they_are_and_agree_with_eager_calls(name):
    net = mg.network(["tanh", "sigmoid"], l2=0.05)
    params, X, Y = _problem([3, 4, 1], "bce", m=6, dtype=jnp.float32)
    data = (params, X) if name in ("forward", "predict") else (params, X, Y)
    args = (*data, *EXTRA_ARGS.get(name, ()))
    bound = getattr(net, name)
    with jax.default_matmul_precision("highest"):
        got, eager = jax.jit(bound)(*args), bound(*args)
    if name == "forward":
        got, eager = got[0], eager[0]
    assert rel_err(got, eager) <= F32_TOL


def test_jitted_value_and_grad_does_not_retrace_for_same_shapes():
    net = mg.network(["relu", "sigmoid"], l2=0.1)
    traces = []

    def counted(params, X, Y):
        traces.append(1)
        return net.value_and_grad(params, X, Y)

    step = jax.jit(counted)
    for seed in range(3):
        params, X, Y = _problem([4, 5, 1], "bce", m=8, seed=seed, dtype=jnp.float32)
        jax.block_until_ready(step(params, X, Y))
    assert len(traces) == 1


def test_grads_have_the_params_keys_and_shapes_and_feed_optax():
    net = mg.network(["relu", "relu", "softmax"], "ce")
    params, X, Y = _problem([4, 7, 5, 3], "ce", m=9, dtype=jnp.float32)
    _, grads = net.value_and_grad(params, X, Y)
    assert list(grads) == list(params)  # in the params' order (under jit: sorted, as jax does)
    assert {k: v.shape for k, v in grads.items()} == {k: v.shape for k, v in params.items()}
    opt = optax.sgd(0.1)
    updates, _ = opt.update(grads, opt.init(params))
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["W2"], params["W2"] - 0.1 * grads["W2"], rtol=1e-6)


def test_gradient_descent_on_hand_written_grads_lowers_the_cost():
    net = mg.network([mg.layers.Dense(8, activation="tanh"), mg.layers.Dense(1, "sigmoid")])
    params, X, _ = _problem([2, 8, 1], "bce", m=64, dtype=jnp.float32)
    Y = (X[:1] * X[1:] > 0).astype(jnp.float32)
    step = jax.jit(net.value_and_grad)
    first = None
    for _ in range(200):
        cost, grads = step(params, X, Y)
        first = cost if first is None else first
        params = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
    assert float(cost) < 0.5 * float(first)


@pytest.mark.parametrize("method", mg.functional.INIT_METHODS)
def test_init_shapes_and_scale(method):
    params = mg.network(["relu", "sigmoid"]).init([300, 200, 1], jax.random.key(0), method)
    assert params["W1"].shape == (200, 300) and params["b1"].shape == (200, 1)
    assert params["W2"].shape == (1, 200) and params["b2"].shape == (1, 1)
    expected = {"he": (2 / 300) ** 0.5, "xavier": (1 / 300) ** 0.5, "random": 0.01, "zeros": 0.0}
    assert abs(float(jnp.std(params["W1"])) - expected[method]) <= 0.02 * expected[method] + 1e-12
    assert not jnp.any(params["b1"])


def test_predict_thresholds_sigmoid_and_argmaxes_softmax():
    params = {"W1": jnp.array([[1.0, 0.0]]), "b1": jnp.zeros((1, 1))}
    X = jnp.array([[2.0, -2.0, 0.5], [0.0, 0.0, 0.0]])
    predict = jax.jit(mg.network(["sigmoid"]).predict)
    np.testing.assert_array_equal(predict(params, X), [[1, 0, 1]])
    params3 = {"W1": jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]), "b1": jnp.zeros((3, 1))}
    X3 = jnp.array([[3.0, 0.0, -1.0], [0.0, 3.0, -1.0]])
    predict3 = jax.jit(mg.network(["softmax"], "ce").predict)
    np.testing.assert_array_equal(predict3(params3, X3), [[0, 1, 2]])


# ---------------------------------------------------------------------------------------
# The functional shims: one line over mg.network each
# ---------------------------------------------------------------------------------------


def test_functional_value_and_grad_is_the_networks():
    acts = ("relu", "softmax")
    params, X, Y = _problem([4, 6, 3], "ce", m=8, dtype=jnp.float32)
    key = jax.random.key(2)
    got = mg.value_and_grad(params, X, Y, activations=acts, loss="ce", keep_prob=0.7, key=key)
    want = mg.network(acts, "ce", keep_prob=0.7).value_and_grad(params, X, Y, key)
    jax.tree.map(np.testing.assert_array_equal, got, want)


@pytest.mark.usefixtures("x64")
def test_functional_shims_take_a_traced_l2_under_jit():
    acts, dims = ("tanh", "sigmoid"), [3, 4, 1]
    params, X, Y = _problem(dims, "bce", m=6)

    @jax.jit
    def step(params, lam):
        return mg.value_and_grad(params, X, Y, activations=acts, loss="bce", l2=lam)

    cost, grads = step(params, 0.4)
    ref_cost, ref = jax.value_and_grad(reference_cost)(params, X, Y, acts, "bce", 0.4)
    assert rel_err(cost, ref_cost) <= F64_TOL
    assert max_relative_error(grads, ref) <= F64_TOL


def test_functional_forward_and_backward_are_the_networks():
    acts = ("leaky_relu", "sigmoid")
    params, X, Y = _problem([3, 4, 1], "bce", m=5, dtype=jnp.float32)
    AL, caches = mg.forward(params, X, activations=acts)
    grads = mg.backward(params, caches, Y, activations=acts, l2=0.2)
    _, want = mg.network(acts, l2=0.2).value_and_grad(params, X, Y)
    jax.tree.map(np.testing.assert_array_equal, grads, want)
    np.testing.assert_array_equal(AL, mg.network(acts).forward(params, X)[0])


# ---------------------------------------------------------------------------------------
# Bad layers and networks are refused when built
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: mg.layers.Dense(0), "positive int"),
        (lambda: mg.layers.Dense(3, activation="nope"), "unknown activation"),
        (lambda: mg.layers.Dense(3, init_method="nope"), "init_method"),
        (
            lambda: mg.network([mg.layers.Dense(3, "softmax"), mg.layers.Dense(1, "sigmoid")]),
            "softmax",
        ),
        (lambda: mg.network([mg.layers.Dense(3), Scale()]), "output layer"),
        (lambda: mg.network([]), "empty"),
        (lambda: mg.network("relu"), "sequence of layers"),
    ],
    ids=[
        "zero-units",
        "unknown-activation",
        "unknown-init",
        "softmax-hidden",
        "no-output-activation",
        "empty",
        "a-string",
    ],
)
def test_bad_layers_and_networks_raise_config_errors(build, match):
    with pytest.raises(mg.errors.ConfigError, match=match):
        build()


# ---------------------------------------------------------------------------------------
# The package's surface
# ---------------------------------------------------------------------------------------


def test_the_pytest_plugin_imports_no_jax():
    code = "import sys, manualgrad.pytest_plugin; assert 'jax' not in sys.modules"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr


def test_training_is_a_module_with_progress():
    import types

    import manualgrad.training

    assert isinstance(manualgrad.training, types.ModuleType)
    assert hasattr(mg.training, "Progress")


NAMESPACES = sorted(mg._NAMESPACES)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["manualgrad", *NAMESPACES])
def test_every_public_namespace_has_all_and_every_name_in_it_exists(name):
    module = mg if name == "manualgrad" else getattr(mg, name)
    assert hasattr(module, "__all__"), f"{module.__name__} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{module.__name__}.__all__ names what it lacks: {missing}"
    assert importlib.import_module(module.__name__) is module
