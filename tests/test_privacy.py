"""DP-SGD: the accountant wrappers, the Poisson sampler, the private step and training.

Oracles: `dp_accounting` itself, called here on events built here; scipy's binomial
distribution for the sampler (statistical tests at a stated significance, fixed seeds,
so each either always passes or always fails); per-example gradients from `jax.grad`
of the independent reference cost (tests/_reference.py), clipped and summed here, in
float64 to 1e-12 relative.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

import dp_accounting
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import manualgrad as mg
from helpers import labels_for, max_relative_error, reference_cost
from manualgrad import privacy

TOL64 = 1e-12
ALPHA = 1e-3  # significance of every statistical test below (fixed seeds: deterministic)
ACTS = ("tanh", "relu", "softmax")
DIMS = (4, 6, 5, 3)
OPT = optax.sgd(0.05, momentum=0.9)  # one instance: the tests that train share a compilation


NET = mg.network(list(ACTS), "ce")


def _problem(m=12, seed=0, dtype=jnp.float64):
    k_p, k_x = jax.random.split(jax.random.key(seed))
    params = NET.init(list(DIMS), k_p, method="xavier", dtype=dtype)
    X = jax.random.normal(k_x, (DIMS[0], m), dtype)
    Y = labels_for("ce", DIMS[-1], m, np.random.default_rng([seed, 1]), dtype)
    return params, X, Y


def _oracle_example_grads(params, X, Y, acts=ACTS, loss="ce"):
    """g_i for every column, by jax.grad of the reference cost of that column alone."""
    grad = jax.jit(jax.grad(reference_cost), static_argnums=(3, 4))
    return [grad(params, X[:, i : i + 1], Y[:, i : i + 1], acts, loss) for i in range(X.shape[1])]


def _norm(g):
    return float(jnp.sqrt(sum(jnp.sum(v**2) for v in g.values())))


def _assert_finite(grads):
    # max_relative_error would pass NaN through max(); check it first.
    for k, v in grads.items():
        assert bool(jnp.all(jnp.isfinite(v))), f"{k} holds a non-finite value"


def _oracle_clipped_sum(grads, C, keep):
    """Σ_{i kept} min(1, C/‖g_i‖) g_i, from the oracle's g_i."""
    total = {k: jnp.zeros_like(v) for k, v in grads[0].items()}
    for g, kept in zip(grads, keep, strict=True):
        if kept:
            s = min(1.0, C / _norm(g))
            total = {k: total[k] + s * g[k] for k in total}
    return total


@functools.cache
def _jitted_masked_dp_grads(acts, loss):
    return jax.jit(functools.partial(privacy.masked_dp_grads, mg.network(list(acts), loss)))


def _masked(
    params, X, Y, mask, *, sigma=0.0, C=1.0, normaliser=1.0, noise_key=None, acts=ACTS, loss="ce"
):
    # σ = 0 here is the noiseless limit of the same function (its check allows 0).
    return _jitted_masked_dp_grads(acts, loss)(
        params,
        X,
        Y,
        mask,
        jax.random.key(0) if noise_key is None else noise_key,
        C,
        sigma,
        normaliser,
    )


# ---------------------------------------------------------------------------------------
# The accountant
# ---------------------------------------------------------------------------------------

EVENTS = [  # (σ, q, T, δ): cheap for PLD (a second or less each)
    (2.0, 0.1, 100, 1e-5),
    (1.0, 0.05, 30, 1e-6),
    (4.0, 1.0, 10, 1e-5),
]


def _dp_accounting_epsilon(accountant, sigma, q, T, delta):
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), T
    )
    acc = (
        dp_accounting.pld.PLDAccountant()
        if accountant == "pld"
        else (dp_accounting.rdp.RdpAccountant())
    )
    return acc.compose(event).get_epsilon(delta)


@pytest.mark.parametrize("accountant", privacy.ACCOUNTANTS)
@pytest.mark.parametrize("event", EVENTS, ids=lambda e: "s{}-q{}-T{}-d{}".format(*e))
def test_epsilon_reproduces_dp_accounting_for_the_same_event(accountant, event):
    sigma, q, T, delta = event
    got = privacy.epsilon(
        noise_multiplier=sigma, sampling_rate=q, steps=T, delta=delta, accountant=accountant
    )
    assert got == _dp_accounting_epsilon(accountant, sigma, q, T, delta)


