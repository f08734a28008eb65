r"""Gradient statistics and curvature from the same forward and backward pass.

Autodiff gives one number per parameter, the mean gradient. A backward pass written
by hand holds, for every layer l, its input A[l-1] and dZ[l] = ∂L_i/∂Z[l] column by
column (:mod:`manualgrad._core.engine`), and from those the quantities below cost about
one more matmul per layer. Notation (docs/curvature.md derives each formula):

| symbol | meaning                                                                  |
|--------|--------------------------------------------------------------------------|
| C      | the cost (1/m) Σ_i L_i + (λ/2m) Σ_l ‖W[l]‖_F²                            |
| g_i    | ∂L_i/∂params, one example's gradient (formula (1)); no L2 term           |
| ḡ      | (1/m) Σ_i g_i, the data part of ∂C/∂params                              |
| J_i    | ∂(split output)/∂params for example i: ∂z[L]/∂θ for sigmoid+bce and      |
|        | softmax+ce, ∂a[L]/∂θ for mse                                             |
| H_i    | the loss Hessian at the split: σ(1−σ) (bce), diag(p) − p pᵀ (ce), I (mse)|
| S      | a square-root factor, S Sᵀ = H_i (exact) or E[S Sᵀ] = H_i (Monte Carlo)  |
| GGN    | G = (1/m) Σ_i J_iᵀ H_i J_i (+ (λ/m) I on the weights)                    |

| function                  | returns                                          | λ/m included? |
|---------------------------|--------------------------------------------------|---------------|
| `sum_grad_squared`        | Σ_i g_i ⊙ g_i                                    | no (of L_i)   |
| `grad_variance`           | (1/m) Σ_i (g_i − ḡ) ⊙ (g_i − ḡ)                  | no (cancels)  |
| `gradient_gram`           | the (m, m) matrix ⟨g_i, g_j⟩                     | no (of L_i)   |
| `gradient_noise_scale`    | B_simple = tr(Σ) / ‖∇C‖² and its two estimates   | yes, in ∇C    |
| `ggn_vector_product`      | G v, by forward mode (6), (7), H, then (4), (5)  | yes           |
| `hessian_vector_product`  | ∇²C v, `jax.jvp` of the hand-written gradient    | yes           |
| `diag_ggn`                | diag(G), exact or Monte Carlo                    | yes           |
| `kfac_factors`            | per layer (A_f, G_f) with A_f ⊗ G_f ≈ G's block  | no (damping)  |
| `diag_hessian`            | diag(∇²C), the GGN's plus the residuals of (8)   | yes           |

Every second-order quantity pushes the K columns of S[L] (K = n_L exact, or
`mc_samples`) down the layers with the engine's chain — formulas (4) and (5) applied
to each column, `jax.vmap` of :func:`manualgrad._core.engine.chain` over the columns —
exactly as the gradient pushes dZ[L]; the layer statistics then come from formula
(2) with squared factors.

All functions are pure, check their inputs at trace time, and are jit- and
vmap-compatible; `activations`, `loss`, `precision` and `mc_samples` are static (a
network from :func:`manualgrad.network` binds them). Dropout is not part of the
curvature: it is that of the deterministic network (keep_prob = 1). Sums over
examples all-reduce like formula (2) under data parallelism (docs/curvature.md).

>>> import jax, jax.numpy as jnp, manualgrad as mg
>>> params = mg.init_params([2, 3, 1], jax.random.key(0))
>>> X = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
>>> Y = jnp.array([[1.0, 0.0, 1.0]])
>>> d = mg.curvature.diag_ggn(params, X, Y, activations=("relu", "sigmoid"))
>>> sorted(d) == sorted(params), d["W1"].shape
(True, (3, 2))
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Required, TypedDict, Unpack

import jax
import jax.numpy as jnp

from manualgrad._core import engine
from manualgrad._core.activations import PIECEWISE_LINEAR
from manualgrad._core.dense import (
    activation_backward,
    activation_jvp,
    activation_residual,
    bias_grad,
    linear_jvp,
    prev_activation_grad,
    weight_grad,
)
from manualgrad._core.engine import check
from manualgrad._core.precision import matmul
from manualgrad._errors import ConfigError, DTypeError, ShapeError
from manualgrad.per_example import squared_norms

Array = jax.Array
Params = dict[str, Array]
ParamsLike = Mapping[str, Array]

__all__ = [
    "CurvatureOptions",
    "KFactors",
    "NoiseScale",
    "SampledCurvatureOptions",
    "diag_ggn",
    "diag_hessian",
    "ggn_vector_product",
    "grad_variance",
    "gradient_gram",
    "gradient_noise_scale",
    "hessian_vector_product",
    "kfac_factors",
    "sum_grad_squared",
]


class NoiseScale(NamedTuple):
    """The gradient noise scale and the two unbiased estimates it is the ratio of.

    `b_simple` = `trace_cov` / `grad_sq_norm`; average the two parts over steps (e.g. an
    exponential moving average) before dividing, as McCandlish et al. (2018) advise.
    """

    b_simple: Array
    trace_cov: Array
    grad_sq_norm: Array


class KFactors(NamedTuple):
    """One layer's Kronecker factors: A (n_{l-1}+1, n_{l-1}+1) and G (n_l, n_l).

    kron(A, G) approximates the GGN block of [W[l] b[l]] in column-major vec (see
    :func:`kfac_factors`).
    """

    A: Array
    G: Array


# --------------------------------------------------------------------------------------
# Input checks (trace time)
# --------------------------------------------------------------------------------------


class CurvatureOptions(TypedDict, total=False):
    """The network options of the curvature functions (as :class:`manualgrad.functional.Options`).

    `activations` (required), `loss` ("bce", "ce", "mse"), `precision`, and, for the
    quantities of C that carry the L2 term, `l2` (λ). No dropout: curvature is of the
    deterministic network.
    """

    activations: Required[Sequence[str]]
    loss: str
    l2: float | Array
    precision: str


class SampledCurvatureOptions(CurvatureOptions, total=False):
    """:class:`CurvatureOptions` and the Monte-Carlo choice of `diag_ggn` and `kfac_factors`.

    `mc_samples`: None (default) for the exact value, M ≥ 1 for M sampled labels per
    example (static under jit); `key`: the `jax.random.key` that draws them, required
    with `mc_samples`.
    """

    mc_samples: int | None
    key: Array | None


_FIRST_ORDER = ("activations", "loss", "precision")  # of the L_i: no L2 term
_SECOND_ORDER = (*_FIRST_ORDER, "l2")  # of C: λ/m included


def _setup(params, X, Y, options, function, allowed):
    """Checked params, X, Y, the engine's Spec, m and λ from a function's `options`."""
    params, X, Y, spec, l2, _ = engine.checked_options(
        params, X, Y, options, function=function, allowed=allowed
    )
    return params, X, Y, spec, X.shape[1], l2


def _pushed_sqrt(params, X, Y, options, function, allowed):
    """The caches and S[1] … S[L], each (n_l, m, K), with the checked params, Spec, m and λ.

    S[L] is the output Hessian's square root (exact or Monte Carlo), pushed down by the
    chain (4), (5).
    """
    options = dict(options)
    key = options.pop("key", None)
    mc = _check_mc(options.pop("mc_samples", None), key)
    params, X, Y, spec, m, l2 = _setup(
        params, X, Y, options, function, (*allowed, "mc_samples", "key")
    )
    _, caches = engine.forward(params, X, spec)
    S = _push(params, caches, _output_sqrt(caches[-1], Y, spec, mc, key), spec)
    return params, spec, m, l2, caches, S


def _check_mc(mc_samples: Any, key: Any) -> int | None:
    """`mc_samples` None (exact) or a Python int ≥ 1 with a PRNG `key`; return it."""
    if mc_samples is None:
        if key is not None:
            raise ConfigError(
                "a `key` was given but `mc_samples` is None, which computes the exact value "
                "and draws nothing: pass mc_samples=1 (or more) for the Monte-Carlo estimate, "
                "or drop the key"
            )
        return None
    if isinstance(mc_samples, bool) or not isinstance(mc_samples, numbers.Integral):
        got = (
            repr(mc_samples)
            if isinstance(mc_samples, int | float | str)
            else f"an object of type {type(mc_samples).__name__}"
        )
        raise ConfigError(
            f"`mc_samples` must be a Python int ≥ 1 (the number of sampled labels per example, "
            f"static under jit), got {got}: e.g. mc_samples=1, or None for the exact value"
        )
    if mc_samples < 1:
        raise ConfigError(
            f"`mc_samples` must be ≥ 1, got {mc_samples}: the number of sampled labels per "
            "example (e.g. mc_samples=1), or None for the exact value"
        )
    if key is None:
        raise ConfigError(
            f"`mc_samples` = {mc_samples} asks for sampled labels but no `key` was given: "
            "pass key=jax.random.key(seed)"
        )
    check.check_key(key)
    return int(mc_samples)


def _check_like_params(v: Any, params: Params, name: str) -> Params:
    """`v` as a dict with exactly the params' keys, shapes and dtype."""
    if not isinstance(v, Mapping):
        raise ShapeError(
            f"expected `{name}` to be a dict shaped like params ({sorted(params)}), got "
            f"{type(v).__name__}: e.g. {name} = jax.tree.map(jnp.ones_like, params)"
        )
    if set(v) != set(params):
        missing = sorted(set(params) - set(v))
        extra = sorted(set(v) - set(params), key=repr)
        found = (f"; missing {missing}" if missing else "") + (
            f"; unexpected {extra}" if extra else ""
        )
        raise ShapeError(
            f"`{name}` must have the params' keys {sorted(params)}{found}: build it from "
            f"params, e.g. jax.tree.map(jnp.zeros_like, params)"
        )
    out = {}
    for k, p in params.items():
        leaf = check.as_array(f"{name}[{k!r}]", v[k])
        if leaf.shape != p.shape:
            raise ShapeError(
                f"`{name}[{k!r}]` has shape {leaf.shape}, expected {p.shape} like "
                f"`params[{k!r}]`: `{name}` is a direction in parameter space"
            )
        if leaf.dtype != p.dtype:
            raise DTypeError(
                f"`{name}[{k!r}]` has dtype {leaf.dtype} but params have {p.dtype}: "
                f"cast it, e.g. jax.tree.map(lambda x: x.astype({p.dtype}), {name})"
            )
        out[k] = leaf
    return out


