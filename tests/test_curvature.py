"""Curvature and gradient statistics (`manualgrad.curvature`) against independent oracles.

Every reference here is built in float64 from a network written with `jax.nn` and
optax (tests/_reference.py) and differentiated by JAX: per-example gradients by
`jax.vmap(jax.grad)`, the GGN as Σ_i J_iᵀ H_i J_i from `jax.jacfwd` of the split
output and `jax.hessian` of the loss at the split, the Hessian by `jax.hessian` of the
cost. Nothing calls manualgrad's forward, chain or formulas. Exact quantities must
agree to ≤ 1e-12 relative (max |got − want| / max |want|); Monte-Carlo estimates within
six standard errors measured from the estimator's own samples.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import manualgrad as mg
from helpers import REFERENCE_ACTIVATIONS, sum_of_squares, variance
from manualgrad import curvature
from manualgrad._core import activations as acts_module
from manualgrad._core.layer import Layer, Product

TOL = 1e-12
ROOT = Path(__file__).resolve().parents[1]
L2 = 0.3


class Case(NamedTuple):
    dims: tuple[int, ...]
    acts: tuple[str, ...]
    loss: str


CASES = {
    "tanh-sigmoid-bce": Case((3, 4, 2), ("tanh", "sigmoid"), "bce"),
    "relu-tanh-softmax-ce": Case((3, 5, 4, 3), ("relu", "tanh", "softmax"), "ce"),
    "sigmoid-sigmoid-mse": Case((3, 4, 2), ("sigmoid", "sigmoid"), "mse"),
    "tanh-softmax-mse": Case((3, 4, 3), ("tanh", "softmax"), "mse"),
    "leaky-tanh-linear-mse": Case((3, 4, 3, 2), ("leaky_relu", "tanh", "linear"), "mse"),
    # piecewise linear: g'' = 0, so the Hessian's diagonal is the GGN's
    "relu-leaky-softmax-ce": Case((3, 5, 4, 3), ("relu", "leaky_relu", "softmax"), "ce"),
    "leaky-linear-mse": Case((3, 4, 2), ("leaky_relu", "linear"), "mse"),
}
PIECEWISE = ["relu-leaky-softmax-ce", "leaky-linear-mse"]
HESSIAN_CASES = [c for c in CASES if c != "tanh-softmax-mse"]  # softmax+mse: ConfigError
M = 5


@functools.cache
def problem(case: Case, m: int = M, seed: int = 0):
    """Params (He-scaled normal weights, normal biases), X and valid labels, float64, from NumPy."""
    rng = np.random.default_rng(seed)
    params = {}
    for l, (n_prev, n) in enumerate(itertools.pairwise(case.dims), start=1):
        params[f"W{l}"] = rng.standard_normal((n, n_prev)) * np.sqrt(2 / n_prev)
        params[f"b{l}"] = 0.3 * rng.standard_normal((n, 1))
    X = rng.standard_normal((case.dims[0], m))
    n_L = case.dims[-1]
    if case.loss == "bce":
        Y = (rng.uniform(size=(n_L, m)) > 0.5).astype(np.float64)
    elif case.loss == "ce":
        Y = np.eye(n_L)[:, rng.integers(0, n_L, m)]
    else:
        Y = rng.standard_normal((n_L, m))
    return {k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(X), jnp.asarray(Y)


#: XLA options for the test's one-off computations: tiny arrays, so LLVM's optimisation
#: passes cost far more (compile time) than they save; the arithmetic is unchanged.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def run_once(fn, *args):
    """`fn(*args)` jitted and compiled with :data:`FAST_COMPILE` (each problem runs once)."""
    return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)(*args)


def net_of(case: Case, l2: float = 0.0):
    """The dense network of a case (the shorthand: widths from the params)."""
    return mg.network(case.acts, case.loss, l2=l2)


def flat(tree) -> np.ndarray:
    """The leaves of a pytree in jax.tree order (= ravel_pytree order), as one float64 vector."""
    leaves = jax.tree.leaves(tree)
    assert all(x.dtype == np.float64 for x in leaves), [x.dtype for x in leaves]
    return np.concatenate([np.ravel(np.asarray(x)) for x in leaves])


def rel(got, want) -> float:
    """max |got − want| / max |want| over everything (pytrees are flattened)."""
    g, w = flat(got), flat(want)
    assert g.shape == w.shape, (g.shape, w.shape)
    return float(np.max(np.abs(g - w)) / np.max(np.abs(w)))


# ---------------------------------------------------------------------------------------
# The oracle: a network with jax.nn / optax, differentiated by JAX
# ---------------------------------------------------------------------------------------


def split_output(params, X, case: Case):
    """The GGN's split point: z[L] (logits) for bce and ce, a[L] for mse. (n_L, m)."""
    A = X
    for l, name in enumerate(case.acts, start=1):
        Z = jnp.matmul(params[f"W{l}"], A, precision="highest") + params[f"b{l}"]
        A = REFERENCE_ACTIVATIONS[name](Z)
    return A if case.loss == "mse" else Z