def test_zero_steps_spend_nothing():
    assert privacy.epsilon(noise_multiplier=1.0, sampling_rate=0.1, steps=0, delta=1e-5) == 0.0


@pytest.mark.parametrize("accountant", privacy.ACCOUNTANTS)
def test_noise_multiplier_round_trips_to_the_target_within_the_calibration_tolerance(accountant):
    q, T, delta, target, tol = 0.1, 100, 1e-5, 2.0, 1e-3
    sigma = privacy.noise_multiplier(
        target_epsilon=target,
        delta=delta,
        sampling_rate=q,
        steps=T,
        accountant=accountant,
        tol=tol,
    )

    def eps(s):
        return _dp_accounting_epsilon(accountant, s, q, T, delta)

    # σ̂ meets the target, and σ̂ − tol no longer does: σ̂ is within tol of the exact σ*.
    assert eps(sigma) <= target < eps(sigma - tol)


# ---------------------------------------------------------------------------------------
# The Poisson sampler
# ---------------------------------------------------------------------------------------


def _draws(n, q, capacity, count, seed):
    keys = jax.random.split(jax.random.key(seed), count)
    batches = jax.jit(jax.vmap(lambda k: privacy.poisson_batch(k, n, q, capacity)))(keys)
    included = np.zeros((count, n), bool)
    rows = np.repeat(np.arange(count), capacity)
    index, mask = np.asarray(batches.index), np.asarray(batches.mask)
    included[rows[mask.ravel()], index.ravel()[mask.ravel()]] = True
    # The sampled examples are distinct, in increasing order and columns of X; the
    # unsampled slots follow them (the first K sampled are kept).
    kept = np.where(mask, index, -1)
    assert ((index >= 0) & (index < n)).all()
    assert (np.diff(np.where(mask, index, n), axis=1) > 0)[mask[:, 1:]].all()
    assert (mask[:, :-1] >= mask[:, 1:]).all() and (kept < n).all()
    return included


def _chi2_pvalue(observed_counts, probabilities, total):
    """Pearson's χ² goodness of fit, bins pooled from the tails until each expects ≥ 5."""
    expected = probabilities * total
    obs, exp = [], []
    o_acc = e_acc = 0.0
    for o, e in zip(observed_counts, expected, strict=True):
        o_acc, e_acc = o_acc + o, e_acc + e
        if e_acc >= 5:
            obs.append(o_acc)
            exp.append(e_acc)
            o_acc = e_acc = 0.0
    obs[-1] += o_acc
    exp[-1] += e_acc
    exp = np.asarray(exp) * (sum(obs) / sum(exp))
    return stats.chisquare(obs, exp).pvalue


def test_batch_sizes_follow_binomial_n_q():
    n, q, count = 300, 0.1, 4000
    sizes = _draws(n, q, n, count, seed=3).sum(axis=1)
    k = np.arange(n + 1)
    p = _chi2_pvalue(np.bincount(sizes, minlength=n + 1), stats.binom.pmf(k, n, q), count)
    assert p > ALPHA, f"batch sizes reject Binomial({n}, {q}) at α = {ALPHA}: p = {p:.2e}"


def test_every_example_is_sampled_with_probability_q_independently_of_the_others():
    n, q, count = 60, 0.2, 4000
    inc = _draws(n, q, n, count, seed=4).astype(np.float64)
    # Marginals: each example's inclusion count ~ Binomial(count, q); χ² over examples.
    per_example = inc.sum(axis=0)
    z2 = (per_example - count * q) ** 2 / (count * q * (1 - q))
    p_marginal = stats.chi2.sf(z2.sum(), df=n)
    assert p_marginal > ALPHA, p_marginal
    # Pairs: under independence each pair's correlation is ≈ N(0, 1/count); Bonferroni.
    corr = np.corrcoef(inc.T)[np.triu_indices(n, 1)]
    z_max = np.max(np.abs(corr)) * math.sqrt(count)
    bound = stats.norm.isf(ALPHA / (2 * corr.size))
    assert z_max < bound, f"a pair of examples is correlated: z = {z_max:.2f} ≥ {bound:.2f}"


