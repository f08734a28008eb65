"""Independent oracles for the tests: a plain forward and cost written with jax.nn and optax.

Nothing here calls manualgrad's forward, loss or backward code, so `jax.grad` of
:func:`reference_cost` is an independent check of the hand-written backward pass.
Dropout masks are an *input* (drawn with manualgrad's documented mask function),
not something under test.

At a tie z = 0 exactly, `jax.grad` of `jax.nn.relu` is 0 (manualgrad's relu'(0)), but
of `jax.nn.leaky_relu` it is 1 where manualgrad takes the left slope 0.01: a test that
puts a leaky_relu pre-activation exactly at 0 needs another oracle (tests/test_gradcheck.py
checks ties against `jax.grad` of manualgrad's own forward, which is what `check` does).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

REFERENCE_ACTIVATIONS = {
    "relu": jax.nn.relu,
    "leaky_relu": lambda z: jax.nn.leaky_relu(z, negative_slope=0.01),
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "linear": lambda z: z,
    "softmax": lambda z: jax.nn.softmax(z, axis=0),
}


def reference_losses(ZL, Y, output, loss):
    """Per-example losses (m,) from the output pre-activation, via optax."""
    if loss == "bce":
        return jnp.sum(optax.sigmoid_binary_cross_entropy(ZL, Y), axis=0)
    if loss == "ce":
        return optax.softmax_cross_entropy(ZL.T, Y.T)
    AL = REFERENCE_ACTIVATIONS[output](ZL)
    return 0.5 * jnp.sum((AL - Y) ** 2, axis=0)


def reference_cost(params, X, Y, activations, loss, l2=0.0, keep_prob=1.0, masks=None):
    """C = mean of per-example losses + (λ/2m) Σ‖W‖², written independently of manualgrad."""
    L = len(activations)
    A = X
    for l in range(1, L + 1):
        Z = jnp.matmul(params[f"W{l}"], A, precision="highest") + params[f"b{l}"]
        A = REFERENCE_ACTIVATIONS[activations[l - 1]](Z)
        if l < L and masks is not None:
            A = A * masks[l - 1].astype(A.dtype) / keep_prob
    m = X.shape[1]
    C = jnp.mean(reference_losses(Z, Y, activations[-1], loss))
    return C + l2 / (2 * m) * sum(jnp.sum(params[f"W{l}"] ** 2) for l in range(1, L + 1))


def max_relative_error(grads, reference):
    """max over parameters of ‖g − r‖ / max(‖r‖, 1e-8 ‖r‖_all).

    Per parameter, relative to its own norm, with a floor at 1e-8 of the whole
    gradient's norm so a parameter whose exact gradient is ~0 (a dead relu unit, a
    bias sum that cancels) cannot blow up the ratio through rounding alone.
    """
    assert sorted(grads) == sorted(reference), (sorted(grads), sorted(reference))
    total = jnp.sqrt(sum(jnp.sum(r**2) for r in reference.values()))
    worst = 0.0
    for k, r in reference.items():
        g = grads[k]
        assert g.shape == r.shape, (k, g.shape, r.shape)
        assert g.dtype == r.dtype, (k, g.dtype, r.dtype)
        denom = jnp.maximum(jnp.linalg.norm(r), 1e-8 * total)
        denom = jnp.where(denom > 0, denom, 1.0)
        worst = max(worst, float(jnp.linalg.norm(g - r) / denom))
    return worst


def labels_for(loss, n_L, m, key, dtype):
    """Valid targets: {0,1} for bce, one-hot columns for ce, reals for mse."""
    if loss == "bce":
        return jax.random.bernoulli(key, 0.5, (n_L, m)).astype(dtype)
    if loss == "ce":
        return jax.nn.one_hot(jax.random.randint(key, (m,), 0, n_L), n_L, dtype=dtype).T
    return jax.random.normal(key, (n_L, m), dtype)