def split_loss(out, y, loss):
    """One example's loss as a function of its split output (n_L,), via optax."""
    if loss == "bce":
        return jnp.sum(optax.sigmoid_binary_cross_entropy(out, y))
    if loss == "ce":
        return optax.softmax_cross_entropy(out, y)
    return 0.5 * jnp.sum((out - y) ** 2)


def oracle_cost(params, X, Y, case: Case, l2=0.0):
    out = split_output(params, X, case)
    losses = jax.vmap(functools.partial(split_loss, loss=case.loss), in_axes=(1, 1))(out, Y)
    m = X.shape[1]
    return jnp.mean(losses) + l2 / (2 * m) * sum(
        jnp.sum(p**2) for k, p in params.items() if k.startswith("W")
    )


def l2_diagonal(params, l2, m):
    """(λ/m) on every weight, 0 on biases, flattened like ravel_pytree(params)."""
    return ravel_pytree(
        {k: jnp.full_like(p, l2 / m if k[0] == "W" else 0.0) for k, p in params.items()}
    )[0]


def dense_ggn(params, X, Y, case: Case, l2=0.0):
    """(1/m) Σ_i J_iᵀ H_i J_i + (λ/m) I_W as a (P, P) matrix in ravel_pytree order."""
    flat, unravel = ravel_pytree(params)
    J = jax.jacfwd(lambda f: split_output(unravel(f), X, case))(flat)  # (n_L, m, P)
    out = split_output(params, X, case)
    H = jax.vmap(jax.hessian(functools.partial(split_loss, loss=case.loss)), in_axes=(1, 1))(out, Y)
    m = X.shape[1]
    return jnp.einsum("kip,ikl,liq->pq", J, H, J) / m + jnp.diag(l2_diagonal(params, l2, m))


def dense_hessian(params, X, Y, case: Case, l2=0.0):
    flat, unravel = ravel_pytree(params)
    return jax.hessian(lambda f: oracle_cost(unravel(f), X, Y, case, l2))(flat)


def per_example_grads(params, X, Y, case: Case):
    """g_i = ∇L_i by jax.vmap(jax.grad) of the one-example cost; leaves (m, *shape)."""

    def one(p, x, y):
        return oracle_cost(p, x[:, None], y[:, None], case)

    return jax.vmap(jax.grad(one), in_axes=(None, 1, 1))(params, X, Y)


def layer_indices(params, l):
    """Positions in ravel_pytree order of the entries of [W[l] b[l]], shape (n_l, n_{l-1}+1)."""
    offsets, start = {}, 0
    for k in sorted(params):  # a dict flattens in sorted key order
        offsets[k] = np.arange(start, start + params[k].size).reshape(params[k].shape)
        start += params[k].size
    return np.concatenate([offsets[f"W{l}"], offsets[f"b{l}"]], axis=1)


# ---------------------------------------------------------------------------------------
# g'' of each activation
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(acts_module.HIDDEN_ACTIVATIONS))
def test_second_derivative_matches_grad_of_grad(x64, name):
    act = acts_module.ACTIVATIONS[name]
    z = jnp.linspace(-3.0, 3.0, 40) + 0.0123  # avoids relu's kink at 0
    ref = jax.vmap(jax.grad(jax.grad(REFERENCE_ACTIVATIONS[name])))(z)
    got = act.second_derivative(z, act.forward(z))
    assert float(jnp.max(jnp.abs(got - ref))) <= TOL * max(1.0, float(jnp.max(jnp.abs(ref))))


def test_piecewise_linear_activations_have_zero_second_derivative(x64):
    z = jnp.linspace(-3.0, 3.0, 40) + 0.0123
    for name in acts_module.PIECEWISE_LINEAR:
        assert (
            float(jnp.max(jnp.abs(jax.vmap(jax.grad(jax.grad(REFERENCE_ACTIVATIONS[name])))(z))))
            == 0
        )