# --------------------------------------------------------------------------------------
# Building blocks: the loss Hessian at the split, its square roots, pushing columns down
# --------------------------------------------------------------------------------------


def _output_sqrt(
    last: engine.LayerCache, Y: Array, spec: engine.Spec, mc_samples: int | None, key: Any
) -> Array:
    """S[L]: K columns per example at z[L], shape (n_L, m, K), with S Sᵀ = ∂²L/∂z² of the GGN.

    Exact (K = n_L), column c of example i:
        bce   √(a_c (1 − a_c)) e_c                    (H = diag(a(1 − a)) on z)
        ce    √(p_c) (e_c − p) · √(Σ_k y_k)           (H = (Σ_k y_k)(diag(p) − p pᵀ) on z)
        mse   g'(z) ⊙ e_c, i.e. (5) on the columns of I  (H = I on a)
    Monte Carlo (K = M samples ŷ from the model's own predictive, divided by √M):
        bce   a − ŷ, ŷ ~ Bernoulli(a);  ce  p − e_ŷ, ŷ ~ Cat(p);  mse  (5) on ε ~ N(0, I)
    with E[S Sᵀ] = H in each case. The column axis is last, so the example axis keeps
    its place (and its sharding) in every array.
    """
    assert spec.loss is not None
    act, loss = spec.activations[-1], spec.loss
    Z, A = last.Z, last.A
    n_L, m = Z.shape
    eye = jnp.eye(n_L, dtype=Z.dtype)[:, None, :]  # (n_L, 1, K = n_L)
    if mc_samples is None:
        if loss.name == "bce":
            return eye * jnp.sqrt(A * (1 - A)).T[None, :, :]
        if loss.name == "ce":
            S = (eye - A[:, :, None]) * jnp.sqrt(A).T[None, :, :]  # S[k, i, c] = √p_c (δ_kc − p_k)
            return S * jnp.sqrt(jnp.sum(Y, axis=0))[None, :, None]
        S_A = jnp.broadcast_to(eye, (n_L, m, n_L))
    else:
        scale = 1 / math.sqrt(mc_samples)
        if loss.name == "bce":
            y_hat = jax.random.bernoulli(key, A[:, :, None], (n_L, m, mc_samples))
            return (A[:, :, None] - y_hat.astype(A.dtype)) * scale
        if loss.name == "ce":
            c = jax.random.categorical(key, Z, axis=0, shape=(mc_samples, m)).T  # (m, M)
            e_hat = jax.nn.one_hot(c, n_L, axis=0, dtype=A.dtype)  # (n_L, m, M)
            S = (A[:, :, None] - e_hat) * scale
            return S * jnp.sqrt(jnp.sum(Y, axis=0))[None, :, None]
        S_A = jax.random.normal(key, (n_L, m, mc_samples), A.dtype) * scale

    def to_z(s):  # (5) at layer L on one column: from a[L] to z[L]
        return activation_backward(s, Z, A, act)

    return jax.vmap(to_z, in_axes=2, out_axes=2)(S_A)


