"""Numerical immunity: cost and gradients stay finite and exact at extreme logits.

For every valid output activation × loss pair, the output pre-activations Z[L] are driven
to ±big (big up to 1e4 and 1e36 in float32, 1e300 in float64) by a huge last-layer bias,
in a one-layer and a three-layer net. The oracle is `jax.grad` of `helpers.reference_cost`
— optax's `sigmoid_binary_cross_entropy` / `softmax_cross_entropy`, or ½‖g(z) − y‖² with
`jax.nn` activations — evaluated in float64 on the same values.

Inputs are built so Z[L] is the same number in the library and in the oracle: W and X
hold small dyadic numbers (their products are exact), so in float32 the logits are
exact too and the only differences left are the final roundings.

The real limits (documented, not hidden): mse after an unbounded output (linear, relu,
leaky_relu) has cost ½ z², which overflows for |z| ≳ sqrt(max) — 1.8e19 in float32,
1.3e154 in float64 — so those pairs are verified at 1e4 and 1e150. Bounded pairs fail
only near the top of the range: float32 at 1e38 overflows the *sum* of per-example
losses (C itself ≈ 1e38) — verified here at 1e36; float64 at 1e300.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import manualgrad as mg
from helpers import TOL, reference_cost, rel_err

BOUNDED = ("sigmoid", "tanh", "softmax")
PAIRS = [("sigmoid", "bce"), ("softmax", "ce")] + [(a, "mse") for a in mg.activations.ACTIVATIONS]


def magnitudes(output, dtype):
    if dtype == jnp.float32:
        return [1e4, 1e36] if output in BOUNDED else [1e4]
    return [1e300] if output in BOUNDED else [1e150]


def extreme_net(output, loss, big, dtype, *, depth, m):
    """Params, X, Y with Z[L] rows ≈ (+big, −big, small) and labels that agree and disagree."""
    rng = np.random.default_rng(0)
    dims = [3] + [4] * (depth - 1) + [3]
    params = {}
    for l in range(1, depth + 1):
        W = rng.integers(-4, 5, (dims[l], dims[l - 1])) / 8  # dyadic: products are exact
        b = rng.integers(-4, 5, (dims[l], 1)) / 8
        params[f"W{l}"], params[f"b{l}"] = W, b
    params[f"b{depth}"] = np.array([[big], [-big], [0.5]])
    X = rng.integers(-2, 3, (3, m)) / 2
    if loss == "ce":
        Y = np.eye(3)[:, rng.integers(0, 3, m)]
    elif loss == "bce":
        Y = rng.integers(0, 2, (3, m)).astype(float)
    else:
        Y = rng.uniform(0, 1, (3, m))
    if output == "softmax" and loss == "mse":
        Y = Y / Y.sum(axis=0)
    cast = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    hidden = ("relu", "tanh")[: depth - 1]
    return {k: cast(v) for k, v in params.items()}, cast(X), cast(Y), (*hidden, output)


def assert_matches_reference(params, X, Y, activations, loss, dtype):
    with jax.default_matmul_precision("highest"):
        C, grads = mg.network(activations, loss).value_and_grad(params, X, Y)
    to64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t)  # noqa: E731
    C_ref, grads_ref = jax.value_and_grad(reference_cost)(
        to64(params), to64(X), to64(Y), activations, loss
    )
    assert np.isfinite(float(C_ref)), "the oracle itself overflowed: inputs out of range"
    assert np.isfinite(float(C)), f"cost {C}"
    for k in params:
        assert grads[k].dtype == dtype
        assert np.all(np.isfinite(np.asarray(grads[k]))), f"d{k} not finite: {grads[k]}"
    errors = {"C": rel_err(C, C_ref)} | {k: rel_err(grads[k], grads_ref[k]) for k in params}
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOL[dtype], f"worst {worst}: {errors[worst]:.2e} ({errors})"
    return errors


CASES = [
    pytest.param(output, loss, dtype, big, depth, m,
                 id=f"{output}-{loss}-{jnp.dtype(dtype).name}-{big:.0e}-L{depth}-m{m}")
    for output, loss in PAIRS
    for dtype in (jnp.float32, jnp.float64)
    for big in magnitudes(output, dtype)
    for depth, m in ((1, 1), (3, 4))
]  # fmt: skip


@pytest.mark.parametrize(("output", "loss", "dtype", "big", "depth", "m"), CASES)
def test_cost_and_grads_finite_and_exact_at_extreme_logits(x64, output, loss, dtype, big,
                                                           depth, m):  # fmt: skip
    params, X, Y, acts = extreme_net(output, loss, big, dtype, depth=depth, m=m)
    assert_matches_reference(params, X, Y, acts, loss, dtype)


@pytest.mark.parametrize("hidden", ["sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
def test_saturated_hidden_layer_gives_exact_zero_derivative(x64, hidden, dtype):
    big = 1e4 if dtype == jnp.float32 else 1e300
    params, X, Y, _ = extreme_net("sigmoid", "bce", 1.0, dtype, depth=2, m=4)
    params["W1"] = jnp.zeros_like(params["W1"])
    params["b1"] = jnp.asarray([[big], [-big], [big], [-big]], dtype)
    assert_matches_reference(params, X, Y, (hidden, "sigmoid"), "bce", dtype)
    _, grads = mg.network((hidden, "sigmoid"), "bce").value_and_grad(params, X, Y)
    assert np.all(np.asarray(grads["b1"]) == 0)  # σ'(±big) = tanh'(±big) = 0 exactly


@pytest.mark.parametrize("hidden", ["relu", "leaky_relu"])
def test_relu_derivative_at_exactly_zero_follows_the_course(x64, hidden):
    params, X, Y, _ = extreme_net("sigmoid", "bce", 1.0, jnp.float64, depth=2, m=4)
    params["W1"] = params["W1"].at[:2].set(0.0)
    params["b1"] = params["b1"].at[:2].set(0.0)  # Z1 rows 0, 1 are exactly 0
    assert_matches_reference(params, X, Y, (hidden, "sigmoid"), "bce", jnp.float64)
    _, grads = mg.network((hidden, "sigmoid"), "bce").value_and_grad(params, X, Y)
    dZ1_rows = np.asarray(grads["b1"][:2])  # db1 = mean(dA1 ⊙ g'(0))
    if hidden == "relu":
        assert np.all(dZ1_rows == 0)  # g'(0) = 0; jnp.maximum's jax.grad would give 1/2
    else:
        assert np.all(dZ1_rows != 0)  # g'(0) = 0.01


def test_all_examples_in_one_class_is_finite_and_exact(x64):
    params, X, _, acts = extreme_net("softmax", "ce", 1e300, jnp.float64, depth=3, m=4)
    Y = jnp.zeros((3, 4)).at[1].set(1.0)  # every example in the class whose logit is −1e300
    assert_matches_reference(params, X, Y, acts, "ce", jnp.float64)


def test_softmax_over_one_class_has_zero_cost_and_zero_grads(x64):
    """n_L = 1 softmax is degenerate (a ≡ 1), allowed: C = 0 and every gradient is 0."""
    net = mg.network(["tanh", "softmax"], "ce")
    params = net.init([3, 2, 1], jax.random.key(0), dtype=jnp.float64)
    X = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
    Y = jnp.ones((1, 4))
    C, grads = jax.jit(net.value_and_grad)(params, X, Y)
    assert float(C) == 0.0
    assert all(np.all(np.asarray(g) == 0) for g in grads.values())
    assert_matches_reference(params, X, Y, ("tanh", "softmax"), "ce", jnp.float64)
