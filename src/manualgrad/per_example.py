r"""Per-example gradients, their exact norms, and clipped (DP) gradients in one backward pass.

Formula (2) is the mean over examples of formula (1). For any layer whose weight W is
applied at T positions per example (a dense layer: T = 1), with the engine's product
(A (d_in, T, m), dZ (d_out, T, m)) of that weight:

    (2)  dW = (1/m) Σ_i Σ_t dz_t(i) a_t(i)ᵀ,      db = (1/m) Σ_i Σ_t dz_t(i)
    (1)  g_i:  dW_i = Σ_t dz_t(i) a_t(i)ᵀ,        db_i = Σ_t dz_t(i)

This module makes the one-example side a first-class citizen and uses it to compute
what autodiff users usually pay m copies of the weights for. Every function is a
plain function of the network (`f(net, params, X, Y, …)`), also bound as `net.f`:

| function            | returns                                       | forms each g_i? |
|---------------------|-----------------------------------------------|-----------------|
| `one_example_grads` | g = ∂L/∂params for one example (x, y)         | (one example)   |
| `per_example_grads` | `jax.vmap` of (1) over the examples: (m, *shape) | yes, m of them |
| `per_example_norms` | ‖g_i‖ for i = 1 … m, shape (m,)               | no (T small)    |
| `clipped_grads`     | (1/m) Σ_i min(1, C/‖g_i‖) g_i                 | no (T small)    |
| `dp_grads`          | (Σ_i min(1, C/‖g_i‖) g_i + N(0, σ²C² I)) / m  | no (T small)    |

All of them run the engine's chain (:mod:`manualgrad._core.engine`) once on the batch
and read its products only, never a layer's internals. They rest on two facts:

* the norm identity, from formula (1) and ⟨u vᵀ, u' v'ᵀ⟩_F = (u·u')(v·v'):
  ‖dW_i‖² = Σ_{t,s} (dz_t(i)·dz_s(i)) (a_t(i)·a_s(i)), which for T = 1 is
  ‖dz(i)‖² ‖a(i)‖² (the bias adds ‖Σ_t dz_t(i)‖²). That costs O(T² (d_in + d_out)) per
  example against O(d_in d_out) for forming dW_i, so — fastDP's mixed "ghost norm" rule —
  a weight with 2T² ≤ d_in·d_out takes the identity and any other forms dW_i;
* column i of every dZ is linear in dZ[L](i) (every layer's backward and the dropout
  masks are linear in dA at fixed caches), so scaling column i of every dZ by s_i is
  the backward pass of the loss s_i L_i, and formula (2) on the scaled dZ gives
  (1/m) Σ_i s_i g_i.

Each product kind writes these once, as its methods (:mod:`manualgrad._core.products`):
an embedding's `Lookup` takes a_t · a_s = [x_t = x_s] (the norm of a sparse row update),
a layer norm's `ScaleShift` materialises its 2d numbers per example. See
docs/per_example.md and docs/embeddings_and_layernorm.md for the derivations.

L2 and dropout. The L2 term (λ/2m) Σ_l ‖W[l]‖_F² is not a per-example loss: it
depends on no example, so it is neither in g_i, nor in ‖g_i‖, nor clipped or noised;
`clipped_grads` and `dp_grads` add its (λ/m) W[l] once, after clipping (and
without noise), exactly as `value_and_grad` adds it to the mean. Dropout is supported
by every batched function here (keep_prob < 1 with a `key`, as in `value_and_grad`):
mask D[l] has one column per example, so g_i is the gradient of example i's loss
under its own mask, and the same key gives the same masks as `value_and_grad`.

`clip_norm`, `noise_multiplier` and `normaliser` may be traced.

>>> import jax, jax.numpy as jnp, manualgrad as mg
>>> net = mg.network(["relu", "sigmoid"], "bce")
>>> params = net.init([2, 3, 1], jax.random.key(0))
>>> X = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
>>> Y = jnp.array([[1.0, 0.0, 1.0]])
>>> mg.per_example.per_example_norms(net, params, X, Y).shape
(3,)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from manualgrad._core import engine
from manualgrad._core.engine import check
from manualgrad._core.layer import Product
from manualgrad._errors import ShapeError

if TYPE_CHECKING:
    from manualgrad._network import Network

Array = jax.Array
Params = dict[str, Array]

__all__ = [
    "add_dp_noise",
    "clip_factors",
    "clip_weights",
    "clipped_grads",
    "dp_grads",
    "example_grads",
    "one_example_grads",
    "per_example_grads",
    "per_example_norms",
    "scale_examples",
    "squared_norms",
]


# --------------------------------------------------------------------------------------
# Formula (1) and the norm identity, on the products of one backward chain
# --------------------------------------------------------------------------------------


def example_grads(product: Product, params: Mapping[str, Array]) -> Params:
    """Formula (1) for every example of one product: {W: (m, *W.shape), b: (m, *b.shape)}.

    For a dense product `jax.vmap` of the one-example formula dW_i = Σ_t dz_t(i) a_t(i)ᵀ,
    db_i = Σ_t dz_t(i) over the example axis (the last) of A and dZ; every product kind
    writes its own (:mod:`manualgrad._core.products`).
    """
    return product.example_grads(params)  # (1)


def squared_norms(products: Sequence[Product]) -> Array:
    """‖g_i‖² = Σ over the products of ‖dW_i‖² + ‖db_i‖², shape (m,): the norm identity of (1).

    From the products of one backward chain (their dZ without 1/m).
    """
    return sum(p.squared_norms() for p in products)  # type: ignore[return-value]


def clip_factors(squared_norms: Array, clip_norm: float | Array) -> Array:
    r"""s_i = min(1, C / ‖g_i‖) from ‖g_i‖², safe at ‖g_i‖ = 0 (s_i = 1), also for its gradient.

    Shapes: (m,) -> (m,). rsqrt only ever sees max(‖g_i‖², C²) ≥ C² > 0, so the value and
    its derivative stay finite where ‖g_i‖ ≤ C (including 0), and s_i is exactly 1 there.
    The argument of rsqrt does not depend on the comparison: a compiler that evaluates
    ‖g_i‖² > C² twice, with different rounding at ‖g_i‖ = C, still gets s_i ≈ 1 (with
    `rsqrt(where(over, ‖g_i‖², 1))` it could get C).
    """
    C = jnp.asarray(clip_norm, squared_norms.dtype)
    safe = jnp.maximum(squared_norms, C * C)
    return jnp.where(squared_norms > C * C, C * jax.lax.rsqrt(safe), jnp.ones_like(safe))


def scale_examples(products: Sequence[Product], s: Array) -> tuple[Product, ...]:
    """Every product with column i of dZ scaled by s_i: the backward pass of Σ_i s_i L_i."""
    return tuple(p.scaled(s) for p in products)


def clip_weights(products: Sequence[Product], clip_norm: float | Array) -> Array:
    """s_i = min(1, C/‖g_i‖) for every example, ‖g_i‖ from the products by the norm identity.

    Shape (m,). Formula (2) with these as its per-example weights gives (1/m) Σ_i s_i g_i
    (column i of every dZ is linear in example i's dz[L]).
    """
    return clip_factors(squared_norms(products), clip_norm)


# --------------------------------------------------------------------------------------
# The functions of a network
# --------------------------------------------------------------------------------------


def _pass(net: Network, params: Any, X: Any, Y: Any, key: Any) -> tuple[Params, engine.Pass, int]:
    params, X, Y, m = net.checked(params, X, Y, key)
    spec = net.spec
    masks = engine.dropout_masks(params, X, spec, key)
    return params, engine.backward_pass(params, X, Y, spec, masks), m


def _clipped_mean(
    net: Network, params: Any, X: Any, Y: Any, clip_norm: Any, key: Any, normaliser: Any
) -> tuple[Params, Params, Any]:
    """params, (1/B) Σ_i s_i g_i and B (default m): formula (2) weighted by the clip factors."""
    params, p, m = _pass(net, params, X, Y, key)
    B = m if normaliser is None else normaliser
    grads = engine.grads_from_products(
        params,
        p.products,
        m=B,
        precision=net.precision,
        weights=clip_weights(p.products, clip_norm),
    )  # (2) on the columns of dZ scaled by s_i
    return params, grads, B


def per_example_grads(
    net: Network, params: Any, X: Any, Y: Any, key: Array | None = None
) -> Params:
    """g_i = ∂L_i/∂params for every example: formula (1) on the products of one chain.

    Shapes: X (…, m), Y (n_L, m) -> a dict with the params' keys, each leaf of shape
    (m, *param.shape): a dense W[l] -> (m, n_l, n_{l-1}), b[l] -> (m, n_l, 1). Their mean
    over axis 0 is `value_and_grad`'s grads without L2 (formula (2) as the mean of (1)).
    With keep_prob < 1 the masks are those `value_and_grad` draws from `key`. This
    materialises m copies of the params: for norms or clipping use
    :func:`per_example_norms` / :func:`clipped_grads`, which do not. No L2 term.
    """
    params, p, _ = _pass(net, params, X, Y, key)
    grads: Params = {}
    for product in p.products:
        grads.update(example_grads(product, params))  # (1)
    return {k: grads[k] for k in params}


def one_example_grads(net: Network, params: Any, x: Any, y: Any) -> Params:
    r"""g = ∂L/∂params of one example's loss L(a[L], y) (no 1/m), by formulas (1), (4), (5).

    Shapes: x one example (…,) (features first, no example axis), y (n_L,) -> a dict with
    the params' keys and shapes. No dropout and no L2.
    """
    x, y = check.as_array("x", x), check.as_array("y", y)
    if y.ndim != 1:
        raise ShapeError(
            f"expected one example's `y` of shape (n_L,), got {y.shape} — pass y = Y[:, i]"
        )
    if net.spec.is_dense and x.ndim != 1:
        raise ShapeError(
            f"expected one example `x` of shape (n_x,), got {x.shape} — for a batch of "
            "columns use `per_example_grads(net, params, X, Y)`, or pass x = X[:, i]"
        )
    grads = per_example_grads(replace(net, keep_prob=1.0), params, x[..., None], y[:, None])
    return {k: g[0] for k, g in grads.items()}


def per_example_norms(net: Network, params: Any, X: Any, Y: Any, key: Array | None = None) -> Array:
    r"""‖g_i‖ for each example: the L2 norm over all parameters of ∂L_i/∂params.

    Shapes: X (…, m), Y (n_L, m) -> (m,). From the products of one backward chain by
    the norm identity (see the module's docstring); for a dense network

        ‖g_i‖² = Σ_l ‖dz[l](i)‖² (‖a[l-1](i)‖² + 1),

    never forming a per-example gradient (cost O(Σ_l (n_l + n_{l-1}) m) on top of the
    chain). The L2 term is not part of any g_i. Dropout as in :func:`per_example_grads`.
    """
    _, p, _ = _pass(net, params, X, Y, key)
    return jnp.sqrt(squared_norms(p.products))


def clipped_grads(
    net: Network,
    params: Any,
    X: Any,
    Y: Any,
    clip_norm: float | Array,
    key: Array | None = None,
) -> Params:
    r"""(1/m) Σ_i min(1, C/‖g_i‖) g_i [+ (λ/m) W[l]], in one backward pass.

    | symbol | argument         |
    |--------|------------------|
    | C      | `clip_norm` (> 0)|
    | g_i    | ∂L_i/∂params     |
    | λ      | `net.l2`         |

    Runs the batched backward chain once, computes ‖g_i‖ by the norm identity (see
    :func:`per_example_norms`), scales column i of every dZ by s_i = min(1, C/‖g_i‖)
    (:func:`clip_factors`; s_i = 1 when g_i = 0, no NaN), and applies formula (2) to
    the scaled products. Because column i of dZ is linear in example i's dz[L], that is
    exactly the mean of the clipped per-example gradients.

    The L2 term belongs to no example: its (λ/m) W[l] is added once, after clipping.
    Dropout (keep_prob < 1, `key`) clips each example's gradient under its own mask.
    Returns a dict with the params' keys and shapes.
    """
    check.check_clip_norm(clip_norm)  # > 0 and finite when concrete; traced values pass
    params, grads, m = _clipped_mean(net, params, X, Y, clip_norm, key, None)
    return engine.add_l2_grads(grads, params, net.l2, m)


def dp_grads(
    net: Network,
    params: Any,
    X: Any,
    Y: Any,
    noise_key: Array,
    clip_norm: float | Array,
    noise_multiplier: float | Array,
    key: Array | None = None,
    normaliser: float | Array | None = None,
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
    of the names); dropout masks, if keep_prob < 1, come from the separate `key`, as in
    every other function. The L2 term depends on no example, so it is neither clipped
    nor noised. With σ = 0 and B = m this equals :func:`clipped_grads`.
    """
    check.check_clip_norm(clip_norm)
    check.check_noise_multiplier(noise_multiplier)  # ≥ 0 and finite when concrete
    check.check_key(noise_key)
    params, grads, B = _clipped_mean(net, params, X, Y, clip_norm, key, normaliser)
    noisy = add_dp_noise(grads, noise_key, clip_norm, noise_multiplier, B)
    return engine.add_l2_grads(noisy, params, net.l2, B)


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
    return {k: noisy[k] for k in grads}