# ---------------------------------------------------------------------------------------
# Everything of one problem, jitted once: the oracle side and manualgrad's side
# ---------------------------------------------------------------------------------------

FIRST_ORDER = ["sum_grad_squared", "grad_variance", "gradient_gram", "gradient_noise_scale"]


def direction(params, seed=5):
    keys = jax.random.split(jax.random.key(seed), len(params))
    return {
        k: jax.random.normal(kk, p.shape, p.dtype)
        for (k, p), kk in zip(params.items(), keys, strict=True)
    }


def oracle(params, X, Y, v, case: Case) -> dict:
    """The references of one problem, from jax.vmap(jax.grad), jax.jacfwd and jax.hessian."""
    m = X.shape[1]
    g = per_example_grads(params, X, Y, case)
    G = jax.vmap(lambda i: ravel_pytree(jax.tree.map(lambda x: x[i], g))[0])(jnp.arange(m))
    mean = jnp.mean(G, axis=0)
    # McCandlish et al.: unbiased tr(Σ) and ‖∇C‖², ∇C with its L2 term
    trace_cov = jnp.sum((G - mean[None, :]) ** 2) / (m - 1)
    l2_grad = {k: L2 / m * p if k[0] == "W" else 0 * p for k, p in params.items()}
    grad_sq = jnp.sum((mean + ravel_pytree(l2_grad)[0]) ** 2) - trace_cov / m
    ggn = dense_ggn(params, X, Y, case, L2)
    hess = dense_hessian(params, X, Y, case, L2)
    vf = ravel_pytree(v)[0]
    return {
        "sum_grad_squared": sum_of_squares(g),
        "grad_variance": variance(g),
        "gradient_gram": G @ G.T,
        "gradient_noise_scale": curvature.NoiseScale(trace_cov / grad_sq, trace_cov, grad_sq),
        "norms_sq": jnp.sum(G * G, axis=1),
        "ggn": ggn,
        "ggn_no_l2": dense_ggn(params, X, Y, case),
        "ggn_one_example": dense_ggn(params, X[:, :1], Y[:, :1], case),
        "ggn_v": ggn @ vf,
        "hess_v": hess @ vf,
        "diag_ggn": jnp.diag(ggn),
        "diag_hessian": jnp.diag(hess),
    }


def computed(params, X, Y, v, case: Case) -> dict:
    """manualgrad.curvature's answers for the same problem."""
    net, net_l2 = net_of(case), net_of(case, L2)
    out = {q: getattr(curvature, q)(net, params, X, Y) for q in FIRST_ORDER[:3]}
    out["gradient_noise_scale"] = curvature.gradient_noise_scale(net_l2, params, X, Y)
    out["ggn_v"] = curvature.ggn_vector_product(net_l2, params, X, Y, v)
    out["hess_v"] = curvature.hessian_vector_product(net_l2, params, X, Y, v)
    out["diag_ggn"] = curvature.diag_ggn(net_l2, params, X, Y)
    if case.loss != "mse" or case.acts[-1] != "softmax":
        out["diag_hessian"] = curvature.diag_hessian(net_l2, params, X, Y)
    out["kfac"] = curvature.kfac_factors(net, params, X, Y)
    out["kfac_one_example"] = curvature.kfac_factors(net, params, X[:, :1], Y[:, :1])
    return out


def grouped(case_ids):
    """The case ids, each in its own xdist group: the tests of a case share its one compile."""
    return [pytest.param(c, marks=pytest.mark.xdist_group(f"curvature-{c}")) for c in case_ids]


CASE_IDS = grouped(sorted(CASES))


@functools.cache
def results(case_id: str) -> tuple[dict, dict, dict]:
    """(params, oracle, computed) of CASES[case_id], both sides in one jit (one compile)."""
    case = CASES[case_id]
    params, X, Y = problem(case)
    both = run_once(
        lambda *a: (oracle(*a, case), computed(*a, case)), params, X, Y, direction(params)
    )
    return params, *both


# ---------------------------------------------------------------------------------------
# First order vs jax.vmap(jax.grad)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("quantity", FIRST_ORDER)
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_first_order_statistics_match_vmap_grad(x64, case_id, quantity):
    _, want, got = results(case_id)
    assert rel(got[quantity], want[quantity]) <= TOL


@pytest.mark.xdist_group("curvature-relu-tanh-softmax-ce")  # shares its compiled case
def test_gram_diagonal_is_the_squared_per_example_norm(x64):
    _, want, got = results("relu-tanh-softmax-ce")
    assert rel(np.diag(got["gradient_gram"]), want["norms_sq"]) <= TOL


