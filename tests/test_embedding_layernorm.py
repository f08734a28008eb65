"""Embedding and LayerNorm: every extension against an independently written cost, float64.

Two networks: token ids → Embedding → LayerNorm → Flatten → Dense softmax (a product
`Lookup` with repeated ids in every example, and a `ScaleShift` over T positions), and
LayerNorm inside a dense MLP on vectors (T = 1). The oracle (`_example_loss`) writes the
same model from scratch — the embedding as a matmul with explicit one-hot vectors, layer
norm with `jnp.mean`/`jnp.sqrt` — and differentiates it with `jax.grad`, `jax.vmap` and
`jax.jacrev`/`jax.hessian`; none of it calls manualgrad.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import manualgrad as mg
from helpers import rel_err

V, D, T, M, K = 7, 4, 5, 6, 3  # vocabulary, embedding dim, positions, examples, classes
EPS = 1e-5


class Problem(NamedTuple):
    net: mg.Network
    params: dict
    X: jax.Array
    Y: jax.Array


def _layer_norm(Z, gamma, beta):
    """The oracle's layer norm over axis 0 of Z (d,) or (d, T); gamma, beta (d,)."""
    Z2 = Z.reshape(Z.shape[0], -1)
    mu = jnp.mean(Z2, axis=0, keepdims=True)
    var = jnp.mean((Z2 - mu) ** 2, axis=0, keepdims=True)
    out = gamma[:, None] * (Z2 - mu) / jnp.sqrt(var + EPS) + beta[:, None]
    return out.reshape(Z.shape)


def _logits(params, x, kind):
    """One example's output pre-activation, written independently of manualgrad."""
    if kind == "seq":
        onehot = jax.nn.one_hot(x, V, dtype=params["W1"].dtype)  # (T, V)
        Z = params["W1"] @ onehot.T  # (D, T): the embedding as a dense layer on one-hots
        H = _layer_norm(Z, params["gamma2"][:, 0], params["beta2"][:, 0])
        return params["W3"] @ H.reshape(-1) + params["b3"][:, 0]
    h = jnp.tanh(params["W1"] @ x + params["b1"][:, 0])
    h = _layer_norm(h, params["gamma2"][:, 0], params["beta2"][:, 0])
    return params["W3"] @ h + params["b3"][:, 0]


def _ce(logits, y):
    return -jnp.sum(y * jax.nn.log_softmax(logits))


def _example_loss(params, x, y, kind):
    return _ce(_logits(params, x, kind), y)


def _per_example(kind, params, X, Y):
    in_x = 1  # X (T, m) ids or (n_x, m) vectors: examples are columns either way
    return jax.vmap(jax.grad(_example_loss), in_axes=(None, in_x, 1, None))(params, X, Y, kind)


def _build(kind) -> Problem:
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    Y = jax.nn.one_hot(jnp.arange(M) % K, K, dtype=jnp.float64).T
    if kind == "seq":
        layers = [mg.layers.Embedding(V, D), mg.layers.LayerNorm(EPS), mg.layers.Flatten()]
        shape: tuple[int, ...] = (T,)
        X = jax.random.randint(k2, (T, M), 0, V)
        X = X.at[3].set(X[0])  # a repeated id in every example: the [x_t = x_s] terms
    else:
        layers = [mg.layers.Dense(5, activation="tanh"), mg.layers.LayerNorm(EPS)]
        shape = (4,)
        X = jax.random.normal(k2, (4, M), jnp.float64)
    net = mg.network([*layers, mg.layers.Dense(K, activation="softmax")], loss="ce")
    params = net.init(shape, k1, dtype=jnp.float64)
    kg, kb = jax.random.split(k3)
    params["gamma2"] = 1 + 0.5 * jax.random.normal(kg, (params["gamma2"].shape), jnp.float64)
    params["beta2"] = 0.5 * jax.random.normal(kb, params["beta2"].shape, jnp.float64)
    return Problem(net, params, X, Y)


@functools.cache
def _problem_and_oracle(kind):
    """The problem and its per-example gradients g_i = vmap(grad(L_i)), computed once."""
    with jax.enable_x64(True):
        p = _build(kind)
        return p, _per_example(kind, p.params, p.X, p.Y)


KINDS = pytest.mark.parametrize("kind", ["seq", "mlp"], ids=["embedding-layernorm", "ln-in-mlp"])


def _sq_norms(g):
    return sum(jnp.sum(v.reshape(M, -1) ** 2, axis=1) for v in g.values())


@KINDS
def test_value_and_grad_equals_jax_grad_of_the_oracle_cost(x64, kind):
    p, g = _problem_and_oracle(kind)
    C, grads = jax.jit(p.net.value_and_grad)(p.params, p.X, p.Y)
    losses = jax.vmap(_example_loss, in_axes=(None, 1, 1, None))(p.params, p.X, p.Y, kind)
    assert rel_err(C, jnp.mean(losses)) <= 1e-12
    assert rel_err(grads, {k: jnp.mean(v, axis=0) for k, v in g.items()}) <= 1e-12


@KINDS
def test_per_example_grads_and_norms_equal_vmap_grad(x64, kind):
    p, g = _problem_and_oracle(kind)
    assert rel_err(p.net.per_example_grads(p.params, p.X, p.Y), g) <= 1e-12
    norms = p.net.per_example_norms(p.params, p.X, p.Y)
    assert rel_err(norms, jnp.sqrt(_sq_norms(g))) <= 1e-12


