"""Per-example gradients, exact per-example norms, clipped and DP gradients.

`mg.per_example.f(net, params, X, Y, …)` (and the network's bound `net.f`) against the
oracles of tests/helpers.py: `jax.vmap(jax.grad)` of the one-example loss
`helpers.oracle_loss`, independent of manualgrad's hand-written derivatives, in float64
to ≤ 1e-12 relative (`helpers.rel_err`). Hypothesis draws random data for a pool of
architectures; fixed architectures repeat the properties under `jax.jit`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

import helpers
import manualgrad as mg
from helpers import (
    F32_TOL,
    F64_TOL,
    REFERENCE_ACTIVATIONS,
    clipped_mean,
    dense_network,
    example_norms,
    oracle_loss,
    oracle_per_example,
    rel_err,
)
from manualgrad._core.regularization import dropout_masks

TOL64, TOL32 = F64_TOL, F32_TOL
pe = mg.per_example


@functools.partial(jax.jit, static_argnames=("acts", "loss", "keep_prob"))
def oracle_norms_and_clipped(params, X, Y, C, *, acts, loss, masks=None, keep_prob=1.0):
    """(‖g_i‖ of vmap(jax.grad), its explicit clipped mean at C), in one compile (C traced)."""
    per_ex = oracle_per_example(params, X, Y, acts, loss, masks, keep_prob)
    return example_norms(per_ex), clipped_mean(per_ex, C)


def between(norms):
    """A clip norm halfway between the smallest and the largest per-example norm."""
    return max(0.5 * (float(np.min(norms)) + float(np.max(norms))), 1e-3)


class Problem(NamedTuple):
    """An architecture and a data seed: its network (from mg.layers.Dense) and its data."""

    dims: tuple[int, ...]
    acts: tuple[str, ...]
    loss: str
    m: int
    seed: int = 0

    def data(self, dtype=jnp.float64):
        """Params (Xavier-scaled W, nonzero b), X and Y from `helpers.problem`."""
        return helpers.problem(
            self.dims, self.loss, self.m, seed=self.seed, dtype=dtype, method="xavier"
        )

    def net(self, **options):
        return dense_network(self.dims, self.acts, self.loss, **options)


# Architectures for the property tests. Hypothesis draws one of them with a random data
# seed: each architecture costs one XLA compile of `evaluate` (shared by all tests), which
# keeps the file fast, and together they cover every loss, every hidden activation, fused
# and unfused output layers, no hidden layer, width-1 layers, m = 1 and a 4-layer network.
POOL = {
    "logistic-bce2": Problem((3, 2), ("sigmoid",), "bce", 4),
    "relu-tanh-softmax-ce": Problem((4, 5, 3, 3), ("relu", "tanh", "softmax"), "ce", 6),
    "leaky-sigmoid-linear-mse": Problem(
        (2, 3, 4, 2), ("leaky_relu", "sigmoid", "linear"), "mse", 7
    ),
    "narrow-deep-m1-tanh-mse": Problem(
        (1, 1, 2, 1, 1), ("relu", "linear", "sigmoid", "tanh"), "mse", 1
    ),
}
REGIMES = ("below", "between", "above")
#: the tests of `results` run on one xdist worker, so each POOL architecture compiles once
POOL_GROUP = pytest.mark.xdist_group("per_example_pool")


@st.composite
def problems(draw):
    arch = POOL[draw(st.sampled_from(sorted(POOL)))]
    return arch._replace(seed=draw(st.integers(0, 2**16)))


def clip_norms(norms):
    """C below all per-example norms, between the smallest and largest, and above all."""
    lo, hi = jnp.min(norms), jnp.max(norms)
    Cs = {"below": 0.5 * lo, "between": 0.5 * (lo + hi), "above": 2.0 * hi}
    return {r: jnp.maximum(C, 1e-3) for r, C in Cs.items()}


@functools.partial(jax.jit, static_argnames=("net", "acts"))
def evaluate(params, X, Y, *, net, acts):
    """Everything the property tests compare, manualgrad's and the oracle's, in one compile.

    The three clip norms (REGIMES) are a vmapped axis, so clipping compiles once. `net`
    is a static argument: a network is hashable.
    """
    oracle = oracle_per_example(params, X, Y, acts, net.loss)
    Cs = clip_norms(example_norms(oracle))
    Cs = jnp.stack([Cs[r] for r in REGIMES])

    def clipped(C):
        return pe.clipped_grads(net, params, X, Y, C)

    def unstack(tree):
        return {r: jax.tree.map(lambda v, i=i: v[i], tree) for i, r in enumerate(REGIMES)}

    return {
        "oracle": oracle,
        "oracle_norms": example_norms(oracle),
        "oracle_clipped": unstack(jax.vmap(lambda C: clipped_mean(oracle, C))(Cs)),
        "per_example": pe.per_example_grads(net, params, X, Y),
        "grads": net.value_and_grad(params, X, Y)[1],
        "norms": pe.per_example_norms(net, params, X, Y),
        "clipped": unstack(jax.vmap(clipped)(Cs)),
        "dp0": pe.dp_grads(net, params, X, Y, jax.random.key(0), Cs[1], 0.0),
        "factors": pe.clip_factors(example_norms(oracle) ** 2, Cs[1]),
        "Cs": dict(zip(REGIMES, Cs, strict=True)),
    }


def results(problem):
    params, X, Y = problem.data()
    return evaluate(params, X, Y, net=problem.net(), acts=problem.acts)


def oracle_kw(problem):
    return {"acts": problem.acts, "loss": problem.loss}


# ---------------------------------------------------------------------------------------
# Formulas (1) and (2)   (all property tests run under jax.jit, through `evaluate`)
# ---------------------------------------------------------------------------------------


@POOL_GROUP
@given(problem=problems())
def test_formula_2_is_the_mean_over_examples_of_per_example_grads(x64, problem):
    r = results(problem)
    mean = {k: jnp.mean(v, axis=0) for k, v in r["per_example"].items()}
    assert rel_err(mean, r["grads"]) <= TOL64


@POOL_GROUP
@given(problem=problems())
def test_per_example_grads_equal_vmap_of_jax_grad(x64, problem):
    r = results(problem)
    assert rel_err(r["per_example"], r["oracle"]) <= TOL64


@POOL_GROUP
def test_per_example_grads_have_leading_example_axis(x64):
    problem = POOL["relu-tanh-softmax-ce"]
    params, _, _ = problem.data()
    shapes = {k: v.shape for k, v in results(problem)["per_example"].items()}
    assert shapes == {k: (problem.m, *v.shape) for k, v in params.items()}


def _a_prev_and_dz(params, x, y, acts, loss, l):
    """a[l-1] of one example (the oracle's forward) and dz[l] = ∂L/∂b[l] of the oracle."""
    a = x
    for k in range(1, l):
        z = jnp.matmul(params[f"W{k}"], a, precision="highest") + params[f"b{k}"][:, 0]
        a = REFERENCE_ACTIVATIONS[acts[k - 1]](z)
    dz = jax.grad(oracle_loss)(params, x, y, acts, loss)[f"b{l}"][:, 0]  # ∂L/∂b = dz
    return np.asarray(a), np.asarray(dz)


@pytest.mark.parametrize("name", ["relu-tanh-softmax-ce", "narrow-deep-m1-tanh-mse"])
def test_formula_1_elementwise_dW_ij_is_dz_i_times_a_prev_j(x64, name):
    problem = POOL[name]
    params, X, Y = problem.data()
    x, y = X[:, -1], Y[:, -1]
    g = jax.jit(functools.partial(pe.one_example_grads, problem.net()))(params, x, y)
    for l in range(1, len(problem.acts) + 1):
        a_prev, dz = _a_prev_and_dz(params, x, y, problem.acts, problem.loss, l)
        dW = np.asarray(g[f"W{l}"])
        scale = max(np.abs(dz).max() * np.abs(a_prev).max(), 1e-300)
        for i in range(dW.shape[0]):
            for j in range(dW.shape[1]):
                assert abs(dW[i, j] - dz[i] * a_prev[j]) <= TOL64 * scale, (l, i, j)
            assert abs(g[f"b{l}"][i, 0] - dz[i]) <= TOL64 * max(np.abs(dz).max(), 1e-300)


# ---------------------------------------------------------------------------------------
# Norms and clipping
# ---------------------------------------------------------------------------------------


@POOL_GROUP
@given(problem=problems())
def test_per_example_norms_equal_norms_of_vmap_jax_grad(x64, problem):
    r = results(problem)
    got, want = r["norms"], r["oracle_norms"]
    assert got.shape == (problem.m,)
    assert float(jnp.max(jnp.abs(got - want))) <= TOL64 * max(float(jnp.max(want)), 1e-300)


@POOL_GROUP
@pytest.mark.parametrize("regime", REGIMES)
@given(problem=problems())
def test_clipped_grads_equal_explicit_clipping_of_vmap_jax_grad(x64, regime, problem):
    r = results(problem)
    assert rel_err(r["clipped"][regime], r["oracle_clipped"][regime]) <= TOL64


@POOL_GROUP
def test_clip_regime_between_clips_some_examples_and_not_others(x64):
    """Guards the clipping test: with C 'between', some s_i < 1 and some s_i = 1."""
    s = results(POOL["relu-tanh-softmax-ce"])["factors"]
    assert bool(jnp.any(s < 1)) and bool(jnp.any(s == 1))


def test_clipped_grads_add_l2_once_after_clipping(x64):
    problem, lam, C = POOL["leaky-sigmoid-linear-mse"], 0.7, 0.05
    params, X, Y = problem.data()
    _, want = oracle_norms_and_clipped(params, X, Y, C, **oracle_kw(problem))

    def l2_cost(p):
        return (
            lam
            / (2 * problem.m)
            * sum(jnp.sum(p[f"W{l}"] ** 2) for l in range(1, len(problem.acts) + 1))
        )

    want = jax.tree.map(jnp.add, want, jax.jit(jax.grad(l2_cost))(params))
    got = jax.jit(problem.net(l2=lam).clipped_grads)(params, X, Y, C)
    assert rel_err(got, want) <= TOL64


@POOL_GROUP
def test_eager_calls_agree_with_the_jitted_ones(x64):
    problem = POOL["logistic-bce2"]
    params, X, Y = problem.data()
    r = results(problem)
    C = float(r["Cs"]["between"])
    eager = pe.clipped_grads(problem.net(), params, X, Y, C)
    assert rel_err(eager, r["oracle_clipped"]["between"]) <= TOL64


# ---------------------------------------------------------------------------------------
# Dropout: per-example masks are the columns of value_and_grad's masks
# ---------------------------------------------------------------------------------------


def _dropout_case():
    problem = Problem((3, 6, 5, 2), ("relu", "tanh", "softmax"), "ce", 8, 4)
    params, X, Y = problem.data()
    key, keep_prob = jax.random.key(11), 0.7
    masks = dropout_masks(key, [(6, 8), (5, 8)], keep_prob)
    return problem, params, X, Y, key, keep_prob, masks


def test_per_example_grads_with_dropout_average_to_value_and_grad(x64):
    problem, params, X, Y, key, kp, _ = _dropout_case()
    net = problem.net(keep_prob=kp)
    per_ex = jax.jit(net.per_example_grads)(params, X, Y, key)
    _, grads = jax.jit(net.value_and_grad)(params, X, Y, key)
    assert rel_err({k: jnp.mean(v, axis=0) for k, v in per_ex.items()}, grads) <= TOL64


def test_clipped_grads_with_dropout_clip_each_example_under_its_own_mask(x64):
    problem, params, X, Y, key, kp, masks = _dropout_case()
    kw = {**oracle_kw(problem), "masks": masks, "keep_prob": kp}
    norms, _ = oracle_norms_and_clipped(params, X, Y, 1.0, **kw)
    C = between(norms)
    _, want = oracle_norms_and_clipped(params, X, Y, C, **kw)
    got = jax.jit(problem.net(keep_prob=kp).clipped_grads)(params, X, Y, C, key)
    assert rel_err(got, want) <= TOL64


# ---------------------------------------------------------------------------------------
# Zero per-example gradient: no NaN, in values or in the gradient of the clipped sum
# ---------------------------------------------------------------------------------------


def _zero_gradient_case():
    """Example 0 has g_0 = 0 exactly: x = 0 and b1 = −1 kill every relu, and y = 0 = a[L]."""
    problem = Problem((2, 3, 3, 1), ("relu", "relu", "linear"), "mse", 5, 5)
    params, X, Y = problem.data()
    params["b1"] = jnp.full_like(params["b1"], -1.0)
    params["b2"], params["b3"] = jnp.zeros_like(params["b2"]), jnp.zeros_like(params["b3"])
    X = (3.0 * X).at[:, 0].set(0.0)
    Y = Y.at[:, 0].set(0.0)
    norms, _ = oracle_norms_and_clipped(params, X, Y, 1.0, **oracle_kw(problem))
    assert float(norms[0]) == 0.0 and bool(np.all(norms[1:] > 0))  # the case is what it claims
    C = 0.5 * float(np.min(norms[1:]))
    _, want = oracle_norms_and_clipped(params, X, Y, C, **oracle_kw(problem))
    return problem, params, X, Y, want, C


def test_zero_gradient_example_gives_finite_exact_clipped_grads(x64):
    problem, params, X, Y, want, C = _zero_gradient_case()
    got = jax.jit(problem.net().clipped_grads)(params, X, Y, C)
    assert rel_err(got, want) <= TOL64  # finite, and right


def test_zero_gradient_example_gives_finite_gradient_through_clipping(x64):
    problem, params, X, Y, _, C = _zero_gradient_case()

    def total(p):
        g = pe.clipped_grads(problem.net(), p, X, Y, C)
        return sum(jnp.sum(v) for v in g.values())

    outer = jax.jit(jax.grad(total))(params)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in outer.values())