def _push(
    params: Params, caches: Sequence[engine.LayerCache], S_top: Array, spec: engine.Spec
) -> tuple[Array, ...]:
    """S[l] (n_l, m, K) for l = 1 … k from K columns S_top (n_k, m, K) at z[k], k = len(caches).

    `jax.vmap` of the engine's chain (formulas (4) and (5)) over the columns: XLA sees
    one matmul with m·K columns per layer and computes g'(Z[l]) once.
    """
    sub = spec._replace(activations=spec.activations[: len(caches)])

    def chain(col):
        return engine.chain(params, caches, col, sub)

    return jax.vmap(chain, in_axes=2, out_axes=2)(S_top)


def _squared_stats(
    params: Params,
    caches: Sequence[engine.LayerCache],
    Q: Sequence[Array],
    *,
    m: int | float,
    precision: str,
) -> Params:
    """Formula (2) with dZ[l] → Q[l] and A[l-1] → A[l-1] ⊙ A[l-1]: (1/m) Q (A ⊙ A)ᵀ, (1/m) Σ_i Q.

    Q[l] (n_l, m) holds, per example, the diagonal of a symmetric matrix on z[l]
    (dz ⊙ dz for the gradient's second moment, Σ_c S_c ⊙ S_c for the GGN): its entry
    (j, k) over the weights is Σ_i Q[l]_ji a[l-1]_ki², because ∂z_j/∂W_jk = a_k.
    """
    out: Params = {}
    for l, (cache, q) in enumerate(zip(caches, Q, strict=True), start=1):
        a_sq = cache.A_prev * cache.A_prev
        out[f"W{l}"] = weight_grad(q, a_sq, precision=precision, m=m)  # (2) on q, A ⊙ A
        out[f"b{l}"] = bias_grad(q, m=m)  # (2) on q
    return {k: out[k] for k in params}


