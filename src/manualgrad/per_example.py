r"""Per-example gradients, their exact norms, and clipped (DP) gradients in one backward pass.

Formula (2) is the mean over examples of formula (1):

    dW[l] = (1/m) Σ_i dz[l](i) a[l-1](i)ᵀ,        db[l] = (1/m) Σ_i dz[l](i).

This module makes the one-example side a first-class citizen and uses it to compute
what autodiff users usually pay m copies of the weights for:

| function            | returns                                       | forms each g_i? |
|---------------------|-----------------------------------------------|-----------------|
| `one_example_grads` | g = ∂L/∂params for one example (x, y)         | (one example)   |
| `per_example_grads` | `jax.vmap(one_example_grads)`: (m, *shape)    | yes, m of them  |
| `per_example_norms` | ‖g_i‖ for i = 1 … m, shape (m,)               | no              |
| `clipped_grads`     | (1/m) Σ_i min(1, C/‖g_i‖) g_i                 | no              |
| `dp_grads`          | (Σ_i min(1, C/‖g_i‖) g_i + N(0, σ²C² I)) / m  | no              |

The first two run the engine's chain (:mod:`manualgrad._core.engine`) on one example's
vectors and apply formula (1); the last three run it once on the batch and then use
two facts about its dZ[l]:

* the norm identity, from ‖u vᵀ‖_F = ‖u‖ ‖v‖ and formula (1):
  ‖g_i‖² = Σ_l ‖dz[l](i)‖² (‖a[l-1](i)‖² + 1);
* column i of every dZ[l] is linear in dZ[L](i) (formulas (4), (5) and the dropout
  mask are linear in dA at fixed Z), so scaling column i of every dZ[l] by s_i is
  the backward pass of the loss s_i L_i, and formula (2) on the scaled dZ[l] gives
  (1/m) Σ_i s_i g_i.

See docs/per_example.md for the derivations.

L2 and dropout. The L2 term (λ/2m) Σ_l ‖W[l]‖_F² is not a per-example loss: it
depends on no example, so it is neither in g_i, nor in ‖g_i‖, nor clipped or noised;
`clipped_grads` and `dp_grads` add its (λ/m) W[l] once, after clipping (and
without noise), exactly as `value_and_grad` adds it to the mean. Dropout is supported
by every batched function here (`keep_prob` < 1 with a `key`, as in
`value_and_grad`): mask D[l] has one column per example, so g_i is the gradient of
example i's loss under its own mask, and the same key gives the same masks as
`value_and_grad`. `per_example_grads` vmaps over the columns of those same masks;
the single-example `one_example_grads` has no dropout.

All functions are pure; bound by :func:`manualgrad.network` they take only arrays
and jit directly. `clip_norm`, `noise_multiplier` and `normaliser` may be traced.

>>> import jax, jax.numpy as jnp, manualgrad as mg
>>> params = mg.init_params([2, 3, 1], jax.random.key(0))
>>> X = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
>>> Y = jnp.array([[1.0, 0.0, 1.0]])
>>> mg.per_example_norms(params, X, Y, activations=("relu", "sigmoid")).shape
(3,)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Unpack

import jax
import jax.numpy as jnp

from manualgrad._core import engine
from manualgrad._core.engine import Options, check
from manualgrad._errors import ShapeError

Array = jax.Array
Params = dict[str, Array]

_NO_L2 = tuple(name for name in engine.OPTION_NAMES if name != "l2")
_NO_DROPOUT = ("activations", "loss", "precision")

__all__ = [
    "clip_factors",
    "clipped_grads",
    "dp_grads",
    "one_example_grads",
    "per_example_grads",
    "per_example_norms",
    "squared_norms",
]


def _one_example(params, x, y, spec, masks):
    """g = ∂L/∂params of one example: the engine's chain on vectors, then formula (1)."""
    p = engine.backward_pass(params, x, y, spec, masks)
    return engine.example_grads_from_dz(params, p.caches, p.dZs)  # (1)