def test_zero_gradient_example_has_norm_zero_and_finite_dp_grads(x64):
    problem, params, X, Y, _, C = _zero_gradient_case()
    net = problem.net()
    assert float(jax.jit(net.per_example_norms)(params, X, Y)[0]) == 0.0
    dp = jax.jit(net.dp_grads)(params, X, Y, jax.random.key(0), C, 1.0)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in dp.values())


def test_clip_factors_are_one_with_zero_derivative_at_zero_norm(x64):
    sq = jnp.array([0.0, 0.25, 4.0, 16.0])
    s, ds = jax.jvp(lambda q: pe.clip_factors(q, 1.0), (sq,), (jnp.ones(4),))
    np.testing.assert_allclose(s, [1.0, 1.0, 0.5, 0.25], rtol=TOL64)
    np.testing.assert_allclose(ds, [0.0, 0.0, -0.5 * 4.0**-1.5, -0.5 * 16.0**-1.5], rtol=TOL64)
    vjp = jax.grad(lambda q: jnp.sum(pe.clip_factors(q, 1.0)))(sq)
    assert bool(jnp.all(jnp.isfinite(vjp)))


# ---------------------------------------------------------------------------------------
# DP: sum vs mean, noise scale
# ---------------------------------------------------------------------------------------


@POOL_GROUP
@given(problem=problems())
def test_dp_grads_without_noise_equal_clipped_grads(x64, problem):
    r = results(problem)
    assert rel_err(r["dp0"], r["clipped"]["between"]) <= TOL64