def test_an_overflowing_batch_keeps_capacity_examples_and_its_sizes_are_min_binomial_k():
    n, q, capacity, count = 100, 0.3, 25, 3000
    sizes = _draws(n, q, capacity, count, seed=5).sum(axis=1)
    pmf = stats.binom.pmf(np.arange(capacity + 1), n, q)
    pmf[-1] += stats.binom.sf(capacity, n, q)  # everything above K lands on K
    p = _chi2_pvalue(np.bincount(sizes, minlength=capacity + 1), pmf, count)
    assert sizes.max() == capacity and p > ALPHA, p


def test_a_set_too_large_for_int32_running_sums_still_samples_binomial_sizes_in_order():
    """K (N + 1) ≥ 2³¹: the sampler's saturating scan instead of its cumsum."""
    n, q, capacity, count = 2**29, 3e-9, 16, 3000  # gaps often capped at N + 1
    keys = jax.random.split(jax.random.key(6), count)
    batch = jax.jit(jax.vmap(lambda k: privacy.poisson_batch(k, n, q, capacity)))(keys)
    index, mask = np.asarray(batch.index), np.asarray(batch.mask)
    assert ((index >= 0) & (index < n)).all() and (mask[:, :-1] >= mask[:, 1:]).all()
    assert (np.diff(np.where(mask, index, n), axis=1) > 0)[mask[:, 1:]].all()
    sizes = mask.sum(axis=1)
    pmf = stats.binom.pmf(np.arange(capacity + 1), n, q)
    pmf[-1] += stats.binom.sf(capacity, n, q)
    p = _chi2_pvalue(np.bincount(sizes, minlength=capacity + 1), pmf, count)
    assert p > ALPHA, f"batch sizes reject min(Binomial({n}, {q}), {capacity}): p = {p:.2e}"


def test_batch_capacity_is_the_smallest_k_meeting_the_overflow_bound():
    n, q, bound = 1437, 0.045, 1e-12
    K = privacy.batch_capacity(n, q, overflow=bound)
    assert stats.binom.sf(K, n, q) <= bound < stats.binom.sf(K - 1, n, q)


# ---------------------------------------------------------------------------------------
# The private step
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x_shape", [(5, 9), (3, 4, 2, 9), (6, 9)], ids=["features", "images", "token-ids"]
)
def test_the_held_training_set_gives_the_same_columns_as_indexing_x(x_shape):
    rng = np.random.default_rng(0)
    ids = x_shape == (6, 9)  # token ids stay integers
    X = rng.integers(0, 50, x_shape, np.int32) if ids else rng.standard_normal(x_shape)
    X, Y = X.astype(np.int32 if ids else np.float32), rng.standard_normal((3, 9), np.float32)
    index = np.array([7, 0, 3, 3, 8])
    Xh, Yh = privacy.examples_first(jnp.asarray(X), jnp.asarray(Y))
    assert Xh.shape == (9, *x_shape[:-1]) and Yh.shape == (9, 3)
    Xb, Yb = jax.jit(privacy.gather_batch)(Xh, Yh, jnp.asarray(index))
    assert Xb.dtype == X.dtype
    np.testing.assert_array_equal(Xb, X[..., index])
    np.testing.assert_array_equal(Yb, Y[..., index])


def test_masked_columns_change_nothing_even_when_they_hold_nan_and_inf(x64):
    params, X, Y = _problem(m=10)
    mask = jnp.array([True, False, True, True, False, False, True, False, True, True])
    garbage = X.at[:, 1].set(jnp.nan).at[:, 4].set(jnp.inf).at[:, 5].set(1e300)
    C, B = 0.5, 7.3
    got = _masked(params, garbage, Y, mask, C=C, normaliser=B)
    _assert_finite(got)
    oracle = _oracle_clipped_sum(_oracle_example_grads(params, X, Y), C, np.asarray(mask))
    assert max_relative_error(got, {k: v / B for k, v in oracle.items()}) <= TOL64


