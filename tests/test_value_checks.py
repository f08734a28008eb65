"""Opt-in value checks (manualgrad.checking.value_checks): silent on clean data, usable under jit.

The failing cases (NaN in X/params/Y, bad bce labels, non-one-hot ce columns) are
entries of the error catalogue in tests/test_errors.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import manualgrad as mg
from manualgrad.checking.value_checks import check_values, checked_value_and_grad

ACTS = ("tanh", "softmax")


def _data(m=6):
    params = mg.init_params([3, 4, 3], jax.random.key(1))
    X = jax.random.normal(jax.random.key(2), (3, m))
    Y = jax.nn.one_hot(jnp.arange(m) % 3, 3, axis=0)
    return params, X, Y


def test_clean_inputs_pass_and_results_equal_value_and_grad_under_jit():
    params, X, Y = _data()
    net = mg.network(ACTS, "ce")
    err, (C, grads) = jax.jit(checked_value_and_grad(net))(params, X, Y)
    assert err.get() is None
    C_ref, grads_ref = mg.value_and_grad(params, X, Y, activations=ACTS, loss="ce")
    np.testing.assert_allclose(C, C_ref, rtol=1e-6)  # jit vs eager: fusion may round apart
    for k in params:
        np.testing.assert_allclose(grads[k], grads_ref[k], rtol=1e-6, atol=1e-7)


def test_check_values_inside_a_users_checkified_jitted_step_reports_nan():
    params, X, Y = _data()

    def step(params, X, Y):
        check_values(params, X, Y, loss="ce")
        return mg.cost(params, X, Y, activations=ACTS, loss="ce")

    f = jax.jit(checkify.checkify(step))
    assert f(params, X, Y)[0].get() is None
    err, _ = f(params, X.at[2, 3].set(jnp.inf), Y)  # same shapes: no retrace needed
    with pytest.raises(checkify.JaxRuntimeError, match=r"`X` has 1 non-finite entry "):
        err.throw()


@pytest.mark.parametrize(
    ("loss", "Y", "ok_soft"),
    [
        ("bce", jnp.array([[0.0, 0.3, 1.0]]), True),  # a soft label: fine only if soft
        ("bce", jnp.array([[0.0, -0.1, 1.0]]), False),  # outside [0, 1] either way
        ("ce", jnp.array([[0.2, 1.0, 0.0], [0.8, 0.0, 1.0]]), True),  # probability columns
        ("ce", jnp.array([[0.5, 1.0, 0.0], [0.8, 0.0, 1.0]]), False),  # column sums to 1.3
    ],
    ids=["bce-soft", "bce-negative", "ce-soft", "ce-not-a-distribution"],
)
def test_soft_labels_relaxes_the_label_check_only_to_valid_probabilities(loss, Y, ok_soft):
    n_L = Y.shape[0]
    params = mg.init_params([2, n_L], jax.random.key(0))
    X = jnp.ones((2, 3))
    acts = ("sigmoid",) if loss == "bce" else ("softmax",)
    net = mg.network(acts, loss)
    hard_err, _ = checked_value_and_grad(net)(params, X, Y)
    soft_err, _ = checked_value_and_grad(net, soft_labels=True)(params, X, Y)
    assert hard_err.get() is not None
    assert (soft_err.get() is None) == ok_soft


def test_mse_checks_finiteness_but_not_label_ranges():
    params = mg.init_params([2, 1], jax.random.key(0))
    X = jnp.ones((2, 3))
    checked = checked_value_and_grad(mg.network(["linear"], "mse"))
    err, _ = checked(params, X, jnp.array([[-5.0, 7.0, 2.0]]))
    assert err.get() is None
    err, _ = checked(params, X, jnp.array([[-5.0, jnp.nan, 2.0]]))
    assert "`Y` has 1 non-finite entry " in err.get()


def test_check_values_validates_shapes_at_trace_time_first():
    params, X, Y = _data()
    with pytest.raises(mg.errors.ShapeError, match=r"did you pass X transposed"):
        checkify.checkify(check_values)(params, X.T, Y)