def test_dp_noise_has_std_sigma_C_over_m_on_the_mean(x64):
    """Noise σC on the *sum*, so σC/m on the returned mean (not σC: m = 6 times smaller)."""
    problem, sigma, C, n_keys = POOL["relu-tanh-softmax-ce"], 1.3, 0.7, 400
    params, X, Y = problem.data()
    net = problem.net()
    clipped = jax.jit(net.clipped_grads)(params, X, Y, C)

    def dp(k):
        return pe.dp_grads(net, params, X, Y, k, C, sigma)

    noisy = jax.jit(jax.vmap(dp))(jax.random.split(jax.random.key(7), n_keys))
    scale = sigma * C / problem.m
    z = jnp.concatenate([((noisy[k] - clipped[k][None]) / scale).ravel() for k in noisy])
    n = z.size  # 400 keys × 47 params = 18 800 standard-normal draws if the scale is right
    assert abs(float(jnp.mean(z))) <= 5 / np.sqrt(n)
    assert abs(float(jnp.std(z)) - 1) <= 5 / np.sqrt(2 * n)


def test_dp_noise_is_independent_across_parameters(x64):
    problem = POOL["leaky-sigmoid-linear-mse"]
    params, X, Y = problem.data()
    net = problem.net()
    noisy = jax.jit(net.dp_grads)(params, X, Y, jax.random.key(3), 1.0, 1.0)
    clipped = jax.jit(net.clipped_grads)(params, X, Y, 1.0)
    first = [float((noisy[k] - clipped[k]).ravel()[0]) for k in params]
    assert len(set(first)) == len(first)  # every leaf drew its own noise