def test_a_sampled_example_with_a_non_finite_gradient_is_dropped_not_leaked(x64):
    params, X, Y = _problem(m=6)
    bad = X.at[:, 2].set(jnp.nan)
    got = _masked(params, bad, Y, jnp.ones(6, bool), C=1.0, normaliser=6.0)
    _assert_finite(got)
    keep = np.array([True, True, False, True, True, True])
    oracle = _oracle_clipped_sum(_oracle_example_grads(params, X, Y), 1.0, keep)
    assert max_relative_error(got, {k: v / 6.0 for k, v in oracle.items()}) <= TOL64


def test_an_empty_batch_gives_finite_noise_that_reads_no_example(x64):
    params, X, Y = _problem(m=5)
    other = jnp.full_like(X, jnp.nan).at[:, 0].set(1e300)
    kw = dict(sigma=1.3, C=0.7, normaliser=2.0, noise_key=jax.random.key(7))
    got = _masked(params, X, Y, jnp.zeros(5, bool), **kw)
    from_garbage = _masked(params, other, 1 - Y, jnp.zeros(5, bool), **kw)
    for k in got:
        assert bool(jnp.all(jnp.isfinite(got[k]))) and bool(jnp.any(got[k] != 0))
        np.testing.assert_array_equal(got[k], from_garbage[k])


def test_removing_any_one_example_changes_the_clipped_sum_by_at_most_c(x64):
    # A regression net (mse, linear output) whose targets sit at distance r_i from its
    # predictions, so that ‖g_i‖ ∝ r_i: raw norms from 1e-6 C to 1e4 C.
    C, acts = 1.0, ("tanh", "relu", "linear")
    params, X, _ = _problem(m=10, seed=2)
    A = X
    for l, act in enumerate((jnp.tanh, jax.nn.relu, lambda z: z), start=1):
        A = act(params[f"W{l}"] @ A + params[f"b{l}"])
    r = jnp.array([1e4, 1e-6, 1.0, 3e2, 1e-5, 2.0, 1e-3, 50.0, 1e-4, 1e3])
    Y = A + r[None, :] * jnp.array([[1.0], [-0.5], [0.25]])
    raw = [_norm(g) for g in _oracle_example_grads(params, X, Y, acts, "mse")]
    assert max(raw) > 100 * C and min(raw) < C / 100  # far above and far below C
    full = _masked(params, X, Y, jnp.ones(10, bool), C=C, acts=acts, loss="mse")
    for j in range(10):
        without = _masked(params, X, Y, jnp.arange(10) != j, C=C, acts=acts, loss="mse")
        change = _norm({k: full[k] - without[k] for k in full})
        # The change is example j's clipped gradient: norm min(‖g_j‖, C) ≤ C.
        assert change <= C * (1 + TOL64)
        assert change == pytest.approx(min(raw[j], C), rel=1e-9)


def test_noise_std_on_the_normalised_gradient_is_sigma_c_over_qn(x64):
    params, X, Y = _problem(m=40)
    sigma, C, q = 1.7, 0.8, 0.25
    B = q * X.shape[1]  # the normaliser: the expected batch size
    mask = jnp.arange(40) % 3 == 0
    clean = _masked(params, X, Y, mask, C=C, normaliser=B)

    def noise(key):
        g = _masked(params, X, Y, mask, sigma=sigma, C=C, normaliser=B, noise_key=key)
        return jnp.concatenate([(g[k] - clean[k]).ravel() for k in sorted(g)])

    draws = np.asarray(jax.jit(jax.vmap(noise))(jax.random.split(jax.random.key(11), 400)))
    n = draws.size
    std = sigma * C / B
    # Σ x²/std² ~ χ²(n) for zero-mean Gaussian noise of that std: two-sided test at α.
    stat = float(np.sum((draws / std) ** 2))
    assert stats.chi2.ppf(ALPHA / 2, n) < stat < stats.chi2.ppf(1 - ALPHA / 2, n), (
        f"empirical std {draws.std():.4g} vs σC/(qN) = {std:.4g}"
    )
    assert abs(draws.mean()) < 4 * std / math.sqrt(n)


