r"""Gradient statistics and curvature from the same forward and backward pass.

Autodiff gives one number per parameter, the mean gradient. The engine's backward pass
(:mod:`manualgrad._core.engine`) holds, for every weight, a
:class:`~manualgrad._core.layer.Product`: the input A (d_in, T, m) the weight multiplied
at T positions of each example and dZ (d_out, T, m) = ∂L_i/∂Z there, column by column.
Every quantity below reads products only — never a layer's internals — and costs about
one more matmul per product. Notation (docs/curvature.md derives each formula):

| symbol | meaning                                                                  |
|--------|--------------------------------------------------------------------------|
| C      | the cost (1/m) Σ_i L_i + (λ/2m) Σ_l ‖W[l]‖_F²                            |
| g_i    | ∂L_i/∂params, one example's gradient: (1) dW_i = Σ_t dz_t(i) a_t(i)ᵀ     |
| ḡ      | (1/m) Σ_i g_i, the data part of ∂C/∂params (formula (2))                |
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
| `ggn_vector_product`      | G v, by each layer's forward mode, H, the chain  | yes           |
| `hessian_vector_product`  | ∇²C v, `jax.jvp` of the hand-written gradient    | yes           |
| `diag_ggn`                | diag(G), exact or Monte Carlo                    | yes           |
| `kfac_factors`            | per layer (A_f, G_f) with A_f ⊗ G_f ≈ G's block  | no (damping)  |
| `diag_hessian`            | diag(∇²C), the GGN's plus the residuals of (8)   | yes (dense)   |

Every function is a plain function of the network, `f(net, params, X, Y, …)`, also
bound as `net.f(params, X, Y, …)`. What depends on the loss (H's square roots, H v)
comes from the loss's record (:class:`manualgrad._core.losses.Loss`).

Every second-order quantity pushes the K columns of S[L] (K = n_L exact, or
`mc_samples`) down the layers with the engine's chain — `jax.vmap` of
:func:`manualgrad._core.engine.products_of` over the columns, each layer's own backward,
exactly as the gradient pushes dZ[L] — and reads the products it returns.

**Weights shared over positions (T > 1).** A weight applied at T positions per example
(a convolution, a recurrent cell) has the per-example gradient Σ_t dz_t a_tᵀ, whose
square does not factor into squares of dz and a. For T = 1 (dense layers) every
statistic uses the fast factored formulas ((dZ ⊙ dZ)(A ⊙ A)ᵀ, formula (2) on squares);
for T > 1 `sum_grad_squared`, `grad_variance` and `diag_ggn` form g_i (and each
column's Σ_t s_ct a_tᵀ) by formula (1) vmapped over the examples
(:func:`manualgrad.per_example.example_grads`): memory m·d_out·d_in (times K for
`diag_ggn`) per weight. `gradient_gram` and `kfac_factors` never form them.

**Where 1/m is applied.** Formula (2)'s own 1/m (ḡ, G v) is the engine's
(:func:`~manualgrad._core.engine.grads_from_products`); every other statistic is first
summed over the examples and divided by m in one place, `_mean`. Sums over
examples all-reduce like formula (2) under data parallelism (docs/curvature.md).

All functions are pure, check their inputs at trace time, and are jit- and
vmap-compatible; `mc_samples` is static. Curvature is that of the deterministic
network: a network with dropout (keep_prob < 1) is a :class:`ConfigError`.

>>> import jax, jax.numpy as jnp, manualgrad as mg
>>> net = mg.network(["relu", "sigmoid"], "bce")
>>> params = net.init([2, 3, 1], jax.random.key(0))
>>> X = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
>>> Y = jnp.array([[1.0, 0.0, 1.0]])
>>> d = mg.curvature.diag_ggn(net, params, X, Y)
>>> sorted(d) == sorted(params), d["W1"].shape
(True, (3, 2))
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from manualgrad._core import engine
from manualgrad._core.dense import activation_residual, prev_activation_grad
from manualgrad._core.engine import check
from manualgrad._core.layer import Product
from manualgrad._core.products import flat
from manualgrad._errors import ConfigError, DTypeError, ShapeError
from manualgrad.per_example import squared_norms

if TYPE_CHECKING:
    from manualgrad._network import Network

Array = jax.Array
Params = dict[str, Array]
ParamsLike = Mapping[str, Array]

__all__ = [
    "KFactors",
    "NoiseScale",
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
    """One layer's Kronecker factors: A (d_in+1, d_in+1) and G (d_out, d_out).

    kron(A, G) approximates the GGN block of [W[l] b[l]] in column-major vec (see
    :func:`kfac_factors`); for a weight without bias A is (d_in, d_in).
    """

    A: Array
    G: Array


# --------------------------------------------------------------------------------------
# Input checks (trace time)
# --------------------------------------------------------------------------------------


def _checked(
    net: Network, params: Any, X: Any, Y: Any, function: str
) -> tuple[Params, Array, Array, int]:
    """params, X, Y and m, checked against the network; a network with dropout is refused."""
    if net.keep_prob != 1:
        raise ConfigError(
            f"`{function}` is the curvature of the deterministic network, but this network "
            f"has keep_prob = {net.keep_prob}: dropout is not part of the curvature, so build "
            "the network with keep_prob=1.0 (e.g. dataclasses.replace(net, keep_prob=1.0))"
        )
    return net.checked(params, X, Y)


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
# Building blocks: the one 1/m, squares of products, pushing S's columns down the chain
# --------------------------------------------------------------------------------------


def _mean(stats: Any, m: int | float | Array) -> Any:
    """(1/m) Σ_i from Σ_i, for every leaf: the one place curvature divides by m.

    Formula (2)'s own 1/m (ḡ, G v) is applied by the engine; the statistics here are
    sums over examples (of squares, of factors) until this last step.
    """
    return jax.tree.map(lambda x: x / m, stats)


def _merged(parts: Sequence[Params], params: Mapping[str, Array]) -> Params:
    """One dict from the per-product dicts, in the params' key order."""
    out: Params = {}
    for part in parts:
        out.update(part)
    return {k: out[k] for k in params}