# ---------------------------------------------------------------------------------------
# float32, errors, and a DP-SGD step with optax
# ---------------------------------------------------------------------------------------


def test_clipped_grads_float32_match_float64_oracle_within_1e_5():
    problem = POOL["relu-tanh-softmax-ce"]
    with jax.default_matmul_precision("highest"):
        params, X, Y = problem.data(jnp.float32)
        got = jax.jit(problem.net().clipped_grads)(params, X, Y, 0.2)
    with jax.enable_x64(True):
        p64, X64, Y64 = (
            jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t) for t in (params, X, Y)
        )
        _, want = oracle_norms_and_clipped(p64, X64, Y64, 0.2, **oracle_kw(problem))
        assert rel_err({k: v.astype(jnp.float64) for k, v in got.items()}, want) <= TOL32


def test_example_grads_reject_a_batch_with_a_hint():
    net = mg.network(["relu", "sigmoid"])
    params = net.init([3, 2, 1], jax.random.key(0))
    with pytest.raises(mg.errors.ShapeError, match="per_example_grads"):
        pe.one_example_grads(net, params, jnp.ones((3, 4)), jnp.ones(1))


@pytest.mark.parametrize("C", [0.0, -1.0])
def test_clipped_grads_reject_nonpositive_clip_norm(C):
    net = mg.network(["relu", "sigmoid"])
    params = net.init([3, 2, 1], jax.random.key(0))
    with pytest.raises(mg.errors.ConfigError, match="clip_norm"):
        pe.clipped_grads(net, params, jnp.ones((3, 4)), jnp.ones((1, 4)), C)