@pytest.mark.parametrize("rng", privacy.RNG_IMPLS)
def test_each_noise_generator_adds_zero_mean_noise_of_std_sigma_c_over_b_to_every_entry(rng):
    # One flat draw cut into arrays of several shapes: every entry must get its own
    # N(0, (σC/B)²), whichever generator draws it (here float32, P = 1041 per draw).
    shapes = {"W1": (16, 40), "b1": (16, 1), "W2": (25, 16), "b2": (25, 1)}
    zeros = {k: jnp.zeros(s, jnp.float32) for k, s in shapes.items()}
    sigma, C, B = 1.3, 0.7, 5.0

    def draw(key):
        noisy = privacy.add_noise(zeros, privacy.key_for_noise(key, rng), C, sigma, B)
        assert list(noisy) == list(zeros)  # the params' order
        return jnp.stack([jnp.concatenate([v.ravel() for v in noisy.values()])])

    keys = jax.random.split(jax.random.key(5), 200)
    draws = np.asarray(jax.jit(jax.vmap(draw))(keys), np.float64)[:, 0]
    std = sigma * C / B
    stat = float(np.sum((draws / std) ** 2))  # ~ χ²(n) for N(0, std²) entries
    n = draws.size
    assert stats.chi2.ppf(ALPHA / 2, n) < stat < stats.chi2.ppf(1 - ALPHA / 2, n)
    assert abs(draws.mean()) < 4 * std / math.sqrt(n)
    # Entries are independent of each other: the largest correlation between two of
    # 40 entries across the 200 draws is within a Bonferroni bound.
    corr = np.corrcoef(draws[:, :40].T)[np.triu_indices(40, 1)]
    assert np.max(np.abs(corr)) * math.sqrt(len(draws)) < stats.norm.isf(ALPHA / (2 * corr.size))


# ---------------------------------------------------------------------------------------
# Private training
# ---------------------------------------------------------------------------------------


DP = privacy.DPConfig(sampling_rate=0.25, clip_norm=0.5, noise_multiplier=1.1, accountant="rdp")


def _train(X, Y, params, **kw):
    """DP-SGD for 3 epochs of 4 steps: `mg.train` with `dp=`, which adds the Accountant."""
    base = dict(dp=DP, epochs=3, key=jax.random.key(3), epochs_per_call=1)
    return mg.train(NET, params, X, Y, OPT, **{**base, **kw})


def test_stopping_and_resuming_gives_the_uninterrupted_params_and_epsilon(x64):
    params, X, Y = _problem(m=40)
    full = _train(X, Y, params)
    part = _train(X, Y, params, callbacks=[lambda p: p.step >= 4])
    assert (part.step, part.epoch) == (4, 1)
    rest = _train(X, Y, part.params, opt_state=part.opt_state, start_epoch=1)
    assert rest.step == full.step == 12
    assert rest.metrics["epsilon"] == full.metrics["epsilon"]
    for k in full.params:
        np.testing.assert_array_equal(rest.params[k], full.params[k])


def test_a_private_step_with_its_accountant_reports_epsilon_and_refuses_a_longer_run(x64):
    params, X, Y = _problem(m=40)
    plan = privacy.plan(DP, n=40, steps=8)
    step = mg.training.private_step(NET, OPT, plan)
    run = dict(key=jax.random.key(3), callbacks=[mg.training.Accountant(plan)])
    result = mg.train(NET, params, X, Y, step, epochs=2, **run)
    assert result.step == 8 and result.metrics["epsilon"] == plan.epsilon
    assert result.metrics["epsilon"] == privacy.epsilon(
        noise_multiplier=1.1, sampling_rate=0.25, steps=8, delta=1e-5, accountant="rdp"
    )
    with pytest.raises(mg.errors.ConfigError, match="past the 8 steps the privacy budget"):
        mg.train(NET, params, X, Y, step, epochs=3, **run)


EPS_ARGS = dict(noise_multiplier=1.0, sampling_rate=0.5, steps=3, delta=1e-5, accountant="rdp")


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("sampling_rate", 1.0, True),
        ("sampling_rate", 1.0 + 1e-12, False),
        ("sampling_rate", 0.0, False),
        ("delta", 0.5, True),
        ("delta", 1.0, False),
        ("noise_multiplier", 1e-3, True),
        ("noise_multiplier", math.inf, False),
        ("noise_multiplier", math.nan, False),
    ],
    ids=lambda v: str(v),
)
def test_each_privacy_parameter_is_refused_exactly_outside_its_range(name, value, accepted):
    call = functools.partial(privacy.epsilon, **{**EPS_ARGS, name: value})
    if accepted:
        assert call() > 0
    else:
        with pytest.raises(mg.errors.ConfigError, match=f"`{name}` .* must be .*, got {value}"):
            call()