def one_example_grads(
    params: Mapping[str, Array], x: Array, y: Array, **options: Unpack[Options]
) -> Params:
    r"""g = ∂L/∂params of one example's loss L(a[L], y) (no 1/m), by formulas (1), (4), (5).

    Shapes: x (n_x,), y (n_L,) -> a dict with the params' keys and shapes. From layer L
    down: dz[L] from the output (A − Y fused for sigmoid+bce / softmax+ce), then

        dW[l] = dz[l] a[l-1]ᵀ,  db[l] = dz[l]                     (1)
        da[l-1] = W[l]ᵀ dz[l]                                      (4)
        dz[l-1] = da[l-1] ⊙ g[l-1]'(z[l-1])                        (5)

    with the same engine and derivatives as the batched backward. Options: `activations`,
    `loss` and `precision`, as for :func:`manualgrad.value_and_grad`; no dropout here (see
    :func:`per_example_grads` for dropout per example) and no L2.
    """
    x, y = check.as_array("x", x), check.as_array("y", y)
    if x.ndim != 1:
        raise ShapeError(
            f"expected one example `x` of shape (n_x,), got {x.shape} — for a batch of "
            "columns use `per_example_grads(params, X, Y, …)`, or pass x = X[:, i]"
        )
    if y.ndim != 1:
        raise ShapeError(
            f"expected one example's `y` of shape (n_L,), got {y.shape} — pass y = Y[:, i]"
        )
    params, X, Y, spec, _, _ = engine.checked_options(
        params, x[:, None], y[:, None], options, function="one_example_grads", allowed=_NO_DROPOUT
    )
    return _one_example(params, X[:, 0], Y[:, 0], spec, None)


def per_example_grads(
    params: Mapping[str, Array], X: Array, Y: Array, **options: Unpack[Options]
) -> Params:
    """g_i = ∂L_i/∂params for every example: `jax.vmap` of :func:`one_example_grads` over columns.

    Shapes: X (n_x, m), Y (n_L, m) -> a dict with the params' keys, each leaf of shape
    (m, *param.shape): W[l] -> (m, n_l, n_{l-1}), b[l] -> (m, n_l, 1). Their mean over
    axis 0 is `value_and_grad`'s grads without L2 (formula (2) as the mean of (1)).
    With `keep_prob` < 1 the masks are those `value_and_grad` draws from `key`, one
    column per example. This materialises m copies of the params: for norms or
    clipping use :func:`per_example_norms` / :func:`clipped_grads`, which do not.
    Options as for :func:`manualgrad.value_and_grad`, except `l2` (no g_i has an L2 term).
    """
    params, X, Y, spec, _, key = engine.checked_options(
        params, X, Y, options, function="per_example_grads", allowed=_NO_L2
    )
    masks = engine.dropout_masks(params, X.shape[1], spec, key)

    def one(x, y, cols):
        return _one_example(params, x, y, spec, cols)

    return jax.vmap(one, in_axes=(1, 1, 1))(X, Y, masks)


# --------------------------------------------------------------------------------------
# Batched: norms and clipping from the dZ[l] of one backward chain
# --------------------------------------------------------------------------------------


def squared_norms(p: engine.Pass) -> Array:
    """‖g_i‖² = Σ_l ‖dz[l](i)‖² (‖a[l-1](i)‖² + 1), shape (m,): the norm identity of (1).

    From the engine's :class:`~manualgrad._core.engine.Pass` (its dZ[l] without 1/m).
    """
    total = jnp.zeros(p.dZs[0].shape[1:], p.dZs[0].dtype)
    for cache, dZ in zip(p.caches, p.dZs, strict=True):
        dz_sq = jnp.sum(dZ * dZ, axis=0)  # ‖dz[l](i)‖², (m,)
        a_sq = jnp.sum(cache.A_prev * cache.A_prev, axis=0)  # ‖a[l-1](i)‖², (m,)
        total = total + dz_sq * (a_sq + 1)  # ‖dW_i‖_F² + ‖db_i‖² by (1)
    return total