def _add_l2_diagonal(diag: Params, params: Params, l2: Any, m: int) -> Params:
    """+ (λ/m) on every weight: the Hessian of (λ/2m) Σ_l ‖W[l]‖_F² is (λ/m) I on the weights."""
    return engine.add_l2_grads(diag, jax.tree.map(jnp.ones_like, params), l2, m)


# --------------------------------------------------------------------------------------
# First order: one forward, one backward, no per-example gradient formed
# --------------------------------------------------------------------------------------


def sum_grad_squared(
    params: ParamsLike, X: Array, Y: Array, **options: Unpack[CurvatureOptions]
) -> Params:
    r"""Σ_i g_i ⊙ g_i, the gradient's second moment (unnormalised), keyed like params.

    By formula (1), (g_i)_W = dz_i a_iᵀ, so (g_i ⊙ g_i)_W = (dz_i ⊙ dz_i)(a_i ⊙ a_i)ᵀ and

        W[l]: (dZ[l] ⊙ dZ[l]) (A[l-1] ⊙ A[l-1])ᵀ,      b[l]: Σ_i dz[l](i) ⊙ dz[l](i),

    one matmul per layer on top of the backward pass (formula (2) on squares, no 1/m).
    g_i is the gradient of example i's loss L_i: no 1/m and no L2 term (the L2 term
    belongs to no example, as in :mod:`manualgrad.per_example`). Shapes: X (n_x, m),
    Y (n_L, m) -> a dict with the params' keys and shapes.
    """
    params, X, Y, spec, _, _ = _setup(params, X, Y, options, "sum_grad_squared", _FIRST_ORDER)
    p = engine.backward_pass(params, X, Y, spec)
    Q = [dZ * dZ for dZ in p.dZs]
    return _squared_stats(params, p.caches, Q, m=1, precision=spec.precision)


