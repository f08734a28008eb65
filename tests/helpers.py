"""What every test shares: independent oracles, one relative error, problem builders, tolerances.

Nothing here calls manualgrad's forward, loss or backward code, so `jax.grad` of
:func:`reference_cost` is an independent check of the hand-written backward pass. The
oracle is written once, for one example (:func:`oracle_loss`); :func:`reference_cost`
is its mean over the columns plus the L2 term, and :func:`oracle_per_example` is
`jax.vmap(jax.grad(oracle_loss))`. :func:`dense_network` builds the network under test
the way users are taught to, from `mg.layers.Dense` layers.
Dropout masks are an *input* (drawn with manualgrad's documented mask function),
not something under test. The activations follow manualgrad's documented
subgradient convention at the kink, g'(0) = 0 for relu and 0.01 for leaky_relu,
so `jax.grad` of the oracle is the derivative the formulas claim, everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

import manualgrad as mg

#: Tolerances of the comparisons with an oracle, relative, per dtype. float32 tests
#: run under `jax.default_matmul_precision("highest")` (GPUs default to TF32).
TOL = {jnp.float64: 1e-12, jnp.float32: 1e-5}
F64_TOL = TOL[jnp.float64]
F32_TOL = TOL[jnp.float32]

#: g(z) for each activation, written with jax.nn / jnp (z: (n, m) or (n,), classes on axis 0).
REFERENCE_ACTIVATIONS = {
    "relu": jax.nn.relu,  # jax.grad gives 0 at z = 0, the convention of the formulas
    "leaky_relu": lambda z: jnp.where(z > 0, z, 0.01 * z),  # 0.01 at 0 (jax.nn's gives 1)
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


def oracle_loss(params, x, y, activations, loss, masks=None, keep_prob=1.0):
    """L(x, y): one example's loss, x (n_x,), y (n_L,); `masks` one (n_l,) per hidden layer.

    Written with jnp and optax alone (inverted dropout: a ⊙ d / keep_prob).
    """
    L = len(activations)
    a = x
    for l in range(1, L + 1):
        z = jnp.matmul(params[f"W{l}"], a, precision="highest") + params[f"b{l}"][:, 0]
        if l < L:
            a = REFERENCE_ACTIVATIONS[activations[l - 1]](z)
            if masks is not None:
                a = a * masks[l - 1].astype(a.dtype) / keep_prob
    return reference_losses(z[:, None], y[:, None], activations[-1], loss)[0]


def _over_examples(fn, params, X, Y, activations, loss, masks, keep_prob):
    """`fn(params, x, y, masks_i)` vmapped over the columns of X, Y and the masks."""

    def one(x, y, mask):
        return fn(params, x, y, activations, loss, mask, keep_prob)

    return jax.vmap(one, in_axes=(1, 1, 1))(X, Y, None if masks is None else list(masks))


def reference_cost(params, X, Y, activations, loss, l2=0.0, keep_prob=1.0, masks=None):
    """C = mean over the columns of :func:`oracle_loss` + (λ/2m) Σ‖W‖², without manualgrad."""
    losses = _over_examples(oracle_loss, params, X, Y, activations, loss, masks, keep_prob)
    m = X.shape[1]
    L = len(activations)
    return jnp.mean(losses) + l2 / (2 * m) * sum(
        jnp.sum(params[f"W{l}"] ** 2) for l in range(1, L + 1)
    )


def oracle_per_example(params, X, Y, activations, loss, masks=None, keep_prob=1.0):
    """g_i = ∂L_i/∂params for every column: `jax.vmap(jax.grad(oracle_loss))`, (m, *shape)."""
    return _over_examples(jax.grad(oracle_loss), params, X, Y, activations, loss, masks, keep_prob)


def example_norms(per_example):
    """‖g_i‖ over all parameters, (m,), from leaves of shape (m, …)."""
    return jnp.sqrt(
        sum(jnp.sum(v.reshape(v.shape[0], -1) ** 2, axis=1) for v in per_example.values())
    )


def sum_of_squares(per_example):
    """Σ_i g_i ⊙ g_i per parameter, from leaves of shape (m, …)."""
    return jax.tree.map(lambda x: jnp.sum(x * x, axis=0), per_example)


def variance(per_example):
    """(1/m) Σ_i (g_i − ḡ)² per parameter (the biased variance), from leaves of shape (m, …)."""
    return jax.tree.map(
        lambda x: jnp.mean((x - jnp.mean(x, axis=0, keepdims=True)) ** 2, axis=0), per_example
    )


def clipped_mean(per_example, clip_norm):
    """(1/m) Σ_i min(1, C/‖g_i‖) g_i, explicitly (C/0 = inf, min(1, inf) = 1)."""
    s = jnp.minimum(1.0, clip_norm / example_norms(per_example))
    return {
        k: jnp.mean(v * s.reshape((-1,) + (1,) * (v.ndim - 1)), axis=0)
        for k, v in per_example.items()
    }


def rel_err(got, want) -> float:
    """max |got − want| over all leaves / max |want| over all leaves (trees must match).

    The one relative error of the suite for values, trees and arrays (0/0 counts as 0);
    :func:`max_relative_error` is the per-parameter norm for gradients.
    """
    got_leaves, got_tree = jax.tree.flatten(got)
    want_leaves, want_tree = jax.tree.flatten(want)
    assert got_tree == want_tree, (got_tree, want_tree)
    num = den = 0.0
    for g, w in zip(got_leaves, want_leaves, strict=True):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        assert g.shape == w.shape, (g.shape, w.shape)
        if w.size:
            num, den = max(num, float(np.max(np.abs(g - w)))), max(den, float(np.max(np.abs(w))))
    return num / den if den > 0 else num


#: init scale of W[l] per `mg.init_params` method, as its docstring states it
INIT_SCALES = {
    "he": lambda n_prev: np.sqrt(2.0 / n_prev),
    "xavier": lambda n_prev: np.sqrt(1.0 / n_prev),
    "random": lambda n_prev: 0.01,
    "zeros": lambda n_prev: 0.0,
}


def problem(layer_dims, loss, m, *, seed=0, dtype=jnp.float64, method="he", noise=0.1):
    """(params, X, Y): W at `method`'s init scale plus noise, nonzero b, X ~ N(0, 1), valid Y.

    Drawn with numpy (`default_rng(seed)`), so a new shape costs no compilation.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for l in range(1, len(layer_dims)):
        shape = (layer_dims[l], layer_dims[l - 1])
        scale = INIT_SCALES[method](layer_dims[l - 1])
        params[f"W{l}"] = rng.standard_normal(shape) * scale + noise * rng.standard_normal(shape)
        params[f"b{l}"] = noise * rng.standard_normal((layer_dims[l], 1))
    X = rng.standard_normal((layer_dims[0], m))
    Y = labels_for(loss, layer_dims[-1], m, rng, dtype)
    return {k: jnp.asarray(v, dtype) for k, v in params.items()}, jnp.asarray(X, dtype), Y