def clip_factors(squared_norms: Array, clip_norm: float | Array) -> Array:
    r"""s_i = min(1, C / ‖g_i‖) from ‖g_i‖², safe at ‖g_i‖ = 0 (s_i = 1), also for its gradient.

    Shapes: (m,) -> (m,). The double `where` keeps both the value and its derivative
    finite where ‖g_i‖ ≤ C (including 0): rsqrt only ever sees norms above C.
    """
    C = jnp.asarray(clip_norm, squared_norms.dtype)
    over = squared_norms > C * C
    safe = jnp.where(over, squared_norms, jnp.ones_like(squared_norms))
    return jnp.where(over, C * jax.lax.rsqrt(safe), jnp.ones_like(squared_norms))


def _pass(params, X, Y, spec, key) -> engine.Pass:
    return engine.backward_pass(
        params, X, Y, spec, engine.dropout_masks(params, X.shape[1], spec, key)
    )


def per_example_norms(
    params: Mapping[str, Array], X: Array, Y: Array, **options: Unpack[Options]
) -> Array:
    r"""‖g_i‖ for each example: the L2 norm over all layers' dW and db of ∂L_i/∂params.

    Shapes: X (n_x, m), Y (n_L, m) -> (m,). Computed from the batched dZ[l] (n_l, m) and
    A[l-1] (n_{l-1}, m) of one backward chain with

        ‖g_i‖² = Σ_l ‖dz[l](i)‖² (‖a[l-1](i)‖² + 1),

    never forming a per-example gradient (cost O(Σ_l (n_l + n_{l-1}) m) on top of the
    chain). The L2 term is not part of any g_i. Dropout as in :func:`per_example_grads`;
    options as for :func:`manualgrad.value_and_grad`, except `l2`.
    """
    params, X, Y, spec, _, key = engine.checked_options(
        params, X, Y, options, function="per_example_norms", allowed=_NO_L2
    )
    return jnp.sqrt(squared_norms(_pass(params, X, Y, spec, key)))


def clipped_sum_dZ(p: engine.Pass, clip_norm: float | Array) -> tuple[Array, ...]:
    """Every dZ[l] with column i scaled by s_i = min(1, C/‖g_i‖): the pass of Σ_i s_i L_i.

    Formula (2) on these with normaliser m gives (1/m) Σ_i s_i g_i (column i of every
    dZ[l] is linear in example i's dz[L]).
    """
    s = clip_factors(squared_norms(p), clip_norm)  # (m,) or () for one example
    return tuple(dZ * (s[None, :] if dZ.ndim == 2 else s) for dZ in p.dZs)


def clipped_grads(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    *,
    clip_norm: float | Array,
    **options: Unpack[Options],
) -> Params:
    r"""(1/m) Σ_i min(1, C/‖g_i‖) g_i [+ (λ/m) W[l]], in one backward pass.

    | symbol | argument         |
    |--------|------------------|
    | C      | `clip_norm` (> 0)|
    | g_i    | ∂L_i/∂params     |
    | λ      | `l2`             |

    Runs the batched backward chain once, computes ‖g_i‖ by the norm identity (see
    :func:`per_example_norms`), scales column i of every dZ[l] by
    s_i = min(1, C/‖g_i‖) (:func:`clip_factors`; s_i = 1 when g_i = 0, no NaN), and
    applies formula (2) to the scaled dZ[l]. Because column i of dZ[l] is linear in
    example i's dz[L], that is exactly the mean of the clipped per-example gradients.

    The L2 term belongs to no example: its (λ/m) W[l] is added once, after clipping.
    Dropout (`keep_prob` < 1, `key`) clips each example's gradient under its own mask.
    Shapes: X (n_x, m), Y (n_L, m) -> a dict with the params' keys and shapes. Options
    as for :func:`manualgrad.value_and_grad`.
    """
    check.check_clip_norm(clip_norm)  # > 0 and finite when concrete; traced values pass
    params, X, Y, spec, l2, key = engine.checked_options(
        params, X, Y, options, function="clipped_grads"
    )
    m = X.shape[1]
    p = _pass(params, X, Y, spec, key)
    grads = engine.grads_from_dZ(
        params, p.caches, clipped_sum_dZ(p, clip_norm), m=m, precision=spec.precision
    )
    return engine.add_l2_grads(grads, params, l2, m)


