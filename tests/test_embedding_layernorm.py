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


def _build(kind) -> Problem:
    k1, k2 = jax.random.split(jax.random.key(3))
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
    shapes = jax.eval_shape(lambda k: net.init(shape, k, dtype=jnp.float64), k1)
    rng = np.random.default_rng(0)  # random γ (around 1) and β too, so that both matter
    params = {
        k: jnp.asarray(
            rng.normal(size=a.shape) * (0.5 if k[0] in "gb" else 1.0) + (k.startswith("gamma"))
        )
        for k, a in shapes.items()
    }
    return Problem(net, params, X, Y)


def _oracle(kind, params, X, Y, C, noise_key, sigma, v):
    """Every quantity from the oracle's per-example gradients and Jacobians (jitted once)."""
    g = jax.vmap(jax.grad(_example_loss), in_axes=(None, 1, 1, None))(params, X, Y, kind)
    losses = jax.vmap(_example_loss, in_axes=(None, 1, 1, None))(params, X, Y, kind)
    sq_norms = sum(jnp.sum(x.reshape(M, -1) ** 2, axis=1) for x in g.values())
    s = jnp.minimum(1.0, C / jnp.sqrt(sq_norms))
    clipped_sum = {k: jnp.einsum("i,i...->...", s, x) for k, x in g.items()}
    names = sorted(g)  # the documented draw: one key per parameter, sorted names
    keys = dict(zip(names, jax.random.split(noise_key, len(names)), strict=True))
    G = jnp.concatenate([x.reshape(M, -1) for x in g.values()], axis=1)

    def example_ggn(x, y):  # diag(J_iᵀ H_i J_i) and J_iᵀ H_i J_i v
        f = functools.partial(_logits, x=x, kind=kind)
        z, Jv = jax.jvp(f, (params,), (v,))
        J = jax.jacrev(f)(params)  # (K, *shape) per key
        H = jax.hessian(_ce)(z, y)  # (K, K)
        diag = {k: jnp.einsum("k...,kl,l...->...", J[k], H, J[k]) for k in J}
        return diag, jax.vjp(f, params)[1](H @ Jv)[0]

    diag, Gv = jax.vmap(example_ggn, in_axes=(1, 1))(X, Y)
    mean = functools.partial(jnp.mean, axis=0)
    return {
        "cost": jnp.mean(losses),
        "grads": jax.tree.map(mean, g),
        "per_example_grads": g,
        "norms": jnp.sqrt(sq_norms),
        "clipped": {k: x / M for k, x in clipped_sum.items()},
        "dp": {
            k: (clipped_sum[k] + sigma * C * jax.random.normal(keys[k], x.shape, x.dtype)) / M
            for k, x in clipped_sum.items()
        },
        "sum_grad_squared": {k: jnp.sum(x * x, axis=0) for k, x in g.items()},
        "grad_variance": {k: jnp.var(x, axis=0) for k, x in g.items()},
        "gram": G @ G.T,
        "diag_ggn": jax.tree.map(mean, diag),
        "ggn_vector_product": jax.tree.map(mean, Gv),
    }


def _manual(net, params, X, Y, C, noise_key, sigma, v):
    """The same quantities from manualgrad, in one jitted program."""
    cost, grads = net.value_and_grad(params, X, Y)
    return {
        "cost": cost,
        "grads": grads,
        "per_example_grads": net.per_example_grads(params, X, Y),
        "norms": net.per_example_norms(params, X, Y),
        "clipped": net.clipped_grads(params, X, Y, C),
        "dp": net.dp_grads(params, X, Y, noise_key, C, sigma),
        "sum_grad_squared": net.sum_grad_squared(params, X, Y),
        "grad_variance": net.grad_variance(params, X, Y),
        "gram": net.gradient_gram(params, X, Y),
        "diag_ggn": net.diag_ggn(params, X, Y),
        "ggn_vector_product": net.ggn_vector_product(params, X, Y, v),
    }


@functools.cache
def _results(kind):
    """(manualgrad's, the oracle's) quantities for one problem, in one compiled program."""
    with jax.enable_x64(True):
        p = _build(kind)
        v = {
            k: jnp.cos(jnp.arange(a.size, dtype=a.dtype)).reshape(a.shape)
            for k, a in p.params.items()
        }

        def both(params, X, Y, noise_key, v):
            g = jax.vmap(jax.grad(_example_loss), in_axes=(None, 1, 1, None))(params, X, Y, kind)
            norms = jnp.sqrt(sum(jnp.sum(x.reshape(M, -1) ** 2, axis=1) for x in g.values()))
            C = jnp.median(norms)  # about half the examples clipped
            args = (params, X, Y, C, noise_key, 0.7, v)
            return _manual(p.net, *args), _oracle(kind, *args)

        return jax.jit(both)(p.params, p.X, p.Y, jax.random.key(11), v)


KINDS = pytest.mark.parametrize("kind", ["seq", "mlp"], ids=["embedding-layernorm", "ln-in-mlp"])


def _check(kind, *quantities):
    got, want = _results(kind)
    for q in quantities:
        assert rel_err(got[q], want[q]) <= 1e-12, q


@KINDS
def test_value_and_grad_equals_jax_grad_of_the_oracle_cost(kind):
    _check(kind, "cost", "grads")


@KINDS
def test_per_example_grads_and_norms_equal_vmap_grad(kind):
    _check(kind, "per_example_grads", "norms")


@KINDS
def test_clipped_and_dp_grads_equal_the_clipped_oracle(kind):
    _check(kind, "clipped", "dp")


@KINDS
def test_sum_grad_squared_variance_and_gram_equal_the_oracle(kind):
    _check(kind, "sum_grad_squared", "grad_variance", "gram")


@KINDS
def test_diag_ggn_and_ggn_vector_product_equal_the_jacobian_hessian_oracle(kind):
    _check(kind, "diag_ggn", "ggn_vector_product")


def test_custom_vjp_cost_passes_finite_differences(x64):
    p = _build("seq")
    cost = p.net.custom_vjp_cost
    f = jax.jit(lambda q: cost(q, p.X, p.Y))
    check_grads(f, (p.params,), order=1, modes=["rev"], eps=1e-6)


def test_embedding_kfac_input_factor_is_the_one_hot_second_moment(x64):
    net = mg.network(
        [mg.layers.Embedding(V, D), mg.layers.Flatten(), mg.layers.Dense(K, activation="softmax")],
        loss="ce",
    )
    p = _build("seq")
    params = net.init((T,), jax.random.key(0), dtype=jnp.float64)
    factors = jax.jit(net.kfac_factors)(params, p.X, p.Y)
    onehot = jax.nn.one_hot(p.X, V, dtype=jnp.float64).reshape(-1, V)  # every (t, i)
    assert rel_err(factors[1].A, onehot.T @ onehot / M) <= 1e-12


def test_kfac_refuses_layernorm_with_a_clear_error(x64):
    p = _build("mlp")
    with pytest.raises(mg.errors.ConfigError, match="LayerNorm's scale and shift"):
        jax.jit(p.net.kfac_factors)(p.params, p.X, p.Y)  # at trace time
