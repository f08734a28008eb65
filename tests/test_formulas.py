"""Each single formula (1)–(5) against `jax.vjp` / `jax.grad` of its forward rule (float64)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import F64_TOL, REFERENCE_ACTIVATIONS, reference_losses, rel_err
from manualgrad._core import dense, losses
from manualgrad._core.activations import ACTIVATIONS, HIDDEN_ACTIVATIONS
from manualgrad._core.losses import LOSSES

pytestmark = pytest.mark.usefixtures("x64")

TOL = F64_TOL


def _normal(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float64)


def _layer(n_prev=5, n=4, m=7):
    return _normal(0, (n, n_prev)), _normal(1, (n, 1)), _normal(2, (n_prev, m)), _normal(3, (n, m))


def test_linear_forward_is_W_A_prev_plus_b():
    W, b, A_prev, _ = _layer()
    expected = np.asarray(W) @ np.asarray(A_prev) + np.asarray(b)
    np.testing.assert_allclose(dense.linear_forward(W, b, A_prev), expected, rtol=TOL)


def test_formula_1_is_outer_product_of_dz_and_a_prev():
    dz, a_prev = np.asarray(_normal(4, (4,))), np.asarray(_normal(5, (6,)))
    dW = np.asarray(dense.example_weight_grad(jnp.asarray(dz), jnp.asarray(a_prev)))
    assert dW.shape == (4, 6)
    for i in range(4):
        for j in range(6):
            assert dW[i, j] == dz[i] * a_prev[j]  # exact: one product each
    np.testing.assert_array_equal(dense.example_bias_grad(jnp.asarray(dz)), dz[:, None])


def test_formula_1_matches_vjp_of_one_example_forward():
    W, b, _, _ = _layer()
    a_prev, dz = _normal(6, (5,)), _normal(7, (4,))
    _, vjp = jax.vjp(lambda W, b: W @ a_prev + b[:, 0], W, b)
    dW_ref, db_ref = vjp(dz)
    assert rel_err(dense.example_weight_grad(dz, a_prev), dW_ref) <= TOL
    assert rel_err(dense.example_bias_grad(dz), db_ref) <= TOL


def test_formula_2_weight_grad_matches_vjp():
    W, b, A_prev, dZ = _layer()
    m = A_prev.shape[1]
    _, vjp = jax.vjp(lambda W: W @ A_prev + b, W)
    (dW_ref,) = vjp(dZ)
    assert rel_err(dense.weight_grad(dZ, A_prev), dW_ref / m) <= TOL


def test_formula_2_bias_grad_matches_vjp():
    W, b, A_prev, dZ = _layer()
    m = A_prev.shape[1]
    _, vjp = jax.vjp(lambda b: W @ A_prev + b, b)
    (db_ref,) = vjp(dZ)
    db = dense.bias_grad(dZ)
    assert db.shape == b.shape
    assert rel_err(db, db_ref / m) <= TOL


def test_formula_2_is_the_mean_of_formula_1_over_examples():
    _, _, A_prev, dZ = _layer()
    mean_of_outer = jnp.mean(jax.vmap(dense.example_weight_grad, in_axes=1)(dZ, A_prev), axis=0)
    assert rel_err(dense.weight_grad(dZ, A_prev), mean_of_outer) <= TOL


def test_formula_4_prev_activation_grad_matches_vjp():
    W, b, A_prev, dZ = _layer()
    _, vjp = jax.vjp(lambda A: W @ A + b, A_prev)
    (dA_ref,) = vjp(dZ)
    assert rel_err(dense.prev_activation_grad(W, dZ), dA_ref) <= TOL
    assert rel_err(dense.prev_activation_grad(W, dZ[:, 0]), dA_ref[:, 0]) <= TOL


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_formula_5_activation_backward_matches_vjp(name):
    act = ACTIVATIONS[name]
    Z, dA = _normal(8, (4, 9)), _normal(9, (4, 9))
    _, vjp = jax.vjp(REFERENCE_ACTIVATIONS[name], Z)
    (dZ_ref,) = vjp(dA)
    dZ = dense.activation_backward(dA, Z, act.forward(Z), act)
    assert rel_err(dZ, dZ_ref) <= TOL


@pytest.mark.parametrize("name", HIDDEN_ACTIVATIONS)
def test_activation_derivative_matches_jax_grad_elementwise(name):
    act = ACTIVATIONS[name]
    z = jnp.concatenate([_normal(10, (50,)), jnp.array([-3.0, -1e-3, 1e-3, 3.0])])
    ref = jax.vmap(jax.grad(REFERENCE_ACTIVATIONS[name]))(z)
    assert rel_err(act.derivative(z, act.forward(z)), ref) <= TOL


def test_relu_derivative_at_zero_is_zero_as_in_the_course():
    act = ACTIVATIONS["relu"]
    z = jnp.zeros(3)
    np.testing.assert_array_equal(act.derivative(z, act.forward(z)), np.zeros(3))


@pytest.mark.parametrize("hidden", HIDDEN_ACTIVATIONS)
def test_formula_3_chain_matches_vjp_through_next_layer(hidden):
    """dZ[l] = W[l+1]ᵀ dZ[l+1] ⊙ g'(Z[l]): (4) followed by (5), vs vjp of Z[l] ↦ Z[l+1]."""
    act = ACTIVATIONS[hidden]
    W_next, b_next = _normal(11, (3, 4)), _normal(12, (3, 1))
    Z, dZ_next = _normal(13, (4, 6)), _normal(14, (3, 6))
    _, vjp = jax.vjp(lambda Z: W_next @ REFERENCE_ACTIVATIONS[hidden](Z) + b_next, Z)
    (dZ_ref,) = vjp(dZ_next)
    dA = dense.prev_activation_grad(W_next, dZ_next)
    dZ = dense.activation_backward(dA, Z, act.forward(Z), act)
    assert rel_err(dZ, dZ_ref) <= TOL