def dense_network(layer_dims: Sequence[int], activations: Sequence[str], loss="bce", **options):
    """`mg.network([mg.layers.Dense(n_1, a_1), …], loss, **options)` for `layer_dims`."""
    layers = [
        mg.layers.Dense(n, activation=a) for n, a in zip(layer_dims[1:], activations, strict=True)
    ]
    return mg.network(layers, loss, **options)


def max_relative_error(grads, reference):
    """max over parameters of ‖g − r‖ / max(‖r‖, 1e-8 ‖r‖_all).

    Per parameter, relative to its own norm, with a floor at 1e-8 of the whole
    gradient's norm so a parameter whose exact gradient is ~0 (a dead relu unit, a
    bias sum that cancels) cannot blow up the ratio through rounding alone.
    """
    assert sorted(grads) == sorted(reference), (sorted(grads), sorted(reference))
    total = np.sqrt(sum(np.sum(np.asarray(r, np.float64) ** 2) for r in reference.values()))
    worst = 0.0
    for k, r in reference.items():
        g = grads[k]
        assert g.shape == r.shape, (k, g.shape, r.shape)
        assert g.dtype == r.dtype, (k, g.dtype, r.dtype)
        g, r = np.asarray(g, np.float64), np.asarray(r, np.float64)
        denom = max(float(np.linalg.norm(r)), 1e-8 * total)
        worst = max(worst, float(np.linalg.norm(g - r)) / (denom if denom > 0 else 1.0))
    return worst


def labels_for(loss, n_L, m, rng, dtype):
    """Valid targets drawn from `rng`: {0,1} for bce, one-hot columns for ce, reals for mse."""
    if loss == "bce":
        Y = (rng.random((n_L, m)) < 0.5).astype(np.float64)
    elif loss == "ce":
        Y = np.eye(n_L)[:, rng.integers(0, n_L, m)]
    else:
        Y = rng.standard_normal((n_L, m))
    return jnp.asarray(Y, dtype)


_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def same_printout(printed: str, shown: str, *, rel: float = 1e-12, floor: float = 1e-14) -> bool:
    """Whether `printed` is `shown` up to the rounding of the last bits of its numbers.

    The words, spaces and table rules must be identical and the numbers must come in the
    same places. Two numbers that differ as text pass when they agree to `rel` relative,
    or when both are below `floor` in size: a float64 sum's last bit depends on the order
    in which the compiler adds (and on its flags and the CPU), and a relative difference of
    1e-17 against one of 7e-17 is the same verdict, rounding.
    """
    if _NUMBER.split(printed) != _NUMBER.split(shown):
        return False
    for a, b in zip(_NUMBER.findall(printed), _NUMBER.findall(shown), strict=True):
        if a == b:
            continue
        x, y = float(a), float(b)
        if max(abs(x), abs(y)) > floor and abs(x - y) > rel * max(abs(x), abs(y)):
            return False
    return True