def test_grouping_steps_into_calls_never_changes_the_params(x64):
    params, X, Y = _problem(m=40)
    one = _train(X, Y, params, epochs_per_call=3)
    other = _train(X, Y, params, epochs_per_call=1)
    for k in one.params:
        np.testing.assert_array_equal(other.params[k], one.params[k])


def test_full_sampling_with_negligible_noise_is_clipped_gradient_descent(x64):
    # q = 1: every example in every batch (capacity N), so each step is
    # params -= lr · (1/N) Σ_i clip_C(g_i) + σC ξ/N with σ = 1e-30: checkable by an oracle loop.
    params, X, Y = _problem(m=8)
    lr, C, steps = 0.3, 0.4, 5
    dp = privacy.DPConfig(
        sampling_rate=1.0, clip_norm=C, noise_multiplier=1e-30, accountant="rdp", delta=1e-3
    )
    result = mg.train(NET, params, X, Y, optax.sgd(lr), dp=dp, epochs=steps, key=jax.random.key(0))
    assert result.step == steps and privacy.plan(dp, n=8, steps=steps).capacity == 8
    expected = params
    for _ in range(steps):
        g = _oracle_clipped_sum(_oracle_example_grads(expected, X, Y), C, [True] * 8)
        expected = {k: expected[k] - lr * g[k] / 8 for k in expected}
    assert max_relative_error(result.params, expected) <= 1e-10


def test_the_plan_meets_the_target_and_bounds_the_overflow_by_delta_over_1000():
    dp = privacy.DPConfig(sampling_rate=0.05, target_epsilon=2.0, delta=1e-5, accountant="rdp")
    p = privacy.plan(dp, n=2000, steps=200)
    assert p.epsilon <= 2.0
    assert p.delta_overflow <= 1e-3 * p.delta
    assert p.overflow >= 200 * stats.binom.sf(p.capacity, 2001, 0.05) * (1 - 1e-9)
    assert (
        p.capacity < 2000
        and stats.binom.sf(p.capacity - 1, 2001, 0.05) * 200 * (1 + math.exp(p.epsilon))
        > 1e-3 * p.delta
    )  # the smallest such capacity


def test_digits_are_real_64_pixel_images_with_one_hot_labels_and_a_held_out_split():
    X, Y, X_test, Y_test = mg.data.datasets.digits_split(test_fraction=0.2, seed=1)
    assert X.shape == (64, 1438) and Y.shape == (10, 1438)
    assert X_test.shape == (64, 359) and Y_test.shape == (10, 359)
    assert X.min() == 0.0 and X.max() == 1.0
    assert (Y.sum(axis=0) == 1).all() and set(np.unique(Y)) == {0.0, 1.0}


# ---------------------------------------------------------------------------------------
# mg.train(dp=...) and `manualgrad train --dp`
# ---------------------------------------------------------------------------------------


def test_train_with_dp_resumes_from_its_checkpoint_to_the_same_params_and_epsilon(x64, tmp_path):
    params, X, Y = _problem(m=40)
    dp = privacy.DPConfig(sampling_rate=0.25, clip_norm=0.5, noise_multiplier=1.3, accountant="rdp")
    kw = dict(epochs=3, key=jax.random.key(5), epochs_per_call=1, dp=dp)
    full = mg.train(NET, params, X, Y, OPT, **kw)
    assert full.step == 12 and full.epoch == 3
    seen = []

    def stop_after_two_epochs(p):
        seen.append((p.epoch, p.step, p.metrics["epsilon"]))
        return p.epoch >= 2

    callbacks = [stop_after_two_epochs, mg.training.Checkpointer(tmp_path)]
    part = mg.train(NET, params, X, Y, OPT, callbacks=callbacks, **kw)
    assert part.step == 8 and seen[-1][:2] == (2, 8)
    assert seen[-1][2] == privacy.epsilon(
        noise_multiplier=1.3, sampling_rate=0.25, steps=8, delta=1e-5, accountant="rdp"
    )
    resume = [mg.training.Checkpointer(tmp_path, resume=True)]
    rest = mg.train(NET, params, X, Y, OPT, callbacks=resume, **kw)
    assert rest.start_step == 8 and rest.step == 12
    assert rest.metrics["epsilon"] == full.metrics["epsilon"]
    for k in full.params:
        np.testing.assert_array_equal(rest.params[k], full.params[k])
    np.testing.assert_array_equal(rest.history, full.history)