OUTPUT_PAIRS = [("sigmoid", "bce"), ("softmax", "ce")] + [(a, "mse") for a in ACTIVATIONS]


def _targets(loss, shape):
    if loss == "bce":
        return jax.random.bernoulli(jax.random.key(15), 0.5, shape).astype(jnp.float64)
    if loss == "ce":
        return jax.nn.one_hot(jnp.arange(shape[1]) % shape[0], shape[0], dtype=jnp.float64).T
    return _normal(15, shape)


@pytest.mark.parametrize(("output", "loss"), OUTPUT_PAIRS, ids=lambda x: x)
def test_fused_output_dZ_matches_vjp_of_loss(output, loss):
    """dZ[L] (fused A − Y or (5) on dA[L]) equals ∂L_i/∂z[L] from optax's losses."""
    act, spec = ACTIVATIONS[output], LOSSES[loss]
    n_L = 1 if loss == "bce" else 3
    ZL = _normal(16, (n_L, 8))
    Y = _targets(loss, ZL.shape)
    _, vjp = jax.vjp(lambda Z: reference_losses(Z, Y, output, loss), ZL)
    (dZ_ref,) = vjp(jnp.ones(ZL.shape[1]))
    assert rel_err(losses.output_backward(ZL, act.forward(ZL), Y, act, spec), dZ_ref) <= TOL


@pytest.mark.parametrize("loss", list(LOSSES))
def test_loss_dA_matches_jax_grad_of_loss_in_a(loss):
    """dA[L] = ∂L/∂a, including the course's dAL = −(Y/AL − (1−Y)/(1−AL)) for bce."""
    spec = LOSSES[loss]
    AL = jax.nn.sigmoid(_normal(17, (3, 5)))
    if loss == "ce":
        AL = AL / jnp.sum(AL, axis=0, keepdims=True)
    Y = _targets(loss, AL.shape)
    by_formula = {
        "bce": lambda a: -jnp.sum(Y * jnp.log(a) + (1 - Y) * jnp.log(1 - a)),
        "ce": lambda a: -jnp.sum(Y * jnp.log(a)),
        "mse": lambda a: 0.5 * jnp.sum((a - Y) ** 2),
    }[loss]
    assert rel_err(spec.dA(AL, Y), jax.grad(by_formula)(AL)) <= TOL


@pytest.mark.parametrize(("output", "loss"), OUTPUT_PAIRS, ids=lambda x: x)
def test_per_example_loss_matches_optax(output, loss):
    act, spec = ACTIVATIONS[output], LOSSES[loss]
    ZL = _normal(18, (1 if loss == "bce" else 3, 8))
    Y = _targets(loss, ZL.shape)
    assert (
        rel_err(spec.per_example(ZL, act.forward(ZL), Y), reference_losses(ZL, Y, output, loss))
        <= TOL
    )