def grad_variance(
    params: ParamsLike, X: Array, Y: Array, **options: Unpack[CurvatureOptions]
) -> Params:
    r"""(1/m) Σ_i (g_i − ḡ) ⊙ (g_i − ḡ), the per-example gradients' variance, keyed like params.

    Computed as (1/m) Σ_i g_i ⊙ g_i − ḡ ⊙ ḡ from one backward pass: the second moment of
    :func:`sum_grad_squared` and ḡ = (1/m) Σ_i g_i from formula (2). This is the biased
    (1/m) variance; multiply by m/(m − 1) for the unbiased one. A constant added to every
    g_i — the L2 term's (λ/m) W — cancels, so λ plays no part. In floating point the
    difference can round to a tiny negative number where the variance is ≈ 0.
    """
    params, X, Y, spec, m, _ = _setup(params, X, Y, options, "grad_variance", _FIRST_ORDER)
    p = engine.backward_pass(params, X, Y, spec)
    second = _squared_stats(
        params, p.caches, [dZ * dZ for dZ in p.dZs], m=m, precision=spec.precision
    )
    mean = engine.grads_from_dZ(params, p.caches, p.dZs, m=m, precision=spec.precision)  # (2)
    return {k: second[k] - mean[k] * mean[k] for k in params}


def gradient_gram(
    params: ParamsLike, X: Array, Y: Array, **options: Unpack[CurvatureOptions]
) -> Array:
    r"""The (m, m) Gram matrix of the per-example gradients, ⟨g_i, g_j⟩ over all parameters.

    ⟨dz_i a_iᵀ, dz_j a_jᵀ⟩_F = (dz_i · dz_j)(a_i · a_j), and the bias adds dz_i · dz_j, so

        Γ = Σ_l (dZ[l]ᵀ dZ[l]) ⊙ (A[l-1]ᵀ A[l-1] + 1),

    two (m, m) products per layer, no per-example gradient formed. Its diagonal is
    ‖g_i‖² (:func:`manualgrad.per_example.per_example_norms` squared), its mean is ‖ḡ‖².
    g_i is the gradient of L_i: no 1/m, no L2 term. Shapes: X (n_x, m) -> (m, m).
    """
    params, X, Y, spec, m, _ = _setup(params, X, Y, options, "gradient_gram", _FIRST_ORDER)
    p = engine.backward_pass(params, X, Y, spec)
    gram = jnp.zeros((m, m), X.dtype)
    for cache, dZ in zip(p.caches, p.dZs, strict=True):
        dz_dots = matmul(dZ, dZ, 0, 0, spec.precision)  # dz_i · dz_j, (m, m)
        a_dots = matmul(cache.A_prev, cache.A_prev, 0, 0, spec.precision)  # a_i · a_j
        gram = gram + dz_dots * (a_dots + 1)
    return gram


def gradient_noise_scale(
    params: ParamsLike, X: Array, Y: Array, **options: Unpack[CurvatureOptions]
) -> NoiseScale:
    r"""The simple gradient noise scale B_simple = tr(Σ) / ‖G‖² of McCandlish et al. (2018).

    | symbol | meaning                                                          |
    |--------|------------------------------------------------------------------|
    | Σ      | the covariance of one example's gradient g_i over the data        |
    | G      | the true gradient, here of C: ḡ + (λ/m) W (the L2 term included)  |
    | B      | batch size; SGD's progress per step saturates around B ≈ B_simple |

    ("An Empirical Model of Large-Batch Training", arXiv 1812.06162, eq. 2.8.) From one
    batch of m ≥ 2 examples, with ‖g_i‖² from the norm identity
    (:func:`manualgrad.per_example.squared_norms`, the Gram matrix's diagonal) and ḡ from
    formula (2), the unbiased estimates are (their appendix A with B_small = 1,
    B_big = m):

        tr(Σ) ≈ (m/(m − 1)) ((1/m) Σ_i ‖g_i‖² − ‖ḡ‖²) = (1/(m − 1)) Σ_i ‖g_i − ḡ‖²
        ‖G‖²  ≈ ‖ḡ + (λ/m) W‖² − tr(Σ)/m                (E‖ḡ‖² = ‖E ḡ‖² + tr(Σ)/m)

    One backward pass; the ratio is noisy (‖G‖²'s estimate can even be negative on a
    small batch), so average `trace_cov` and `grad_sq_norm` over steps before dividing.
    Returns a :class:`NoiseScale` of three scalars.
    """
    params, X, Y, spec, m, l2 = _setup(params, X, Y, options, "gradient_noise_scale", _SECOND_ORDER)
    if m < 2:
        raise ShapeError(
            f"the gradient noise scale compares examples, so it needs m ≥ 2, got X with "
            f"m = {m} column: pass a batch of several examples"
        )
    p = engine.backward_pass(params, X, Y, spec)
    mean = engine.grads_from_dZ(params, p.caches, p.dZs, m=m, precision=spec.precision)  # (2)
    mean_sq = sum(jnp.sum(g * g) for g in mean.values())  # ‖ḡ‖²
    trace_cov = (jnp.mean(squared_norms(p)) - mean_sq) * (m / (m - 1))
    full = engine.add_l2_grads(mean, params, l2, m)  # ∇C = ḡ + (λ/m) W
    grad_sq_norm = sum(jnp.sum(g * g) for g in full.values()) - trace_cov / m
    return NoiseScale(trace_cov / grad_sq_norm, trace_cov, grad_sq_norm)