def test_dp_grads_reject_negative_noise_multiplier():
    net = mg.network(["relu", "sigmoid"])
    params = net.init([3, 2, 1], jax.random.key(0))
    with pytest.raises(mg.errors.ConfigError, match="noise_multiplier"):
        pe.dp_grads(net, params, jnp.ones((3, 4)), jnp.ones((1, 4)), jax.random.key(0), 1.0, -0.5)


# ---------------------------------------------------------------------------------------
# The functional shims: the same numbers as the network's functions
# ---------------------------------------------------------------------------------------


def test_functional_per_example_shims_are_the_networks(x64):
    problem = POOL["relu-tanh-softmax-ce"]
    params, X, Y = problem.data()
    net, kw = problem.net(l2=0.2), {"activations": problem.acts, "loss": problem.loss}
    noise = jax.random.key(4)
    pairs = [
        (mg.functional.per_example_grads(params, X, Y, **kw), net.per_example_grads(params, X, Y)),
        (mg.functional.per_example_norms(params, X, Y, **kw), net.per_example_norms(params, X, Y)),
        (
            mg.functional.clipped_grads(params, X, Y, clip_norm=0.3, l2=0.2, **kw),
            net.clipped_grads(params, X, Y, 0.3),
        ),
        (
            mg.functional.dp_grads(
                params, X, Y, noise_key=noise, clip_norm=0.3, noise_multiplier=1.1, l2=0.2, **kw
            ),
            net.dp_grads(params, X, Y, noise, 0.3, 1.1),
        ),
    ]
    for got, want in pairs:
        jax.tree.map(np.testing.assert_array_equal, got, want)


def test_dp_sgd_with_optax_lowers_the_cost():
    """The README's DP-SGD step: clipped, noised grads fed to any optax optimizer."""
    net = mg.network(["relu", "sigmoid"])
    kx, kp = jax.random.split(jax.random.key(0))
    X = jax.random.normal(kx, (2, 256))
    Y = (X[0:1] + X[1:2] > 0).astype(jnp.float32)
    params = net.init([2, 8, 1], kp)
    opt = optax.adam(0.05)
    state = opt.init(params)

    @jax.jit
    def step(params, state, key):
        g = net.dp_grads(params, X, Y, key, 1.0, 1.0)
        with jax.numpy_dtype_promotion("standard"):  # optax is written for standard promotion
            updates, state = opt.update(g, state, params)
        return optax.apply_updates(params, updates), state

    cost = jax.jit(net.cost)
    before = cost(params, X, Y)
    for key in jax.random.split(jax.random.key(1), 40):
        params, state = step(params, state, key)
    assert float(cost(params, X, Y)) < 0.6 * float(before)