def _second_moment(
    products: Sequence[Product], params: Mapping[str, Array], precision: str
) -> Params:
    """Σ_i g_i ⊙ g_i over every product, keyed like params."""
    return _merged([p.squares(params, precision) for p in products], params)


def _output_sqrt(
    caches: engine.Caches, Y: Array, spec: engine.Spec, mc_samples: int | None, key: Any
) -> Array:
    """S[L] (n_L, m, K) at z[L]: the loss record's exact or sampled square root of H.

    A sequence output Z (n_L, T, m) has the loss Σ_t L(z_t), whose Hessian is block
    diagonal over t: the loss record's square root is taken on the T·m positions as
    columns, then S is (n_L, T, m, K) with, exact, K = n_L·T columns (column (c, t') is
    zero off position t'), or, sampled, the M labels drawn independently at every
    position (E[s_t s_t'ᵀ] = 0 for t ≠ t'), K = M.
    """
    assert spec.loss is not None
    Z, A, act = engine.output_values(caches, spec)
    if Z.ndim == 2:
        if mc_samples is None:
            return spec.loss.hessian_sqrt(Z, A, Y, act)
        return spec.loss.sampled_hessian_sqrt(Z, A, Y, act, key, mc_samples)
    n_L, T, m = Z.shape
    Zf, Af, Yf = (flat(x) for x in (Z, A, Y))  # (n_L, T·m): positions as columns
    if mc_samples is not None:
        S = spec.loss.sampled_hessian_sqrt(Zf, Af, Yf, act, key, mc_samples)
        return S.reshape(n_L, T, m, mc_samples)
    S = spec.loss.hessian_sqrt(Zf, Af, Yf, act).reshape(n_L, T, m, n_L)
    blocks = S[..., None] * jnp.eye(T, dtype=S.dtype)[None, :, None, None, :]  # δ_tt'
    return blocks.reshape(n_L, T, m, n_L * T)