def test_noise_scale_needs_two_examples(x64):
    case = CASES["tanh-sigmoid-bce"]
    params, X, Y = problem(case)
    with pytest.raises(mg.errors.ShapeError, match="needs m ≥ 2"):
        curvature.gradient_noise_scale(net_of(case), params, X[:, :1], Y[:, :1])


# ---------------------------------------------------------------------------------------
# Second order vs dense GGN / Hessian
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_ggn_vector_product_matches_dense_ggn(x64, case_id):
    _, want, got = results(case_id)
    assert rel(got["ggn_v"], want["ggn_v"]) <= TOL


@pytest.mark.xdist_group("curvature-relu-tanh-softmax-ce")  # shares its compiled case
def test_ggn_columns_by_vmap_under_jit_are_the_dense_ggn(x64):
    case_id = "relu-tanh-softmax-ce"
    case = CASES[case_id]
    params, X, Y = problem(case)
    P = sum(p.size for p in params.values())
    _, unravel = ravel_pytree(params)

    def columns(E):
        def column(e):
            Gv = curvature.ggn_vector_product(net_of(case, L2), params, X, Y, unravel(e))
            return ravel_pytree(Gv)[0]

        return jax.vmap(column)(E)

    assert rel(run_once(columns, jnp.eye(P)), results(case_id)[1]["ggn"]) <= TOL


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_hessian_vector_product_matches_jax_hessian(x64, case_id):
    _, want, got = results(case_id)
    assert rel(got["hess_v"], want["hess_v"]) <= TOL


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_diag_ggn_exact_matches_the_dense_ggn_diagonal(x64, case_id):
    _, want, got = results(case_id)
    assert rel(got["diag_ggn"], want["diag_ggn"]) <= TOL


@pytest.mark.parametrize("case_id", grouped(HESSIAN_CASES))
def test_diag_hessian_matches_jax_hessian_diagonal(x64, case_id):
    _, want, got = results(case_id)
    assert rel(got["diag_hessian"], want["diag_hessian"]) <= TOL


@pytest.mark.parametrize("case_id", grouped(PIECEWISE))
def test_diag_hessian_equals_diag_ggn_for_piecewise_linear_nets(x64, case_id):
    _, _, got = results(case_id)
    assert rel(got["diag_hessian"], got["diag_ggn"]) <= TOL


@pytest.mark.xdist_group("curvature-relu-tanh-softmax-ce")  # shares its compiled case
def test_diag_hessian_differs_from_diag_ggn_for_curved_activations(x64):
    # the residual terms g''(Z) ⊙ dA are what the GGN leaves out
    _, _, got = results("relu-tanh-softmax-ce")
    assert rel(got["diag_hessian"], got["diag_ggn"]) > 1e-3


# ---------------------------------------------------------------------------------------
# Kronecker factors
# ---------------------------------------------------------------------------------------


def block(ggn, params, l, order):
    """The GGN block of layer l in the vec order of [W[l] b[l]]: "F" column-, "C" row-major."""
    ids = layer_indices(params, l).reshape(-1, order=order)
    return np.asarray(ggn)[np.ix_(ids, ids)]


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_kflr_is_the_ggn_block_for_one_example(x64, case_id):
    params, want, got = results(case_id)
    factors = got["kfac_one_example"]
    assert sorted(factors) == list(range(1, len(CASES[case_id].acts) + 1))
    for l, (A, G) in factors.items():
        assert rel(np.kron(A, G), block(want["ggn_one_example"], params, l, "F")) <= TOL


@pytest.mark.xdist_group("curvature-relu-tanh-softmax-ce")  # shares its compiled case
def test_kflr_in_row_major_order_is_kron_G_A(x64):
    params, want, got = results("relu-tanh-softmax-ce")
    for l, (A, G) in got["kfac_one_example"].items():
        assert rel(np.kron(G, A), block(want["ggn_one_example"], params, l, "C")) <= TOL


def test_kflr_is_exact_for_a_deep_linear_network_with_mse_for_any_m(x64):
    case = Case((3, 4, 3, 2), ("linear", "linear", "linear"), "mse")
    params, X, Y = problem(case, m=7)
    factors, ggn = run_once(
        lambda p, X, Y: (curvature.kfac_factors(net_of(case), p, X, Y), dense_ggn(p, X, Y, case)),
        params,
        X,
        Y,
    )
    for l, (A, G) in factors.items():
        assert rel(np.kron(A, G), block(ggn, params, l, "F")) <= TOL