# --------------------------------------------------------------------------------------
# Second order
# --------------------------------------------------------------------------------------


def _tangent_forward(
    params: Params, v: Params, caches: Sequence[engine.LayerCache], spec: engine.Spec
) -> Array:
    """Ż[L] for the direction v: formulas (6) and (7) from layer 1 up (Ȧ[0] = 0)."""
    A_dot = None
    for l, (cache, act) in enumerate(zip(caches[:-1], spec.activations, strict=False), start=1):
        Z_dot = linear_jvp(
            params[f"W{l}"], cache.A_prev, v[f"W{l}"], v[f"b{l}"], A_dot, precision=spec.precision
        )  # (6)
        A_dot = activation_jvp(Z_dot, cache.Z, cache.A, act)  # (7)
    L = spec.n_layers
    return linear_jvp(
        params[f"W{L}"], caches[-1].A_prev, v[f"W{L}"], v[f"b{L}"], A_dot, precision=spec.precision
    )  # (6) at layer L


def _loss_hvp(Z_dot: Array, last: engine.LayerCache, Y: Array, spec: engine.Spec) -> Array:
    """dZ[L] = (∂z[L] side of) H J v from Ż[L] = J v at z[L]: the loss Hessian at the split.

    bce: a(1 − a) ⊙ ż;  ce: (Σ_k y_k)(diag(p) − p pᵀ) ż;  mse: (7) to ȧ[L], H = I, then (5).
    """
    assert spec.loss is not None
    act, name = spec.activations[-1], spec.loss.name
    if name == "bce":
        return last.A * (1 - last.A) * Z_dot
    if name == "ce":
        return activation_jvp(Z_dot, last.Z, last.A, act) * jnp.sum(Y, axis=0)[None, :]
    A_dot = activation_jvp(Z_dot, last.Z, last.A, act)  # (7) at layer L: J v at a[L]
    return activation_backward(A_dot, last.Z, last.A, act)  # H = I, then (5) at layer L


def ggn_vector_product(
    params: ParamsLike, X: Array, Y: Array, v: ParamsLike, **options: Unpack[CurvatureOptions]
) -> Params:
    r"""G v, the generalised Gauss-Newton matrix of C times a direction v, keyed like params.

        G v = (1/m) Σ_i J_iᵀ H_i (J_i v) + (λ/m) v_W

    J v by hand-written forward mode (the R-operator, one pass up the layers):

        Ż[l] = W[l] Ȧ[l-1] + Ẇ[l] A[l-1] + ḃ[l]        (6)
        Ȧ[l] = g'(Z[l]) ⊙ Ż[l]                          (7)

    then the loss Hessian at the split (σ(1−σ) for bce, diag(p) − ppᵀ for ce on z[L];
    I for mse on a[L]), then the engine's backward chain (4), (5) and formula (2) with
    1/m — the same code as the gradient, started from H J v instead of dZ[L]. Costs
    about one forward and one backward pass. λ/m is included (the L2 term's Hessian).
    `v` must have the params' keys, shapes and dtype (:class:`ShapeError` otherwise).
    """
    params, X, Y, spec, m, l2 = _setup(params, X, Y, options, "ggn_vector_product", _SECOND_ORDER)
    v = _check_like_params(v, params, "v")
    _, caches = engine.forward(params, X, spec)
    dZL = _loss_hvp(_tangent_forward(params, v, caches, spec), caches[-1], Y, spec)
    dZs = engine.chain(params, caches, dZL, spec)  # (4), (5)
    Gv = engine.grads_from_dZ(params, caches, dZs, m=m, precision=spec.precision)  # (2)
    return engine.add_l2_grads(Gv, v, l2, m)