def _push(
    params: Mapping[str, Array], caches: engine.Caches, S: Array, spec: engine.Spec
) -> tuple[Product, ...]:
    """The products of the chain run from each of the K columns of S (n, …, m, K) at the last z.

    `jax.vmap` of :func:`manualgrad._core.engine.products_of` over the column axis:
    every layer's backward once, with m·K columns. Each returned product has its A
    (d_in, T, m), unchanged, and dZ (d_out, T, m, K), one slice per column.
    """
    names: list[tuple[type[Product], str, str | None]] = []

    def chain(col):
        products = engine.products_of(params, caches, col, spec)
        names[:] = [(type(p), p.weight, p.bias) for p in products]  # static: while tracing
        return tuple(p.A for p in products), tuple(p.dZ for p in products)

    As, dZs = jax.vmap(chain, in_axes=S.ndim - 1, out_axes=(None, 3))(S)
    return tuple(kind(w, b, A, dZ) for (kind, w, b), A, dZ in zip(names, As, dZs, strict=True))


def _pushed(
    net: Network,
    params: Any,
    X: Any,
    Y: Any,
    key: Any,
    mc_samples: Any,
    function: str,
) -> tuple[Params, int, tuple[Product, ...]]:
    """Checked params, m, and the products of S[L]'s columns pushed down (see :func:`_push`)."""
    mc = _check_mc(mc_samples, key)
    params, X, Y, m = _checked(net, params, X, Y, function)
    spec = net.spec
    _, caches = engine.forward(params, X, spec)
    return params, m, _push(params, caches, _output_sqrt(caches, Y, spec, mc, key), spec)


def _add_l2_diagonal(diag: Params, params: Params, l2: Any, m: int) -> Params:
    """+ (λ/m) on every weight: the Hessian of (λ/2m) Σ_l ‖W[l]‖_F² is (λ/m) I on the weights."""
    return engine.add_l2_grads(diag, jax.tree.map(jnp.ones_like, params), l2, m)


def _layer_number(weight_key: str) -> int:
    """l from a weight's key: "W3" -> 3 (the engine numbers the layers with parameters)."""
    found = re.search(r"(\d+)$", weight_key)
    assert found is not None, weight_key
    return int(found.group(1))


# --------------------------------------------------------------------------------------
# First order: one forward, one backward
# --------------------------------------------------------------------------------------


def _pass(net: Network, params: Any, X: Any, Y: Any, function: str):
    params, X, Y, m = _checked(net, params, X, Y, function)
    return params, m, engine.backward_pass(params, X, Y, net.spec).products


def sum_grad_squared(net: Network, params: Any, X: Any, Y: Any) -> Params:
    r"""Σ_i g_i ⊙ g_i, the gradient's second moment (unnormalised), keyed like params.

    For a weight used once per example (T = 1, dense layers), by formula (1)
    (g_i)_W = dz_i a_iᵀ, so (g_i ⊙ g_i)_W = (dz_i ⊙ dz_i)(a_i ⊙ a_i)ᵀ and

        W: (dZ ⊙ dZ) (A ⊙ A)ᵀ,      b: Σ_i dz(i) ⊙ dz(i),

    one matmul per product on top of the backward pass (formula (2) on squares, no 1/m).
    A weight shared over T > 1 positions forms g_i = Σ_t dz_t a_tᵀ (formula (1)) first.
    g_i is the gradient of example i's loss L_i: no 1/m and no L2 term (the L2 term
    belongs to no example, as in :mod:`manualgrad.per_example`). Shapes: X (…, m),
    Y (n_L, m) -> a dict with the params' keys and shapes.
    """
    params, _, products = _pass(net, params, X, Y, "sum_grad_squared")
    return _second_moment(products, params, net.precision)


def grad_variance(net: Network, params: Any, X: Any, Y: Any) -> Params:
    r"""(1/m) Σ_i (g_i − ḡ) ⊙ (g_i − ḡ), the per-example gradients' variance, keyed like params.

    Computed as (1/m) Σ_i g_i ⊙ g_i − ḡ ⊙ ḡ from one backward pass: the second moment of
    :func:`sum_grad_squared` and ḡ = (1/m) Σ_i g_i from formula (2). This is the biased
    (1/m) variance; multiply by m/(m − 1) for the unbiased one. A constant added to every
    g_i — the L2 term's (λ/m) W — cancels, so λ plays no part. In floating point the
    difference can round to a tiny negative number where the variance is ≈ 0.
    """
    params, m, products = _pass(net, params, X, Y, "grad_variance")
    second = _mean(_second_moment(products, params, net.precision), m)
    mean = engine.grads_from_products(params, products, m=m, precision=net.precision)  # (2)
    return {k: second[k] - mean[k] * mean[k] for k in params}


