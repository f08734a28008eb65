"""The custom_vjp bridge: `jax.grad` of `cost_fn` is the hand-written backward, and exact.

Oracles: `jax.grad` of the independent `helpers.reference_cost`, `jax.grad` of the
network's plain `net.cost` (autodiff through its forward), and `net.value_and_grad` (the
hand-written backward called directly). float64, relative error ≤ 1e-12.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import manualgrad as mg
from helpers import dense_network, problem, reference_cost, rel_err

CASES = {
    "relu-sigmoid-bce": ([5, 4, 3, 1], ("relu", "relu", "sigmoid"), "bce", {}),
    "tanh-softmax-ce": ([4, 6, 3], ("tanh", "softmax"), "ce", {}),
    "leaky-linear-mse": ([3, 5, 2], ("leaky_relu", "linear"), "mse", {}),
    "relu-sigmoid-bce-l2": ([5, 4, 1], ("relu", "sigmoid"), "bce", {"l2": 0.7}),
    "relu-sigmoid-bce-dropout": (
        [5, 6, 4, 1],
        ("relu", "relu", "sigmoid"),
        "bce",
        {"keep_prob": 0.8},
    ),
}


def _problem(layer_dims, loss, m=7, seed=0, dtype=jnp.float64):
    return problem(layer_dims, loss, m, seed=seed, dtype=dtype)


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request, x64):
    layer_dims, acts, loss, opts = CASES[request.param]
    params, X, Y = _problem(layer_dims, loss)
    key = jax.random.key(3) if opts.get("keep_prob", 1.0) < 1 else None
    return params, X, Y, key, dense_network(layer_dims, acts, loss, **opts)


def test_bridge_value_equals_plain_cost(case):
    params, X, Y, key, net = case
    C = jax.jit(net.custom_vjp_cost)(params, X, Y, key)
    C_ref = jax.jit(net.cost)(params, X, Y, key)
    assert rel_err(C, C_ref) <= 1e-12


def test_bridge_grad_equals_value_and_grad_and_autodiff(case):
    params, X, Y, key, net = case
    got = jax.jit(jax.grad(net.custom_vjp_cost))(params, X, Y, key)
    _, manual = jax.jit(net.value_and_grad)(params, X, Y, key)
    autodiff = jax.jit(jax.grad(net.cost))(params, X, Y, key)
    assert rel_err(got, manual) <= 1e-12
    assert rel_err(got, autodiff) <= 1e-12


def test_bridge_grad_wrt_X_and_Y_equals_autodiff(case):
    params, X, Y, key, net = case
    got = jax.jit(jax.grad(net.custom_vjp_cost, argnums=(1, 2)))(params, X, Y, key)
    want = jax.jit(jax.grad(net.cost, argnums=(1, 2)))(params, X, Y, key)
    assert rel_err(got, want) <= 1e-12


def test_bridge_cotangent_scales_the_grads(x64):
    acts = ("relu", "sigmoid")
    params, X, Y = _problem([4, 3, 1], "bce")
    f = mg.network(acts).custom_vjp_cost
    got = jax.jit(jax.grad(lambda p: -2.5 * f(p, X, Y)))(params)
    want = jax.grad(lambda p: -2.5 * reference_cost(p, X, Y, acts, "bce"))(params)
    assert rel_err(got, want) <= 1e-12


def test_bridge_value_and_grad_equals_manual_and_is_a_custom_vjp(x64):
    params, X, Y = _problem([5, 4, 3, 1], "bce", m=11)
    net = mg.network(("relu", "tanh", "sigmoid"))
    f = net.custom_vjp_cost
    C, got = jax.jit(jax.value_and_grad(f))(params, X, Y)
    C_ref, want = jax.jit(net.value_and_grad)(params, X, Y)
    assert rel_err(C, C_ref) <= 1e-12
    assert rel_err(got, want) <= 1e-12
    assert "custom_vjp_call" in str(jax.make_jaxpr(f)(params, X, Y))


def test_bridge_trains_with_optax_like_autodiff(x64):
    params0, X, Y = _problem([4, 5, 1], "bce", m=16)
    acts = ("relu", "sigmoid")
    f = mg.network(acts, l2=0.1).custom_vjp_cost

    def ref(p, X, Y):
        return reference_cost(p, X, Y, acts, "bce", l2=0.1)

    def train(loss_fn):
        opt = optax.adam(0.05)

        @jax.jit
        def step(carry, _):
            p, s = carry
            g = jax.grad(loss_fn)(p, X, Y)
            with jax.numpy_dtype_promotion("standard"):  # optax is written for standard promotion
                u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(step, (params0, opt.init(params0)), None, length=20)
        return p

    got, want = train(f), train(ref)
    assert rel_err(got, want) <= 1e-10
    assert float(f(got, X, Y)) < float(f(params0, X, Y))


def test_bridge_float32_matches_autodiff():
    with jax.default_matmul_precision("highest"):
        params, X, Y = _problem([6, 5, 1], "bce", dtype=jnp.float32)
        net = mg.network(("relu", "sigmoid"))
        got = jax.jit(jax.grad(net.custom_vjp_cost))(params, X, Y)
        want = jax.grad(reference_cost)(params, X, Y, ("relu", "sigmoid"), "bce")
        assert rel_err(got, want) <= 1e-5


def test_bridge_rejects_traced_l2():
    with pytest.raises(mg.errors.ConfigError, match="Python number"):
        jax.jit(lambda lam: mg.network(("sigmoid",), l2=lam).custom_vjp_cost)(np.float32(0.1))


def test_bridge_validates_inputs_at_trace_time():
    net = mg.network(("relu", "sigmoid"))
    f = net.custom_vjp_cost
    params = net.init([3, 2, 1], jax.random.key(0))
    with pytest.raises(mg.errors.ShapeError, match="transposed"):
        f(params, jnp.ones((4, 3)), jnp.ones((1, 4)))