def hessian_vector_product(
    params: ParamsLike, X: Array, Y: Array, v: ParamsLike, **options: Unpack[CurvatureOptions]
) -> Params:
    r"""∇²C v, the Hessian of the cost times v: `jax.jvp` through the hand-written gradient.

        ∇²C v = d/dt ∇C(θ + t v) at t = 0

    Forward-over-manual-reverse: JAX differentiates the engine's forward, chain and
    formula (2) in forward mode, about the cost of two gradients. λ/m is included.
    Unlike :func:`ggn_vector_product` this is the full Hessian, which is indefinite
    away from a minimum. `v` as for :func:`ggn_vector_product`.
    """
    params, X, Y, spec, _, l2 = _setup(
        params, X, Y, options, "hessian_vector_product", _SECOND_ORDER
    )
    v = _check_like_params(v, params, "v")

    def grad(theta):
        return engine.value_and_grad(theta, X, Y, spec, l2=l2)[1]

    return jax.jvp(grad, (params,), (v,))[1]


def diag_ggn(
    params: ParamsLike, X: Array, Y: Array, **options: Unpack[SampledCurvatureOptions]
) -> Params:
    r"""The diagonal of the GGN of C, exact or by Monte Carlo, keyed like params.

    The K columns of S[L] (n_L of them exact; `mc_samples` sampled labels otherwise, see
    below) are pushed down with the chain (4), (5) — S[l-1] = W[l]ᵀ S[l] ⊙ g'(Z[l-1]),
    column by column, like dZ — and with Q[l] = Σ_c S[l]_c ⊙ S[l]_c (n_l, m):

        W[l]: (1/m) Q[l] (A[l-1] ⊙ A[l-1])ᵀ + λ/m,       b[l]: (1/m) Σ_i Q[l](i)

    | `mc_samples` | S[L] per example                                 | cost (chains)|
    |--------------|--------------------------------------------------|--------------|
    | None         | exact square root of H (n_L columns)             | n_L          |
    | M ≥ 1        | M labels ŷ from the model's predictive, over √M  | M            |

    Monte Carlo: ŷ ~ Bernoulli(a) (bce), Cat(p) (ce), a + N(0, I) (mse); the column is
    (a − ŷ)/√M (for mse, ε/√M then (5)), so E[S Sᵀ] = H and the estimate is unbiased
    (the "Fisher" estimate of BackPACK's DiagGGNMC). `key` draws the labels and is
    required with `mc_samples`. λ/m (the L2 term's Hessian) is included on the weights.
    Multiply by m for the diagonal of the summed loss Σ_i L_i (e.g. a Laplace posterior).
    """
    params, spec, m, l2, caches, S = _pushed_sqrt(params, X, Y, options, "diag_ggn", _SECOND_ORDER)
    Q = [jnp.sum(S_l * S_l, axis=2) for S_l in S]
    diag = _squared_stats(params, caches, Q, m=m, precision=spec.precision)
    return _add_l2_diagonal(diag, params, l2, m)


def kfac_factors(
    params: ParamsLike, X: Array, Y: Array, **options: Unpack[SampledCurvatureOptions]
) -> dict[int, KFactors]:
    r"""Kronecker factors of the GGN of C, per layer: `{l: KFactors(A, G)}` for l = 1 … L.

    With ã = [a[l-1]; 1] (the bias as a homogeneous coordinate, last) and S[l] the
    pushed square-root columns of :func:`diag_ggn` (exact: KFLR; `mc_samples`: KFAC):

        A = (1/m) Σ_i ã_i ã_iᵀ     (n_{l-1}+1, n_{l-1}+1)
        G = (1/m) Σ_i Σ_c S[l]_ic S[l]_icᵀ      (n_l, n_l)

    **Vec convention.** Let W̃[l] = [W[l] b[l]], shape (n_l, n_{l-1}+1), and vec the
    column-major (Fortran) stacking of its columns: vec(W̃) = W̃.reshape(-1, order="F")
    = [W[:, 0]; …; W[:, n-1]; b]. The GGN block of layer l in that order is
    (1/m) Σ_i (ã_i ã_iᵀ) ⊗ (S_i S_iᵀ), and KFAC approximates it by kron(A, G) (by
    vec(u ãᵀ) = ã ⊗ u). In NumPy's row-major order (W̃.reshape(-1)) the same
    approximation is kron(G, A). It is exact for m = 1, and for any m when S_i does
    not depend on i (a deep linear network with mse).

    The L2 term's Hessian (λ/m) I is not a Kronecker product and is not included: add
    it as damping (A ⊗ G + (λ/m) I). `mc_samples` and `key` as for :func:`diag_ggn`.
    """
    params, spec, m, _, caches, S = _pushed_sqrt(
        params, X, Y, options, "kfac_factors", _FIRST_ORDER
    )
    factors = {}
    for l, (cache, S_l) in enumerate(zip(caches, S, strict=True), start=1):
        ones = jnp.ones((1, m), cache.A_prev.dtype)
        A_t = jnp.concatenate([cache.A_prev, ones], axis=0)  # ã = [a; 1], (n_{l-1}+1, m)
        S_flat = S_l.reshape(S_l.shape[0], -1)  # (n_l, m·K): every column of every example
        factors[l] = KFactors(
            A=matmul(A_t, A_t, 1, 1, spec.precision) / m,
            G=matmul(S_flat, S_flat, 1, 1, spec.precision) / m,
        )
    return factors