def gradient_gram(net: Network, params: Any, X: Any, Y: Any) -> Array:
    r"""The (m, m) Gram matrix of the per-example gradients, ⟨g_i, g_j⟩ over all parameters.

    ⟨dz_i a_iᵀ, dz_j a_jᵀ⟩_F = (dz_i · dz_j)(a_i · a_j), and the bias adds dz_i · dz_j, so
    for dense layers

        Γ = Σ_l (dZ[l]ᵀ dZ[l]) ⊙ (A[l-1]ᵀ A[l-1] + 1),

    two (m, m) products per layer, no per-example gradient formed. A weight shared over
    T positions adds Σ_{t,s} (dz_t(i) · dz_s(j))(a_t(i) · a_s(j) + 1), two (T·m, T·m)
    products. Its diagonal is ‖g_i‖² (:func:`manualgrad.per_example.per_example_norms`
    squared), its mean is ‖ḡ‖². g_i is the gradient of L_i: no 1/m, no L2 term.
    Shapes: X (…, m) -> (m, m).
    """
    _, _, products = _pass(net, params, X, Y, "gradient_gram")
    return sum(p.gram(net.precision) for p in products)  # type: ignore[return-value]


def gradient_noise_scale(net: Network, params: Any, X: Any, Y: Any) -> NoiseScale:
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
    λ is `net.l2`. Returns a :class:`NoiseScale` of three scalars.
    """
    params, m, products = _pass(net, params, X, Y, "gradient_noise_scale")
    if m < 2:
        raise ShapeError(
            f"the gradient noise scale compares examples, so it needs m ≥ 2, got X with "
            f"m = {m} column: pass a batch of several examples"
        )
    mean = engine.grads_from_products(params, products, m=m, precision=net.precision)  # (2)
    mean_sq = sum(jnp.sum(g * g) for g in mean.values())  # ‖ḡ‖²
    trace_cov = (jnp.mean(squared_norms(products)) - mean_sq) * (m / (m - 1))
    full = engine.add_l2_grads(mean, params, net.l2, m)  # ∇C = ḡ + (λ/m) W
    grad_sq_norm = sum(jnp.sum(g * g) for g in full.values()) - trace_cov / m
    return NoiseScale(trace_cov / grad_sq_norm, trace_cov, grad_sq_norm)


# --------------------------------------------------------------------------------------
# Second order
# --------------------------------------------------------------------------------------


def _tangent_forward(
    params: Params, v: Params, X: Array, spec: engine.Spec
) -> tuple[engine.Caches, Array]:
    """The caches and Ż[L] for the direction v: each layer's forward and forward mode, in turn.

    Hidden layers: Ȧ from their `jvp` (dense: Ż = W Ȧ_prev + Ẇ A_prev + ḃ (6),
    Ȧ = g'(Z) ⊙ Ż (7); other layers may fall back to `jax.jvp` of their forward). The
    output layer: Ż[L] from its `pre_activation_jvp` ((6) at L), where the loss Hessian
    acts. Ȧ[0] = 0: X does not move.
    """
    keys = engine.layer_keys(spec)
    A, A_dot, caches = X, None, []
    Z_dot = None
    for k, (layer, names) in enumerate(zip(spec.layers, keys, strict=True)):
        local, tangent = engine.layer_params(params, names), engine.layer_params(v, names)
        A_next, cache = layer.forward(local, A, spec.precision)
        caches.append(cache)
        if k < spec.n_layers - 1:
            A_dot = layer.jvp(local, tangent, cache, A, A_dot, spec.precision)  # (6), (7)
        else:
            Z_dot = layer.pre_activation_jvp(local, tangent, A, A_dot, spec.precision)  # (6)
        A = A_next
    assert Z_dot is not None
    return engine.Caches(tuple(caches), (None,) * spec.n_layers), Z_dot


def ggn_vector_product(net: Network, params: Any, X: Any, Y: Any, v: Any) -> Params:
    r"""G v, the generalised Gauss-Newton matrix of C times a direction v, keyed like params.

        G v = (1/m) Σ_i J_iᵀ H_i (J_i v) + (λ/m) v_W

    J v by hand-written forward mode (the R-operator, one pass up the layers, each
    layer's `jvp`; for a dense layer):

        Ż[l] = W[l] Ȧ[l-1] + Ẇ[l] A[l-1] + ḃ[l]        (6)
        Ȧ[l] = g'(Z[l]) ⊙ Ż[l]                          (7)

    then the loss Hessian at the split (the loss record's `hessian_vp`: σ(1−σ) for bce,
    diag(p) − ppᵀ for ce on z[L]; I for mse on a[L]), then the engine's chain and
    formula (2) with 1/m — the same code as the gradient, started from H J v instead of
    dZ[L]. Costs about one forward and one backward pass. λ/m (`net.l2`) is included
    (the L2 term's Hessian). `v` must have the params' keys, shapes and dtype
    (:class:`ShapeError` otherwise).
    """
    params, X, Y, m = _checked(net, params, X, Y, "ggn_vector_product")
    v = _check_like_params(v, params, "v")
    spec = net.spec
    assert spec.loss is not None
    caches, Z_dot = _tangent_forward(params, v, X, spec)
    Z, A, act = engine.output_values(caches, spec)
    HJv = spec.loss.hessian_vp(Z_dot, Z, A, Y, act)  # H J v at z[L]
    products = engine.products_of(params, caches, HJv, spec)  # the chain
    Gv = engine.grads_from_products(params, products, m=m, precision=spec.precision)  # (2)
    return engine.add_l2_grads(Gv, v, net.l2, m)


def hessian_vector_product(net: Network, params: Any, X: Any, Y: Any, v: Any) -> Params:
    r"""∇²C v, the Hessian of the cost times v: `jax.jvp` through the hand-written gradient.

        ∇²C v = d/dt ∇C(θ + t v) at t = 0

    Forward-over-manual-reverse: JAX differentiates the engine's forward, chain and
    formula (2) in forward mode, about the cost of two gradients. λ/m is included.
    Unlike :func:`ggn_vector_product` this is the full Hessian, which is indefinite
    away from a minimum. `v` as for :func:`ggn_vector_product`.
    """
    params, X, Y, _ = _checked(net, params, X, Y, "hessian_vector_product")
    v = _check_like_params(v, params, "v")
    spec = net.spec

    def grad(theta):
        return engine.value_and_grad(theta, X, Y, spec, l2=net.l2)[1]

    return jax.jvp(grad, (params,), (v,))[1]


def diag_ggn(
    net: Network,
    params: Any,
    X: Any,
    Y: Any,
    key: Array | None = None,
    mc_samples: int | None = None,
) -> Params:
    r"""The diagonal of the GGN of C, exact or by Monte Carlo, keyed like params.

    The K columns of S[L] (n_L of them exact; `mc_samples` sampled labels otherwise, see
    below) are pushed down with the chain — each layer's backward, column by column,
    like dZ (dense: S[l-1] = W[l]ᵀ S[l] ⊙ g'(Z[l-1])) — and each product's share is
    Σ_i Σ_c g_ic ⊙ g_ic with g_ic = Σ_t s_ct(i) a_t(i)ᵀ, over m. For T = 1, with
    Q = Σ_c S_c ⊙ S_c (d_out, m):

        W: (1/m) Q (A ⊙ A)ᵀ + λ/m,       b: (1/m) Σ_i Q(i)

    For T > 1 each g_ic is formed (formula (1), m·K·d_out·d_in numbers per weight).

    | `mc_samples` | S[L] per example                                 | cost (chains)|
    |--------------|--------------------------------------------------|--------------|
    | None         | exact square root of H (n_L columns)             | n_L          |
    | M ≥ 1        | M labels ŷ from the model's predictive, over √M  | M            |

    Monte Carlo: ŷ ~ Bernoulli(a) (bce), Cat(p) (ce), a + N(0, I) (mse); the column is
    (a − ŷ)/√M (for mse, ε/√M then (5)), so E[S Sᵀ] = H and the estimate is unbiased
    (the "Fisher" estimate of BackPACK's DiagGGNMC). `key` draws the labels and is
    required with `mc_samples`. λ/m (the L2 term's Hessian, `net.l2`) is included on the
    weights. Multiply by m for the diagonal of the summed loss Σ_i L_i (e.g. a Laplace
    posterior).
    """
    params, m, pushed = _pushed(net, params, X, Y, key, mc_samples, "diag_ggn")
    sums = _merged([p.diag_sums(params, net.precision) for p in pushed], params)
    return _add_l2_diagonal(_mean(sums, m), params, net.l2, m)


def kfac_factors(
    net: Network,
    params: Any,
    X: Any,
    Y: Any,
    key: Array | None = None,
    mc_samples: int | None = None,
) -> dict[int, KFactors]:
    r"""Kronecker factors of the GGN of C, per layer: `{l: KFactors(A, G)}` for l = 1 … L.

    l counts the layers with parameters, as the params' keys do ("W3" -> 3). With
    ã = [a; 1] (the bias as a homogeneous coordinate, last; no 1 without a bias) and s
    the pushed square-root columns of :func:`diag_ggn` (exact: KFLR; `mc_samples`: KFAC):

        A = (1/m) Σ_i Σ_t ã_t(i) ã_t(i)ᵀ                  (d_in+1, d_in+1)
        G = (1/m) (1/T) Σ_i Σ_t Σ_c s_ct(i) s_ct(i)ᵀ       (d_out, d_out)

    For a dense layer T = 1. For a weight shared over T positions this is KFC's
    convention (Grosse & Martens 2016, "A Kronecker-factored approximate Fisher matrix
    for convolution layers"): A sums over the positions and G averages over them, so
    that kron(A, G) = T · E[ã ãᵀ] ⊗ E[s sᵀ] approximates Σ_t of the per-position
    blocks (their spatially uncorrelated derivatives assumption drops the t ≠ t' terms).

    **Vec convention.** Let W̃ = [W b], shape (d_out, d_in+1), and vec the column-major
    (Fortran) stacking of its columns: vec(W̃) = W̃.reshape(-1, order="F")
    = [W[:, 0]; …; W[:, n-1]; b]. The GGN block of a dense layer in that order is
    (1/m) Σ_i (ã_i ã_iᵀ) ⊗ (S_i S_iᵀ), and KFAC approximates it by kron(A, G) (by
    vec(u ãᵀ) = ã ⊗ u). In NumPy's row-major order (W̃.reshape(-1)) the same
    approximation is kron(G, A). It is exact for m = 1, and for any m when S_i does
    not depend on i (a deep linear network with mse).

    The 1/m of both factors is applied by the module's one division, after the sums.
    The L2 term's Hessian (λ/m) I is not a Kronecker product and is not included: add
    it as damping (A ⊗ G + (λ/m) I). `mc_samples` and `key` as for :func:`diag_ggn`.
    """
    params, m, pushed = _pushed(net, params, X, Y, key, mc_samples, "kfac_factors")
    sums: dict[int, KFactors] = {}
    for product in pushed:
        l = _layer_number(product.weight)
        if l in sums:
            raise ConfigError(
                f"`kfac_factors` gives one pair of factors per layer, but layer {l} has "
                f"several weights ({product.weight} and another): use diag_ggn for it"
            )
        A_sum, G_sum = product.kfac_sums(params, net.precision)  # Σ ã ãᵀ, (1/T) Σ s sᵀ
        sums[l] = KFactors(A=A_sum, G=G_sum)
    return _mean(sums, m)


def diag_hessian(net: Network, params: Any, X: Any, Y: Any) -> Params:
    r"""The exact diagonal of the Hessian of C, keyed like params (dense networks).

    Within layer l, z[l] is linear in (W[l], b[l]), so the Hessian's diagonal needs only
    the diagonal of ∂²L_i/∂z[l]², which obeys the recursion (8):

        ∂²L/∂z[l]² = diag(g') W[l+1]ᵀ (∂²L/∂z[l+1]²) W[l+1] diag(g') + diag(r[l]),
        r[l] = g''(Z[l]) ⊙ dA[l]

    Unrolled, it is the GGN's S[l] S[l]ᵀ plus, for each layer k ≥ l whose activation is
    curved, diag(r[k]) pushed from k down to l. Each diag(r[k]) is pushed as n_k
    *signed* square-root columns √|r[k]_j| e_j with sign(r[k]_j), through the same chain
    as S; the statistic is then formula (2) on squares as in :func:`diag_ggn`.
    For sigmoid+bce and softmax+ce the loss Hessian on z[L] is exact (no residual at L);
    for mse the output layer adds r[L] = g''(Z[L]) ⊙ (A[L] − Y).

    For relu, leaky_relu and linear layers g'' = 0 (their record's `piecewise_linear`),
    so the result equals :func:`diag_ggn`'s exactly; otherwise the cost grows with depth
    (Σ_k n_k extra columns). λ/m is included. Only dense layers expose the Z, A and g''
    that (8) needs: any other layer is a :class:`ConfigError`, and so is softmax with
    mse (its g'' is not elementwise).
    """
    spec = net.spec
    if not spec.is_dense:
        others = sorted({type(layer).__name__ for layer in spec.layers} - {"Dense"})
        raise ConfigError(
            f"`diag_hessian` needs each layer's Z, A and g'' (formula (8)), which only dense "
            f"layers give, but this network has {', '.join(others)} layers: use "
            "hessian_vector_product (exact, one direction at a time) or diag_ggn"
        )
    assert spec.loss is not None
    out_act = spec.output.output_activation
    if out_act.second_derivative is None and spec.loss.fused_with != out_act.name:
        raise ConfigError(
            f"`diag_hessian` needs the output activation's g'' elementwise, but "
            f"{out_act.name!r} with loss {spec.loss.name!r} couples the outputs: use "
            "loss='ce' with softmax, or hessian_vector_product for this network"
        )
    params, X, Y, m = _checked(net, params, X, Y, "diag_hessian")
    _, caches = engine.forward(params, X, spec)
    keys = engine.layer_keys(spec)
    S = _push(params, caches, _output_sqrt(caches, Y, spec, None, None), spec)
    Q = [jnp.sum(p.dZ[:, 0] * p.dZ[:, 0], axis=2) for p in S]  # diag of S Sᵀ, (n_l, m)
    dZL = engine.output_dZ(caches, Y, spec)
    dZs = [p.dZ[:, 0] for p in engine.products_of(params, caches, dZL, spec)]
    L = spec.n_layers
    for k, (layer, cache) in enumerate(zip(spec.layers, caches.layers, strict=True), start=1):
        act = layer.output_activation  # a dense layer's g, g', g''
        if act.piecewise_linear or (k == L and spec.loss.fused_with == act.name):
            continue  # g'' = 0, or the loss Hessian on z[L] is already exact
        if k < L:
            W_next = params[keys[k]["W"]]
            dA = prev_activation_grad(W_next, dZs[k], precision=spec.precision)  # (4)
        else:
            dA = spec.loss.dA(cache.A, Y)  # mse: dA[L] = A[L] − Y
        r = activation_residual(dA, cache.Z, cache.A, act)  # (8)
        Q[k - 1] = Q[k - 1] + r
        if k == 1:
            continue
        n_k = r.shape[0]
        roots = jnp.eye(n_k, dtype=r.dtype)[:, None, :] * jnp.sqrt(jnp.abs(r)).T[None, :, :]
        signs = jnp.sign(r).T[None, :, :]  # (1, m, K): column c's sign, per example
        below = spec._replace(layers=spec.layers[:k])  # the chain from z[k] down
        pushed = _push(params, engine.Caches(caches.layers[:k], caches.masks[:k]), roots, below)
        for l in range(1, k):
            s = pushed[l - 1].dZ[:, 0]  # (n_l, m, K)
            Q[l - 1] = Q[l - 1] + jnp.sum(signs * s * s, axis=2)
    sums = _merged(
        [
            engine.product_grads(
                p._replace(A=p.A * p.A, dZ=q[:, None, :]), params, m=1, precision=spec.precision
            )  # (2) on squares
            for p, q in zip(S, Q, strict=True)
        ],
        params,
    )
    return _add_l2_diagonal(_mean(sums, m), params, net.l2, m)