@KINDS
def test_clipped_and_dp_grads_equal_the_clipped_oracle(x64, kind):
    p, g = _problem_and_oracle(kind)
    norms = jnp.sqrt(_sq_norms(g))
    C = float(jnp.median(norms))  # about half the examples clipped
    s = jnp.minimum(1.0, C / norms)
    clipped_sum = {k: jnp.einsum("i,i...->...", s, v) for k, v in g.items()}
    got = jax.jit(p.net.clipped_grads)(p.params, p.X, p.Y, C)
    assert rel_err(got, {k: v / M for k, v in clipped_sum.items()}) <= 1e-12
    key, sigma = jax.random.key(11), 0.7
    names = sorted(g)  # the documented draw: one key per parameter, sorted names
    xi = {
        n: jax.random.normal(k, g[n].shape[1:], jnp.float64)
        for n, k in zip(names, jax.random.split(key, len(names)), strict=True)
    }
    want = {k: (clipped_sum[k] + sigma * C * xi[k]) / M for k in g}
    assert rel_err(p.net.dp_grads(p.params, p.X, p.Y, key, C, sigma), want) <= 1e-12


@KINDS
def test_sum_grad_squared_variance_and_gram_equal_the_oracle(x64, kind):
    p, g = _problem_and_oracle(kind)
    cv = mg.curvature
    sq = cv.sum_grad_squared(p.net, p.params, p.X, p.Y)
    assert rel_err(sq, {k: jnp.sum(v * v, axis=0) for k, v in g.items()}) <= 1e-12
    var = cv.grad_variance(p.net, p.params, p.X, p.Y)
    assert rel_err(var, {k: jnp.var(v, axis=0) for k, v in g.items()}) <= 1e-12
    G = jnp.concatenate([v.reshape(M, -1) for v in g.values()], axis=1)
    assert rel_err(cv.gradient_gram(p.net, p.params, p.X, p.Y), G @ G.T) <= 1e-12


@KINDS
def test_diag_ggn_equals_jacobian_hessian_oracle(x64, kind):
    p, _ = _problem_and_oracle(kind)

    def example_diag(x, y):
        z = _logits(p.params, x, kind)
        J = jax.jacrev(_logits)(p.params, x, kind)  # (K, *shape) per key
        H = jax.hessian(_ce)(z, y)  # (K, K)
        return {k: jnp.einsum("k...,kl,l...->...", J[k], H, J[k]) for k in J}

    per_ex = jax.vmap(example_diag, in_axes=(1, 1))(p.X, p.Y)
    want = {k: jnp.mean(v, axis=0) for k, v in per_ex.items()}
    assert rel_err(mg.curvature.diag_ggn(p.net, p.params, p.X, p.Y), want) <= 1e-12


@KINDS
def test_ggn_vector_product_equals_the_oracle(x64, kind):
    p, _ = _problem_and_oracle(kind)
    v = jax.tree.map(
        lambda a: jnp.cos(jnp.arange(a.size, dtype=a.dtype)).reshape(a.shape), p.params
    )

    def example_Gv(x, y):
        f = functools.partial(_logits, x=x, kind=kind)
        z, Jv = jax.jvp(f, (p.params,), (v,))
        HJv = jax.hessian(_ce)(z, y) @ Jv
        return jax.vjp(f, p.params)[1](HJv)[0]

    per_ex = jax.vmap(example_Gv, in_axes=(1, 1))(p.X, p.Y)
    want = {k: jnp.mean(x, axis=0) for k, x in per_ex.items()}
    assert rel_err(mg.curvature.ggn_vector_product(p.net, p.params, p.X, p.Y, v), want) <= 1e-12


def test_custom_vjp_cost_passes_finite_differences(x64):
    p, _ = _problem_and_oracle("seq")
    cost = p.net.custom_vjp_cost
    check_grads(lambda q: cost(q, p.X, p.Y), (p.params,), order=1, modes=["rev"], eps=1e-6)


def test_embedding_kfac_input_factor_is_the_one_hot_second_moment(x64):
    net = mg.network(
        [mg.layers.Embedding(V, D), mg.layers.Flatten(), mg.layers.Dense(K, activation="softmax")],
        loss="ce",
    )
    p, _ = _problem_and_oracle("seq")
    params = net.init((T,), jax.random.key(0), dtype=jnp.float64)
    factors = mg.curvature.kfac_factors(net, params, p.X, p.Y)
    onehot = jax.nn.one_hot(p.X, V, dtype=jnp.float64).reshape(-1, V)  # every (t, i)
    assert rel_err(factors[1].A, onehot.T @ onehot / M) <= 1e-12


def test_kfac_refuses_layernorm_with_a_clear_error(x64):
    p, _ = _problem_and_oracle("mlp")
    with pytest.raises(mg.errors.ConfigError, match="LayerNorm's scale and shift"):
        mg.curvature.kfac_factors(p.net, p.params, p.X, p.Y)


def test_layer_norm_output_is_normalised_per_position(x64):
    layer = mg.layers.LayerNorm()
    X = jax.random.normal(jax.random.key(0), (6, 3, 2), jnp.float64) * 3 + 1
    params = {"gamma": jnp.ones((6, 1)), "beta": jnp.zeros((6, 1))}
    Z, _ = layer.forward(params, X, "default")
    np.testing.assert_allclose(np.mean(Z, axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(np.var(Z, axis=0) * (1 + EPS / np.var(X, axis=0)), 1, rtol=1e-9)