def diag_hessian(
    params: ParamsLike, X: Array, Y: Array, **options: Unpack[CurvatureOptions]
) -> Params:
    r"""The exact diagonal of the Hessian of C, keyed like params.

    Within layer l, z[l] is linear in (W[l], b[l]), so the Hessian's diagonal needs only
    the diagonal of ∂²L_i/∂z[l]², which obeys the recursion (8):

        ∂²L/∂z[l]² = diag(g') W[l+1]ᵀ (∂²L/∂z[l+1]²) W[l+1] diag(g') + diag(r[l]),
        r[l] = g''(Z[l]) ⊙ dA[l]

    Unrolled, it is the GGN's S[l] S[l]ᵀ plus, for each layer k ≥ l whose activation is
    curved, diag(r[k]) pushed from k down to l. Each diag(r[k]) is pushed as n_k
    *signed* square-root columns √|r[k]_j| e_j with sign(r[k]_j), through the same chain
    (4), (5) as S; the statistic is then formula (2) on squares as in :func:`diag_ggn`.
    For sigmoid+bce and softmax+ce the loss Hessian on z[L] is exact (no residual at L);
    for mse the output layer adds r[L] = g''(Z[L]) ⊙ (A[L] − Y).

    For relu, leaky_relu and linear layers g'' = 0, so the result equals
    :func:`diag_ggn`'s exactly; otherwise the cost grows with depth (Σ_k n_k extra
    columns). λ/m is included. softmax with mse is not supported (its g'' is not
    elementwise): :class:`ConfigError`.
    """
    params, X, Y, spec, m, l2 = _setup(params, X, Y, options, "diag_hessian", _SECOND_ORDER)
    assert spec.loss is not None
    out_act = spec.activations[-1]
    if out_act.second_derivative is None and spec.loss.fused_with != out_act.name:
        raise ConfigError(
            f"`diag_hessian` needs the output activation's g'' elementwise, but "
            f"{out_act.name!r} with loss {spec.loss.name!r} couples the outputs: use "
            "loss='ce' with softmax, or hessian_vector_product for this network"
        )
    _, caches = engine.forward(params, X, spec)
    S = _push(params, caches, _output_sqrt(caches[-1], Y, spec, None, None), spec)
    Q = [jnp.sum(S_l * S_l, axis=2) for S_l in S]  # diag of S Sᵀ, the GGN part
    dZs = engine.chain(params, caches, engine.output_dZ(caches, Y, spec), spec)
    L = spec.n_layers
    for k, (cache, act) in enumerate(zip(caches, spec.activations, strict=True), start=1):
        if act.name in PIECEWISE_LINEAR or (k == L and spec.loss.fused_with == act.name):
            continue  # g'' = 0, or the loss Hessian on z[L] is already exact
        if k < L:
            dA = prev_activation_grad(params[f"W{k + 1}"], dZs[k], precision=spec.precision)  # (4)
        else:
            dA = spec.loss.dA(cache.A, Y)  # mse: dA[L] = A[L] − Y
        r = activation_residual(dA, cache.Z, cache.A, act)  # (8)
        Q[k - 1] = Q[k - 1] + r
        if k == 1:
            continue
        n_k = r.shape[0]
        roots = jnp.eye(n_k, dtype=r.dtype)[:, None, :] * jnp.sqrt(jnp.abs(r)).T[None, :, :]
        signs = jnp.sign(r).T[None, :, :]  # (1, m, K): column c's sign, per example
        pushed = _push(params, caches[:k], roots, spec)  # (4), (5) from layer k down
        for l in range(1, k):
            Q[l - 1] = Q[l - 1] + jnp.sum(signs * pushed[l - 1] * pushed[l - 1], axis=2)
    diag = _squared_stats(params, caches, Q, m=m, precision=spec.precision)
    return _add_l2_diagonal(diag, params, l2, m)
