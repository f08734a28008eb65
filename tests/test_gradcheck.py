"""`manualgrad.checking.gradcheck`: the course's metric, central differences, and the report.

Oracles: hand-computed metric values, analytic derivatives of simple functions, and
deliberately wrong gradients (scaled, transposed, missing 1/m, missing the L2 term)
that the check must flag, naming the wrong parameter.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import manualgrad as mg
from manualgrad import course
from manualgrad._core.activations import ACTIVATIONS
from manualgrad._errors import DTypeError, ShapeError
from manualgrad.checking.gradcheck import (
    compare_with_autodiff,
    finite_difference_grads,
    network_kinks,
    relative_difference,
    stencil_kinks,
)

# ---------------------------------------------------------------------- relative_difference


def test_relative_difference_against_zero_is_one():
    # ‖g − 0‖ / (‖g‖ + 0) = 1
    assert relative_difference({"a": jnp.array([3.0, 4.0])}, {"a": jnp.zeros(2)}) == 1.0


def test_relative_difference_of_orthogonal_unit_vectors_is_sqrt2_over_2():
    g = {"a": np.array([1.0, 0.0])}
    h = {"a": np.array([0.0, 1.0])}
    assert relative_difference(g, h) == pytest.approx(math.sqrt(2) / 2, rel=1e-15)


def test_relative_difference_flattens_all_leaves_into_one_vector():
    # g − h = (0, 0 | 1): numerator 1; ‖g‖ = ‖(3, 4, 1)‖ = √26, ‖h‖ = ‖(3, 4, 0)‖ = 5
    g = {"W": np.array([[3.0, 4.0]]), "b": np.array([[1.0]])}
    h = {"W": np.array([[3.0, 4.0]]), "b": np.array([[0.0]])}
    assert relative_difference(g, h) == pytest.approx(1 / (math.sqrt(26) + 5), rel=1e-15)


def test_relative_difference_is_zero_for_equal_and_for_all_zero_gradients():
    g = {"W": np.array([[0.5, -2.0]])}
    assert relative_difference(g, g) == 0.0
    assert relative_difference({"W": np.zeros(3)}, {"W": np.zeros(3)}) == 0.0


def test_relative_difference_rejects_mismatched_trees():
    with pytest.raises(ShapeError, match="same structure"):
        relative_difference({"W1": np.ones(2)}, {"W2": np.ones(2)})
    with pytest.raises(ShapeError, match="matching leaf shapes"):
        relative_difference({"W1": np.ones((2, 1))}, {"W1": np.ones((1, 2))})


# ------------------------------------------------------------------ finite_difference_grads


def _analytic_cost(p):
    return jnp.sum(p["w"] ** 3) / 3 + jnp.sum(jnp.sin(p["b"]))


def test_finite_difference_grads_match_the_analytic_derivative_in_float64(x64):
    params = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.3, -1.2, 2.0])}
    fd = finite_difference_grads(_analytic_cost, params)
    exact = {"w": params["w"] ** 2, "b": jnp.cos(params["b"])}  # d/dw w³/3 = w², d/db sin = cos
    assert jax.tree.structure(fd) == jax.tree.structure(params)
    for k in params:
        assert fd[k].shape == params[k].shape
        np.testing.assert_allclose(fd[k], exact[k], rtol=1e-8, atol=1e-9)


def test_finite_difference_grads_refuse_float32():
    with pytest.raises(DTypeError, match="float64"):
        finite_difference_grads(_analytic_cost, {"w": jnp.ones(2), "b": jnp.ones(2)})


# -------------------------------------------------------------------- compare_with_autodiff

ACTS = ("tanh", "relu", "sigmoid")


def _problem(dims=(2, 3, 3, 1), m=9, l2=0.0):
    X, Y = mg.data.datasets.flower(m, seed=0)
    X, Y = jnp.asarray(X), jnp.asarray(Y)
    net = mg.network(ACTS, "bce", l2=l2)
    params = net.init(list(dims), jax.random.key(0), dtype=X.dtype)

    def cost_fn(p):
        return net.cost(p, X, Y)

    _, grads = jax.jit(net.value_and_grad)(params, X, Y)
    return params, grads, cost_fn, X, Y


def test_correct_grads_pass_every_row_in_params_order(x64):
    params, grads, cost_fn, *_ = _problem()
    report = compare_with_autodiff(grads, cost_fn, params, finite_differences=True)
    assert report.passed
    assert [row.name for row in report.rows] == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert max(row.autodiff for row in report.rows) <= 1e-12
    assert max(row.finite_difference for row in report.rows) <= 1e-6
    assert report.rows[2].shape == (3, 3)


def _scaled(grads, params):
    return {**grads, "W2": grads["W2"] * 1.01}


def _transposed(grads, params):
    return {**grads, "W2": grads["W2"].T}  # W2 is 3×3, so the shape still fits


def _missing_one_over_m(grads, params):
    return {**grads, "b2": grads["b2"] * 9}  # db = Σ dZ instead of (1/m) Σ dZ, m = 9


def _sign_flipped(grads, params):
    return {**grads, "W1": -grads["W1"]}


@pytest.mark.parametrize(
    ("corrupt", "wrong"),
    [
        (_scaled, "W2"),
        (_transposed, "W2"),
        (_missing_one_over_m, "b2"),
        (_sign_flipped, "W1"),
    ],
    ids=["scaled-by-1.01", "transposed", "missing-1-over-m", "sign-flipped"],
)
def test_a_wrong_gradient_fails_and_is_named_worst(x64, corrupt, wrong):
    params, grads, cost_fn, *_ = _problem()
    report = compare_with_autodiff(corrupt(grads, params), cost_fn, params)
    assert not report.passed
    assert report.worst == wrong
    assert [row.name for row in report.rows if not row.passed] == [wrong]


def test_a_forgotten_l2_term_is_caught_by_finite_differences_alone(x64):
    params, _, cost_fn, X, Y = _problem(l2=0.5)
    _, grads_without_l2 = jax.jit(mg.network(ACTS, "bce").value_and_grad)(params, X, Y)
    report = compare_with_autodiff(
        grads_without_l2, cost_fn, params, finite_differences=True, autodiff_tol=math.inf
    )
    failed = {row.name for row in report.rows if not row.passed}
    assert failed == {"W1", "W2", "W3"}  # biases are not regularised
    assert all(row.finite_difference > 1e-3 for row in report.rows if row.name in failed)


def test_course_style_grads_are_accepted_and_pass(x64):
    X, Y = mg.data.datasets.flower(8, seed=2)
    params = course.initialize_parameters_deep([2, 4, 3, 1], key=jax.random.key(1))
    params = {k: v * 50 for k, v in params.items()}  # randn · 0.5: not vanishingly small

    def cost_fn(p):
        return course.compute_cost(course.L_model_forward(X, p)[0], Y)

    AL, caches = course.L_model_forward(X, params)
    grads = course.L_model_backward(AL, Y, caches)  # has dA0, dA1, dA2 as well
    report = compare_with_autodiff(grads, cost_fn, params)
    assert report.passed, report


def test_float32_grads_pass_under_highest_matmul_precision():
    params, grads, cost_fn, *_ = _problem()
    assert params["W1"].dtype == jnp.float32
    with jax.default_matmul_precision("highest"):
        report = compare_with_autodiff(grads, cost_fn, params)
    assert report.autodiff_tol == 1e-5
    assert report.passed, report


def test_grads_with_a_missing_parameter_are_rejected(x64):
    params, grads, cost_fn, *_ = _problem()
    del grads["b3"]
    with pytest.raises(ShapeError, match="structure of `params`"):
        compare_with_autodiff(grads, cost_fn, params)


def test_report_to_dict_is_json_ready(x64):
    params, grads, cost_fn, *_ = _problem()
    data = json.loads(json.dumps(compare_with_autodiff(grads, cost_fn, params).to_dict()))
    assert data["passed"] is True
    assert [row["name"] for row in data["rows"]] == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert data["rows"][0]["finite_difference"] is None


# ------------------------------------------------------------------------- kinks (relu ties)


def test_stencil_kinks_flags_the_entries_whose_stencil_crosses_zero(x64):
    # z = w itself: w_i ± 1e-6 changes side of 0 exactly for |w_i| < 1e-6 (and for w_i = 0)
    params = {"w": jnp.array([3e-7, 0.5, -4e-7, -2.0, 0.0])}
    kinks = stencil_kinks(lambda p: [p["w"]], params, eps=1e-6)
    np.testing.assert_array_equal(kinks["w"], [True, False, True, False, True])


def _relu_tie_problem():
    """C(w) = Σ relu(w ⊙ x) with w_0 x_0 = 0, a tie; by hand ∂C/∂w = x ⊙ [w ⊙ x > 0]."""
    x = jnp.array([2.0, 1.0, -1.5])
    params = {"w": jnp.array([0.0, 0.7, -0.4])}

    def cost_fn(p):
        return jnp.sum(ACTIVATIONS["relu"].forward(p["w"] * x))

    hand = {"w": x * jnp.array([0.0, 1.0, 1.0])}  # z = (0, 0.7, 0.6)
    return params, hand, cost_fn, (lambda p: [p["w"] * x])


def test_a_relu_tie_is_reported_at_a_kink_instead_of_failing(x64):
    params, hand, cost_fn, kinks = _relu_tie_problem()
    without = compare_with_autodiff(hand, cost_fn, params, finite_differences=True)
    assert not without.passed  # the central difference at the tie is x_0 / 2 = 1, not 0
    report = compare_with_autodiff(hand, cost_fn, params, finite_differences=True, kinks=kinks)
    assert report.passed, report
    assert report.rows[0].at_kink == 1
    assert report.rows[0].finite_difference <= 1e-9


def test_a_wrong_entry_away_from_the_kink_still_fails(x64):
    params, hand, cost_fn, kinks = _relu_tie_problem()
    wrong = {"w": hand["w"].at[2].multiply(1.001)}
    report = compare_with_autodiff(wrong, cost_fn, params, finite_differences=True, kinks=kinks)
    assert not report.passed
    assert report.rows[0].finite_difference > 1e-4 and report.rows[0].at_kink == 1


@pytest.mark.parametrize("name", ["relu", "leaky_relu"])
def test_jax_grad_of_a_kinked_forward_at_zero_is_the_hand_written_derivative(x64, name):
    act = ACTIVATIONS[name]
    assert act.kink_at_zero
    z = jnp.zeros(())
    assert jax.grad(act.forward)(z) == act.derivative(z, act.forward(z))


@pytest.mark.parametrize("hidden", ["relu", "leaky_relu"])
def test_backward_equals_jax_grad_of_cost_where_dropout_leaves_Z_exactly_zero(x64, hidden):
    # one hidden unit per layer and keep_prob 0.5: about half the examples lose layer 1,
    # so Z2 = W2 · 0 + b2 = 0 exactly there (b starts at 0)
    X, Y = mg.data.datasets.flower(40, seed=3)
    X, Y = jnp.asarray(X), jnp.asarray(Y)
    net = mg.network(("tanh", hidden, "sigmoid"), keep_prob=0.5)
    params = net.init([2, 1, 3, 1], jax.random.key(3), dtype=X.dtype)
    key = jax.random.key(4)
    _, caches = net.forward(params, X, key)
    assert int(jnp.sum(caches.layers[1].Z == 0)) > 0  # the tie this test is about
    _, grads = jax.jit(net.value_and_grad)(params, X, Y, key)
    report = compare_with_autodiff(grads, lambda p: net.cost(p, X, Y, key), params)
    assert report.passed, report


def test_network_kinks_are_the_pre_activations_of_the_kinked_layers_only(x64):
    X, _ = mg.data.datasets.flower(6, seed=5)
    X = jnp.asarray(X)
    net = mg.network(["relu", "tanh", "leaky_relu", "sigmoid"], "bce")
    p = net.init([2, 3, 4, 3, 1], jax.random.key(5), dtype=X.dtype)
    # the forward pass written out with jax.nn: Z1 and Z3 are the relu and leaky_relu inputs
    Z1 = p["W1"] @ X + p["b1"]
    Z2 = p["W2"] @ jax.nn.relu(Z1) + p["b2"]
    Z3 = p["W3"] @ jnp.tanh(Z2) + p["b3"]
    kinks = network_kinks(net, p, X)
    assert len(kinks) == 2
    for got, want in zip(kinks, (Z1, Z3), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