@pytest.mark.xdist_group("curvature-relu-tanh-softmax-ce")  # shares its compiled case
def test_kflr_is_only_an_approximation_for_a_nonlinear_net_with_many_examples(x64):
    params, want, got = results("relu-tanh-softmax-ce")
    A, G = got["kfac"][1]
    assert rel(np.kron(A, G), block(want["ggn_no_l2"], params, 1, "F")) > 1e-3


# ---------------------------------------------------------------------------------------
# Monte Carlo: unbiased, and converging at the rate of its own standard error
# ---------------------------------------------------------------------------------------

MC_CASES = {
    "bce": Case((3, 4, 2), ("tanh", "sigmoid"), "bce"),
    "ce": Case((3, 4, 3), ("relu", "softmax"), "ce"),
    "mse": Case((3, 4, 2), ("tanh", "tanh"), "mse"),
}
N_SEEDS = 4000  # single-sample estimates for the mean and its standard error
M_LARGE = 20000  # samples in one converged estimate


def mc_quantities(params, X, Y, case, **extra):
    """diag_ggn and the G factors of kfac_factors, each flattened to one vector."""
    net = net_of(case)
    diag = ravel_pytree(curvature.diag_ggn(net, params, X, Y, **extra))[0]
    factors = curvature.kfac_factors(net, params, X, Y, **extra)
    return {"diag_ggn": diag, "kfac_G": jnp.concatenate([f.G.ravel() for f in factors.values()])}


@functools.cache
def mc_samples_of(loss):
    """{quantity: (exact, N_SEEDS single-sample estimates, one M_LARGE-sample estimate)}."""
    case = MC_CASES[loss]
    params, X, Y = problem(case, m=4)

    def run(params, X, Y):
        exact = mc_quantities(params, X, Y, case)
        keys = jax.random.split(jax.random.key(1), N_SEEDS)
        singles = jax.vmap(lambda k: mc_quantities(params, X, Y, case, mc_samples=1, key=k))(keys)
        many = mc_quantities(params, X, Y, case, mc_samples=M_LARGE, key=jax.random.key(2))
        return {q: (exact[q], singles[q], many[q]) for q in exact}

    return jax.tree.map(np.asarray, run_once(run, params, X, Y))


@pytest.mark.parametrize("loss", sorted(MC_CASES))
@pytest.mark.parametrize("name", ["diag_ggn", "kfac_G"])
def test_monte_carlo_estimate_is_unbiased_over_many_seeds(x64, name, loss):
    exact, singles, _ = mc_samples_of(loss)[name]
    stderr = np.std(singles, axis=0, ddof=1) / np.sqrt(N_SEEDS)
    floor = 1e-12 * np.max(np.abs(exact))
    assert np.all(np.abs(np.mean(singles, axis=0) - exact) <= 6 * stderr + floor)


@pytest.mark.parametrize("loss", sorted(MC_CASES))
@pytest.mark.parametrize("name", ["diag_ggn", "kfac_G"])
def test_monte_carlo_estimate_converges_at_its_standard_error(x64, name, loss):
    # M samples average M single-sample estimates: standard error σ₁/√M
    exact, singles, many = mc_samples_of(loss)[name]
    sigma = np.std(singles, axis=0, ddof=1)
    floor = 1e-12 * np.max(np.abs(exact))
    assert np.all(np.abs(many - exact) <= 6 * sigma / np.sqrt(M_LARGE) + floor)
    assert np.max(np.abs(many - exact)) > 0  # it is an estimate, not the exact value


# ---------------------------------------------------------------------------------------
# Bound by mg.network, under jit
# ---------------------------------------------------------------------------------------


@pytest.mark.xdist_group("curvature-relu-tanh-softmax-ce")  # shares its compiled case
def test_network_binds_the_options_of_the_curvature_functions(x64):
    case = CASES["relu-tanh-softmax-ce"]
    params, X, Y = problem(case)
    net = mg.network(case.acts, case.loss, l2=L2)
    ref = results("relu-tanh-softmax-ce")[1]
    v = direction(params)

    def bound(params, X, Y, v, key):
        mc = functools.partial(net.diag_ggn, mc_samples=2)(params, X, Y, key)
        return (
            net.diag_ggn(params, X, Y),
            net.ggn_vector_product(params, X, Y, v),
            net.diag_hessian(params, X, Y),
            mc,
        )

    diag, ggn_v, diag_h, mc = run_once(bound, params, X, Y, v, jax.random.key(0))
    assert rel(diag, ref["diag_ggn"]) <= TOL
    assert rel(ggn_v, ref["ggn_v"]) <= TOL
    assert rel(diag_h, ref["diag_hessian"]) <= TOL
    assert jax.tree.map(np.shape, mc) == jax.tree.map(np.shape, params)