def test_cli_dp_on_digits_reports_epsilon_and_test_accuracy(capsys):
    from manualgrad.cli import main

    argv = ["train", "--quiet", "--dp", "--data", "digits", "--target-epsilon", "3"]
    rc = main([*argv, "--epochs", "3", "--accountant", "rdp"])
    out, _ = capsys.readouterr()
    assert rc == 0, out
    assert "test accuracy" in out
    assert re.search(r"\(ε = (2\.9\d\d|3\.000), δ = 1e-05\)-DP", out), out


def test_cli_privacy_options_without_dp_are_refused(capsys):
    from manualgrad.cli import main

    rc = main(["train", "--quiet", "--target-epsilon", "3"])
    _, err = capsys.readouterr()
    assert rc == 2 and "add --dp" in err


def test_batch_capacities_are_the_batch_size_quantiles_below_k():
    from scipy.stats import binom

    n, q, K = 60000, 256 / 60000, 376
    shapes = privacy.batch_capacities(n, q, K, (0.9, 0.999))
    assert len(shapes) == 3 and shapes[-1] == K and list(shapes) == sorted(set(shapes))
    for k, p in zip(shapes[:-1], (0.9, 0.999), strict=True):  # the smallest k with cdf ≥ p
        assert binom.cdf(k, n, q) >= p > binom.cdf(k - 1, n, q)
    assert privacy.batch_capacities(n, q, K, ()) == (K,)
    assert privacy.batch_capacities(n, q, 280, (0.9, 0.999)) == (277, 280)  # none ≥ K kept
    for bad in [(1.0,), (0.0,), ("0.9",), (True,), 0.9]:
        with pytest.raises(mg.errors.ConfigError, match="quantile"):
            privacy.batch_capacities(n, q, K, bad)


def test_the_smallest_capacity_that_holds_the_batch_runs():
    capacities = (3, 5, 8)
    shape_of = jax.jit(
        lambda batch: privacy.in_smallest_capacity(
            capacities, batch, lambda index, mask: (index.shape[0], jnp.sum(mask))
        )
    )
    for size in range(9):
        batch = privacy.PoissonBatch(
            index=jnp.arange(8), mask=jnp.arange(8) < size
        )  # the sampled examples come first, as poisson_batch returns them
        shape, seen = shape_of(batch)
        assert int(shape) == min(c for c in capacities if c >= size)
        assert int(seen) == size  # the whole batch, whichever shape
    with pytest.raises(mg.errors.ConfigError, match="must end with the batch's capacity"):
        privacy.in_smallest_capacity(
            (3, 5), privacy.PoissonBatch(jnp.arange(8), jnp.ones(8, bool)), None
        )


def test_training_on_the_smaller_shapes_gives_the_params_of_the_capacity_alone(x64):
    params, X, Y = _problem(m=40)
    one = dict(dp=dataclasses.replace(DP, batch_quantiles=()))
    many = dict(dp=dataclasses.replace(DP, batch_quantiles=(0.5,)))
    plan = privacy.plan(many["dp"], n=40, steps=12)
    assert len(plan.batch_shapes) == 2
    # the run's batches fall on both sides of the smaller shape (so both branches ran)
    sizes = [
        int(
            jnp.sum(
                privacy.poisson_batch(
                    jax.random.split(jax.random.fold_in(jax.random.key(3), t), 3)[0],
                    40,
                    0.25,
                    plan.capacity,
                ).mask
            )
        )
        for t in range(12)
    ]
    assert min(sizes) <= plan.batch_shapes[0] < max(sizes)
    a, b = _train(X, Y, params, **one), _train(X, Y, params, **many)
    assert max_relative_error(b.params, a.params) <= 1e-12