def dp_grads(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    *,
    noise_key: Array,
    clip_norm: float | Array,
    noise_multiplier: float | Array,
    normaliser: float | Array | None = None,
    **options: Unpack[Options],
) -> Params:
    r"""The DP-SGD gradient: the clipped *sum* plus Gaussian noise, divided by the normaliser.

    | symbol | argument            |
    |--------|---------------------|
    | C      | `clip_norm`         |
    | σ      | `noise_multiplier`  |
    | ξ      | N(0, I) from `noise_key`, one draw per parameter |
    | B      | `normaliser` (default: m, the realised batch size) |

        g̃ = (1/B) (Σ_i min(1, C/‖g_i‖) g_i + σ C ξ)  [+ (λ/B) W[l]]

    Sum vs mean: the noise, of standard deviation σC, is added to the clipped *sum*,
    whose sensitivity to one example is C; dividing by B afterwards leaves noise of
    standard deviation σC/B on the returned gradient. With Poisson sampling (each
    example in the batch with probability q) the privacy analyses assume the public
    B = q·N, the *expected* batch size: pass `normaliser=q * N` — never the realised
    batch size, which depends on the data (:mod:`manualgrad.privacy` does this).

    `noise_key` draws the noise (split into one key per parameter, in the sorted order
    of the names); dropout masks, if `keep_prob` < 1, come from the separate `key`, as in
    every other function. The L2 term depends on no example, so it is neither clipped
    nor noised. With σ = 0 and B = m this equals :func:`clipped_grads`. Other options
    as for :func:`manualgrad.value_and_grad`.
    """
    check.check_clip_norm(clip_norm)
    check.check_noise_multiplier(noise_multiplier)  # ≥ 0 and finite when concrete
    check.check_key(noise_key)
    params, X, Y, spec, l2, key = engine.checked_options(params, X, Y, options, function="dp_grads")
    B = X.shape[1] if normaliser is None else normaliser
    p = _pass(params, X, Y, spec, key)
    grads = engine.grads_from_dZ(
        params, p.caches, clipped_sum_dZ(p, clip_norm), m=B, precision=spec.precision
    )
    return engine.add_l2_grads(
        add_dp_noise(grads, noise_key, clip_norm, noise_multiplier, B), params, l2, B
    )


def add_dp_noise(
    grads: Params,
    noise_key: Array,
    clip_norm: float | Array,
    noise_multiplier: float | Array,
    normaliser: float | Array,
) -> Params:
    """grads + σ C ξ / B, ξ ~ N(0, I): the Gaussian mechanism on the clipped sum, normalised.

    `grads` is (1/B) Σ_i s_i g_i; one key per parameter from `noise_key`, in the sorted
    order of the names, so a given key gives the same noise whatever the dict's order
    (a jitted step hands dicts back with sorted keys).
    """
    names = sorted(grads)
    keys = jax.random.split(noise_key, len(names))
    dtype = grads[names[0]].dtype
    std = jnp.asarray(noise_multiplier, dtype) * jnp.asarray(clip_norm, dtype)  # σC on the sum
    noisy = {}
    for k_noise, name in zip(keys, names, strict=True):
        xi = jax.random.normal(k_noise, grads[name].shape, dtype)
        noisy[name] = grads[name] + std * xi / normaliser  # (Σ_i s_i g_i + σCξ)/B
    return noisy