# ---------------------------------------------------------------------------------------
# Data parallel: 4 virtual CPU devices vs one
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")  # once per worker, even when xdist interleaves modules
def parallel_results() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("XLA_FLAGS", None)
    worker = Path(__file__).with_name("_curvature_parallel_worker.py")
    proc = subprocess.run(
        [sys.executable, str(worker)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


PARALLEL = [
    "sum_grad_squared",
    "diag_ggn_exact",
    "diag_ggn_mc",
    "kfac_factors_exact",
    "kfac_factors_mc",
]


@pytest.mark.parametrize("name", PARALLEL)
@pytest.mark.xdist_group("curvature_parallel")  # its module fixture runs once
def test_sharded_over_four_devices_equals_one_device(parallel_results, name):
    assert (
        parallel_results["n_devices"] == 4 and parallel_results["x_sharding"] == "P(None, 'batch')"
    )
    assert parallel_results["agreement"][name] <= TOL


@pytest.mark.parametrize("name", PARALLEL)
@pytest.mark.xdist_group("curvature_parallel")
def test_sharded_curvature_all_reduces_only_its_result(parallel_results, name):
    # the sums over examples are the only communication: one parameter-shaped array
    # per W[l], b[l] (diagonals), or the factors A, G of every layer
    stats = parallel_results["all_reduce"][name]
    want = parallel_results["kfac_bytes" if name.startswith("kfac") else "param_bytes"]
    assert stats["bytes"] == want


# ---------------------------------------------------------------------------------------
# manualgrad train --noise-scale
# ---------------------------------------------------------------------------------------


def test_train_cli_prints_the_gradient_noise_scale(capsys):
    import argparse

    from manualgrad._cli import train as train_cli  # the subcommand alone

    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    assert train_cli.run(parser.parse_args(["--quiet", "--epochs", "20", "--noise-scale"])) == 0
    out = capsys.readouterr().out
    match = re.search(r"noise scale B_simple\W+([\d,.]+); tr Σ ([\d.e+-]+)", out)
    assert match, out  # 20 epochs from the init: the gradient is far above its noise
    assert float(match.group(1).replace(",", "")) > 0 and float(match.group(2)) > 0


# ---------------------------------------------------------------------------------------
# A weight shared over T = 2 positions: a layer defined here, float64 oracles in jnp
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SharedDense(Layer):
    """One W, b applied to both halves of the input: Z_t = W a_t + b (t = 1, 2), A = tanh(Z).

    Input (2d, m), the halves a_1 = A_prev[:d], a_2 = A_prev[d:]; output (2·units, m),
    [tanh(Z_1); tanh(Z_2)]. A hidden layer only: init, forward, backward; forward mode
    falls back to `jax.jvp` of the forward (the base class's `jvp`).
    """

    units: int = 3

    @property
    def param_names(self):
        return ("W", "b")

    def init(self, key, in_shape, dtype):
        (n,) = in_shape
        W = jax.random.normal(key, (self.units, n // 2), dtype)
        return {"W": W, "b": jnp.zeros((self.units, 1), dtype)}, (2 * self.units,)

    def forward(self, params, A_prev, precision):
        n, m = A_prev.shape
        P = A_prev.reshape(2, n // 2, m).transpose(1, 0, 2)  # (d, T = 2, m): a_t per column
        Z = jnp.einsum("od,dtm->otm", params["W"], P, precision="highest") + params["b"][:, :, None]
        A = jnp.tanh(Z)
        return A.transpose(1, 0, 2).reshape(2 * self.units, m), (P, Z, A)

    def backward(self, params, cache, dA, precision, need_dA_prev=True):
        P, _, A = cache
        m = dA.shape[1]
        dZ = dA.reshape(2, self.units, m).transpose(1, 0, 2) * (1 - A * A)  # tanh' = 1 − a²
        dA_prev = None
        if need_dA_prev:
            dP = jnp.einsum("od,otm->dtm", params["W"], dZ, precision="highest")
            dA_prev = dP.transpose(1, 0, 2).reshape(-1, m)
        return dA_prev, (Product("W", "b", P, dZ),)


SHARED_CASES = {  # (n_L, output activation, loss)
    "bce": (2, "sigmoid", "bce"),
    "ce": (3, "softmax", "ce"),
    "mse": (2, "tanh", "mse"),
}
SHARED_D, SHARED_UNITS, SHARED_M = 2, 3, 5


def shared_net(loss: str, l2: float = 0.0):
    n_L, out, _ = SHARED_CASES[loss]
    layers = [SharedDense(SHARED_UNITS), mg.layers.Dense(n_L, activation=out)]
    return mg.network(layers, loss, l2=l2)


def shared_problem(loss: str, m: int = SHARED_M, seed: int = 3):
    n_L, _, _ = SHARED_CASES[loss]
    rng = np.random.default_rng(seed)
    u, d = SHARED_UNITS, SHARED_D
    params = {
        "W1": rng.standard_normal((u, d)),
        "b1": 0.3 * rng.standard_normal((u, 1)),
        "W2": rng.standard_normal((n_L, 2 * u)) / np.sqrt(2 * u),
        "b2": 0.3 * rng.standard_normal((n_L, 1)),
    }
    X = rng.standard_normal((2 * d, m))
    case = Case((2 * d, n_L), ("tanh", SHARED_CASES[loss][1]), loss)  # for labels only
    _, _, Y = problem(Case((1, n_L), case.acts[-1:], loss), m, seed)
    return {k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(X), Y


def shared_hidden(params, x):
    """One example x (2d,) -> the shared layer's Z1 (T, units), row t = W a_t + b."""
    P = x.reshape(2, SHARED_D)
    return jnp.matmul(P, params["W1"].T, precision="highest") + params["b1"][:, 0][None, :]


def shared_split_from_z1(params, Z1, loss):
    """The split output (n_L,) from the shared layer's pre-activations: z[L], or a[L] for mse."""
    h = jnp.tanh(Z1).reshape(-1)  # [tanh(z_1); tanh(z_2)]
    z = jnp.matmul(params["W2"], h, precision="highest") + params["b2"][:, 0]
    return REFERENCE_ACTIVATIONS[SHARED_CASES[loss][1]](z) if loss == "mse" else z


def shared_split(params, x, loss):
    return shared_split_from_z1(params, shared_hidden(params, x), loss)


def shared_oracle(params, X, Y, v, loss) -> dict:
    """References for the shared network, from jnp and JAX's autodiff alone."""
    m = X.shape[1]
    one_loss = functools.partial(split_loss, loss=loss)

    def example_loss(p, x, y):
        return one_loss(shared_split(p, x, loss), y)

    def cost(p):
        data = jnp.mean(jax.vmap(example_loss, in_axes=(None, 1, 1))(p, X, Y))
        return data + L2 / (2 * m) * (jnp.sum(p["W1"] ** 2) + jnp.sum(p["W2"] ** 2))

    g = jax.vmap(jax.grad(example_loss), in_axes=(None, 1, 1))(params, X, Y)
    G = jax.vmap(lambda i: ravel_pytree(jax.tree.map(lambda x: x[i], g))[0])(jnp.arange(m))
    mean = jnp.mean(G, axis=0)
    trace_cov = jnp.sum((G - mean[None, :]) ** 2) / (m - 1)
    l2_grad = {k: L2 / m * p if k[0] == "W" else 0 * p for k, p in params.items()}
    grad_sq = jnp.sum((mean + ravel_pytree(l2_grad)[0]) ** 2) - trace_cov / m
    # the dense GGN: J from jacfwd of the split output, H from jax.hessian of the loss
    flat_p, unravel = ravel_pytree(params)
    outs = jax.vmap(lambda x: shared_split(params, x, loss), in_axes=1, out_axes=1)(X)
    J = jax.jacfwd(
        lambda f: jax.vmap(lambda x: shared_split(unravel(f), x, loss), in_axes=1, out_axes=1)(X)
    )(flat_p)  # (n_L, m, P)
    H = jax.vmap(jax.hessian(one_loss), in_axes=(1, 1))(outs, Y)  # (m, n_L, n_L)
    ggn = jnp.einsum("kip,ikl,liq->pq", J, H, J) / m + jnp.diag(l2_diagonal(params, L2, m))
    # KFC factors by their definition: ã_t per position; G from J_t = ∂split/∂z_t
    ones = jnp.ones((1, m))
    A1 = (
        sum(
            jnp.concatenate([X[t * SHARED_D : (t + 1) * SHARED_D], ones])
            @ (jnp.concatenate([X[t * SHARED_D : (t + 1) * SHARED_D], ones]).T)
            for t in range(2)
        )
        / m
    )
    Z1 = jax.vmap(lambda x: shared_hidden(params, x), in_axes=1)(X)  # (m, T, units)
    J1 = jax.vmap(jax.jacfwd(lambda z, p=params: shared_split_from_z1(p, z, loss)))(Z1)
    G1 = jnp.einsum("iktu,ikl,iltv->uv", J1, H, J1) / (m * 2)  # (1/m)(1/T) Σ_i Σ_t J_tᵀ H J_t
    h = jnp.tanh(Z1).reshape(m, -1).T  # (2·units, m)
    h1 = jnp.concatenate([h, ones])
    A2 = h1 @ h1.T / m
    out_act = REFERENCE_ACTIVATIONS[SHARED_CASES[loss][1]]
    z2 = jnp.matmul(params["W2"], h, precision="highest") + params["b2"]
    J2 = jax.vmap(jax.jacfwd(out_act if loss == "mse" else lambda z: z), in_axes=1)(z2)
    G2 = jnp.einsum("iku,ikl,ilv->uv", J2, H, J2) / m
    return {
        "sum_grad_squared": sum_of_squares(g),
        "grad_variance": variance(g),
        "gradient_gram": G @ G.T,
        "gradient_noise_scale": curvature.NoiseScale(trace_cov / grad_sq, trace_cov, grad_sq),
        "diag_ggn": jnp.diag(ggn),
        "ggn_v": ggn @ ravel_pytree(v)[0],
        "hess_v": jax.hessian(lambda f: cost(unravel(f)))(flat_p) @ ravel_pytree(v)[0],
        "kfac": {1: curvature.KFactors(A1, G1), 2: curvature.KFactors(A2, G2)},
    }


def shared_computed(params, X, Y, v, loss) -> dict:
    net, net_l2 = shared_net(loss), shared_net(loss, L2)
    out = {q: getattr(curvature, q)(net, params, X, Y) for q in FIRST_ORDER[:3]}
    out["gradient_noise_scale"] = curvature.gradient_noise_scale(net_l2, params, X, Y)
    out["diag_ggn"] = curvature.diag_ggn(net_l2, params, X, Y)
    out["ggn_v"] = curvature.ggn_vector_product(net_l2, params, X, Y, v)
    out["hess_v"] = curvature.hessian_vector_product(net_l2, params, X, Y, v)
    out["kfac"] = curvature.kfac_factors(net, params, X, Y)
    return out


@functools.cache
def shared_results(loss: str) -> tuple[dict, dict]:
    params, X, Y = shared_problem(loss)
    return run_once(
        lambda *a: (shared_oracle(*a, loss), shared_computed(*a, loss)),
        params,
        X,
        Y,
        direction(params),
    )


SHARED_IDS = [
    pytest.param(c, marks=pytest.mark.xdist_group(f"curvature-shared-{c}")) for c in SHARED_CASES
]
SHARED_QUANTITIES = [*FIRST_ORDER, "diag_ggn", "ggn_v", "hess_v"]


@pytest.mark.parametrize("quantity", SHARED_QUANTITIES)
@pytest.mark.parametrize("loss", SHARED_IDS)
def test_weight_shared_over_two_positions_matches_jax_oracles(x64, loss, quantity):
    want, got = shared_results(loss)
    assert rel(got[quantity], want[quantity]) <= TOL


@pytest.mark.parametrize("loss", SHARED_IDS)
def test_kfac_of_a_shared_weight_is_kfc_sum_over_positions_of_a_mean_of_g(x64, loss):
    want, got = shared_results(loss)
    assert sorted(got["kfac"]) == [1, 2]
    for l in (1, 2):
        assert rel(got["kfac"][l].A, want["kfac"][l].A) <= TOL
        assert rel(got["kfac"][l].G, want["kfac"][l].G) <= TOL


def test_diag_hessian_refuses_a_layer_that_is_not_dense(x64):
    params, X, Y = shared_problem("bce")
    with pytest.raises(mg.errors.ConfigError, match=r"only dense layers give.*SharedDense"):
        curvature.diag_hessian(shared_net("bce"), params, X, Y)


def test_curvature_refuses_a_network_with_dropout(x64):
    case = CASES["tanh-sigmoid-bce"]
    params, X, Y = problem(case)
    net = mg.network(case.acts, case.loss, keep_prob=0.8)
    with pytest.raises(mg.errors.ConfigError, match=r"deterministic network.*keep_prob = 0.8"):
        curvature.diag_ggn(net, params, X, Y)
