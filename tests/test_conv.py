"""Convolution and pooling layers: their hand-derived backward and every extension, in float64.

The oracle is written independently of manualgrad, one example at a time, with
`jax.lax.conv_general_dilated` (NHWC images, OHWI kernels: our W (C, f, f, C_prev)),
`jax.lax.reduce_window` for the pools and optax for the loss (via `reference_losses`).
`jax.grad`, `jax.vmap(jax.grad)`, `jax.jacfwd` and `jax.hessian` of it are what the
hand-written formulas must equal, to ≤ 1e-12 relative error. Max pools see distinct
values (tanh, or relu whose tied zeros carry dZ = 0), where the course's mask and
jax's max gradient agree.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree
from jax.test_util import check_grads

import manualgrad as mg
from helpers import (
    F32_TOL,
    F64_TOL,
    REFERENCE_ACTIVATIONS,
    clipped_mean,
    example_norms,
    labels_for,
    reference_losses,
    rel_err,
    sum_of_squares,
    variance,
)
from manualgrad._core.activations import get_activation
from manualgrad._core.losses import get_loss
from manualgrad._core.regularization import dropout_masks

L = mg.layers
M = 5  # examples

# An architecture: the input image (H, W, C), the layers, the loss. The oracle reads the
# same records' settings (channels, kernel, stride, pad, size, activation).
ARCHS = {
    "conv3-pad1-tanh-max2-sigmoid-bce": (
        (6, 6, 2),
        (
            L.Conv2D(3, 3, pad=1, activation="tanh"),
            L.MaxPool2D(2),
            L.Flatten(),
            L.Dense(1, "sigmoid"),
        ),
        "bce",
    ),
    "conv3-stride2-relu-avg2-stride1-softmax-ce": (
        (7, 7, 1),
        (L.Conv2D(2, 3, stride=2), L.AvgPool2D(2, stride=1), L.Flatten(), L.Dense(3, "softmax")),
        "ce",
    ),
    "conv5-stride3-pad2-leaky-max3-stride2-tanh-mse": (
        (8, 8, 3),
        (
            L.Conv2D(4, 5, stride=3, pad=2, activation="leaky_relu"),
            L.MaxPool2D(3, stride=2),
            L.Flatten(),
            L.Dense(2, "tanh"),
        ),
        "mse",
    ),
    # two conv layers: T = 16 with d_in·d_out = 8 (per-example norms materialise dW_i),
    # then T = 4 with d_in·d_out = 72 ≥ 2T² (the Gram identity over positions)
    "two-convs-max-pool-sigmoid-bce": (
        (5, 5, 1),
        (
            L.Conv2D(2, 2, activation="tanh"),
            L.MaxPool2D(2),
            L.Conv2D(4, 3, pad=1, activation="tanh"),
            L.Flatten(),
            L.Dense(2, "sigmoid"),
        ),
        "bce",
    ),
}
EXTENSIONS_ARCH = "two-convs-max-pool-sigmoid-bce"


# ---------------------------------------------------------------------------------------
# The oracle: one example, lax.conv and reduce_window, no manualgrad code
# ---------------------------------------------------------------------------------------


def oracle_z(params, a, layer, l):
    """The pre-activation of layer `layer` (the l-th with params) on one input a, by lax.conv."""
    W, b = params[f"W{l}"], params[f"b{l}"][:, 0]
    if isinstance(layer, L.Dense):
        return jnp.matmul(W, a, precision="highest") + b
    p = layer.pad
    z = jax.lax.conv_general_dilated(
        a[None],
        W,
        window_strides=(layer.stride, layer.stride),
        padding=((p, p), (p, p)),
        dimension_numbers=("NHWC", "OHWI", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )[0]
    return z + b[None, None, :]  # (n_H, n_W, C)


def oracle_layer(params, a, layer, l, z=None):
    """(pre-activation or None, output) of one layer on one input a; `z` replaces its Z."""
    if layer.param_names:
        z = oracle_z(params, a, layer, l) if z is None else z
        return z, REFERENCE_ACTIVATIONS[layer.activation](z)
    if isinstance(layer, L.Flatten):
        return None, a.reshape(-1)
    f = layer.size
    s = f if layer.stride is None else layer.stride
    dims, steps = (f, f, 1), (s, s, 1)
    if isinstance(layer, L.MaxPool2D):
        return None, jax.lax.reduce_window(a, -jnp.inf, jax.lax.max, dims, steps, "VALID")
    return None, jax.lax.reduce_window(a, 0.0, jax.lax.add, dims, steps, "VALID") / (f * f)


def oracle_tail(params, a, layers, start, z=None, masks=None, keep_prob=1.0):
    """Run layers[start:] on one input a; with `z`, layers[start]'s pre-activation is z.

    `masks` {k: boolean mask of layer k's output} turns on inverted dropout there.
    Returns the output where the loss meets the network: z[L], or a[L] for mse (tanh).
    """
    l = sum(1 for layer in layers[:start] if layer.param_names)
    for k, layer in enumerate(layers[start:], start):
        l += 1 if layer.param_names else 0
        z_k, a = oracle_layer(params, a, layer, l, z if k == start else None)
        z = z_k if z_k is not None else z
        if masks is not None and k in masks:
            a = a * masks[k].astype(a.dtype) / keep_prob
    return a if layers[-1].activation == "tanh" else z  # mse meets a[L]; bce, ce meet z[L]


def oracle_output(params, x, layers):
    """One image x (H, W, C) -> z[L] (n_L,) (or a[L] for mse), with lax.conv and reduce_window."""
    return oracle_tail(params, x, layers, 0)


def oracle_inputs(params, x, layers):
    """{k: the input of layers[k]} for every layer k with params, for one image x."""
    inputs, a, l = {}, x, 0
    for k, layer in enumerate(layers):
        if layer.param_names:
            inputs[k], l = a, l + 1
        a = oracle_layer(params, a, layer, l)[1]
    return inputs


def oracle_patches(a, layer):
    """The patches (T, f·f·C_prev) of one input a (H, W, C_prev), by their definition:
    patch (h, w) is a_pad[s·h : s·h + f, s·w : s·w + f, :], flattened row-major."""
    f, s, p = layer.kernel, layer.stride, layer.pad
    a = jnp.pad(a, ((p, p), (p, p), (0, 0)))
    n_H, n_W = (a.shape[0] - f) // s + 1, (a.shape[1] - f) // s + 1
    return jnp.stack(
        [
            a[s * h : s * h + f, s * w : s * w + f].reshape(-1)
            for h in range(n_H)
            for w in range(n_W)
        ]
    )


def example_loss(output, y, layers, loss):
    """L(output, y) of one example, by optax (mse: ½‖a − y‖²)."""
    if loss == "mse":
        return 0.5 * jnp.sum((output - y) ** 2)
    return reference_losses(output[:, None], y[:, None], layers[-1].activation, loss)[0]


def oracle_loss(params, x, y, layers, loss, masks=None, keep_prob=1.0):
    output = oracle_tail(params, x, layers, 0, masks=masks, keep_prob=keep_prob)
    return example_loss(output, y, layers, loss)


def oracle_cost(params, X, Y, layers, loss, l2=0.0, masks=None, keep_prob=1.0):
    """(1/m) Σ_i L_i + (λ/2m) Σ_l ‖W[l]‖², masks (…, m) with examples last."""
    m = X.shape[-1]
    per = jax.vmap(oracle_loss, in_axes=(None, 3, 1, None, None, -1, None))(
        params, X, Y, layers, loss, masks, keep_prob
    )
    weights = sum(jnp.sum(w * w) for k, w in params.items() if k[0] == "W")
    return jnp.mean(per) + l2 / (2 * m) * weights


def random_params(net, shape, rng, dtype=jnp.float64):
    """Params of net.init's shapes drawn with numpy (no compilation): N(0, 1/fan-in) W, b."""
    shapes = jax.eval_shape(lambda k: net.init(shape, k, dtype=dtype), jax.random.key(0))
    params = {}
    for k, v in shapes.items():
        fan_in = np.prod(v.shape[1:]) if k[0] == "W" else 25.0
        params[k] = jnp.asarray(rng.standard_normal(v.shape) / np.sqrt(fan_in), dtype)
    return params


def problem(arch: str, seed: int = 0, dtype=jnp.float64):
    """(net, params, X, Y): params of net.init's shapes with nonzero biases, X ~ N(0, 1)."""
    shape, layers, loss = ARCHS[arch]
    net = mg.network(list(layers), loss)
    rng = np.random.default_rng(seed)
    params = random_params(net, shape, rng, dtype)
    X = jnp.asarray(rng.standard_normal((*shape, M)), dtype)
    Y = labels_for(loss, layers[-1].units, M, rng, dtype)
    return net, params, X, Y


# ---------------------------------------------------------------------------------------
# Proofs: the gradient of C
# ---------------------------------------------------------------------------------------


#: (λ, keep_prob) of each architecture's value_and_grad proof: L2 on 4-d filters, and
#: inverted dropout on the conv layers' image outputs (the masks drawn as the engine does)
OPTIONS = {
    "conv3-pad1-tanh-max2-sigmoid-bce": (0.0, 1.0),
    "conv3-stride2-relu-avg2-stride1-softmax-ce": (0.3, 1.0),
    "conv5-stride3-pad2-leaky-max3-stride2-tanh-mse": (0.0, 0.7),
    "two-convs-max-pool-sigmoid-bce": (0.2, 0.8),
}


def oracle_masks(params, X, layers, key, keep_prob):
    """{k: mask (…, m)} for the hidden layers with params, by the engine's documented rule:
    `dropout_masks(key, shapes of their outputs, keep_prob)`, first layer first."""
    if keep_prob == 1.0:
        return None
    hidden = [k for k, layer in enumerate(layers[:-1]) if layer.param_names]
    inputs = oracle_inputs(params, X[..., 0], layers)
    shapes = []
    for k in hidden:
        l = sum(1 for layer in layers[: k + 1] if layer.param_names)
        out = jax.eval_shape(
            lambda a, k=k, l=l: oracle_layer(params, a, layers[k], l)[1], inputs[k]
        )
        shapes.append((*out.shape, X.shape[-1]))
    return dict(zip(hidden, dropout_masks(key, shapes, keep_prob), strict=True))


@pytest.mark.parametrize("arch", list(ARCHS))
def test_conv_net_value_and_grad_matches_jax_grad_of_lax_conv_oracle(x64, arch):
    _, layers, loss = ARCHS[arch]
    _, params, X, Y = problem(arch)
    l2, keep_prob = OPTIONS[arch]
    net = mg.network(list(layers), loss, l2=l2, keep_prob=keep_prob)
    key = jax.random.key(11) if keep_prob < 1 else None
    C, grads = jax.jit(net.value_and_grad)(params, X, Y, key)
    masks = oracle_masks(params, X, layers, key, keep_prob)
    C_ref, grads_ref = jax.jit(jax.value_and_grad(oracle_cost), static_argnums=(3, 4, 5, 7))(
        params, X, Y, layers, loss, l2, masks, keep_prob
    )
    assert rel_err(C, C_ref) <= F64_TOL
    assert rel_err(grads, grads_ref) <= F64_TOL


def test_conv_net_in_float32_keeps_its_dtype_and_matches_the_oracle():
    arch = "conv3-stride2-relu-avg2-stride1-softmax-ce"
    net, params, X, Y = problem(arch, dtype=jnp.float32)
    _, layers, loss = ARCHS[arch]
    with jax.default_matmul_precision("highest"):
        _, grads = jax.jit(net.value_and_grad)(params, X, Y)
        want = jax.jit(jax.grad(oracle_cost), static_argnums=(3, 4))(params, X, Y, layers, loss)
    assert all(g.dtype == jnp.float32 for g in grads.values())
    assert rel_err(grads, want) <= F32_TOL


def test_conv_net_grads_for_params_and_images_match_central_finite_differences(x64):
    net, params, X, Y = problem("conv3-pad1-tanh-max2-sigmoid-bce")
    # reverse mode runs the hand-written backward, down to dA[0] = ∂C/∂X through col2im
    check_grads(
        jax.jit(net.custom_vjp_cost),
        (params, X, Y),
        order=1,
        modes=["rev"],
        eps=1e-6,
        atol=1e-7,
        rtol=1e-7,
    )


@settings(max_examples=3)  # each example is a new architecture: one compile
@given(
    size=st.integers(4, 7),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    pad=st.integers(0, 1),
    channels=st.integers(1, 2),
    pool=st.sampled_from(["max", "avg"]),
)
def test_random_conv_pool_architectures_match_the_oracle(
    x64, size, kernel, stride, pad, channels, pool
):
    # a patch wholly in the padding (pad ≥ kernel) gives equal values, and a max pool's
    # tie convention (the course's: every tied maximum) differs from reduce_window's
    assume(pool == "avg" or pad < kernel)
    assume((size + 2 * pad - kernel) // stride + 1 >= 2)  # the pool needs a 2×2 image
    pool_layer = L.MaxPool2D(2, stride=1) if pool == "max" else L.AvgPool2D(2)
    layers = (
        L.Conv2D(channels, kernel, stride=stride, pad=pad, activation="tanh"),
        pool_layer,
        L.Flatten(),
        L.Dense(1, "sigmoid"),
    )
    net = mg.network(list(layers), "bce")
    rng = np.random.default_rng(size * 31 + kernel)
    params = random_params(net, (size, size, 2), rng)
    X = jnp.asarray(rng.standard_normal((size, size, 2, 3)))
    Y = labels_for("bce", 1, 3, rng, jnp.float64)

    @jax.jit
    def both(params, X, Y):
        return net.value_and_grad(params, X, Y)[1], jax.grad(oracle_cost)(
            params, X, Y, layers, "bce"
        )

    grads, want = both(params, X, Y)
    assert rel_err(grads, want) <= F64_TOL


# ---------------------------------------------------------------------------------------
# Extensions: one backward pass, against vmap(jax.grad) and the dense GGN
# ---------------------------------------------------------------------------------------


def test_the_extensions_case_takes_both_per_example_norm_routes():
    """fastDP's rule in mg.per_example: the Gram identity when d_in·d_out ≥ 2T², else dW_i."""
    shape, layers, _ = ARCHS[EXTENSIONS_ARCH]
    routes = []
    for layer in layers[:3]:
        out = layer.output_shape(shape)
        if isinstance(layer, L.Conv2D):
            d_in, d_out, T = layer.kernel**2 * shape[2], layer.channels, out[0] * out[1]
            routes.append(d_in * d_out >= 2 * T * T)
        shape = out
    assert routes == [False, True]


CLIP = 0.05


@functools.cache
def extension_results():
    """(computed, oracle) for every extension on the two-conv net: one compile each side."""
    net, params, X, Y = problem(EXTENSIONS_ARCH)
    _, layers, loss = ARCHS[EXTENSIONS_ARCH]
    v = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=p.dtype)).reshape(p.shape), params)

    def computed(params, X, Y, v):
        return {
            "per_example_grads": net.per_example_grads(params, X, Y),
            "per_example_norms": net.per_example_norms(params, X, Y),
            "clipped_grads": net.clipped_grads(params, X, Y, CLIP),
            "dp_grads_sigma0": net.dp_grads(params, X, Y, jax.random.key(7), CLIP, 0.0),
            "sum_grad_squared": net.sum_grad_squared(params, X, Y),
            "grad_variance": net.grad_variance(params, X, Y),
            "gradient_gram": net.gradient_gram(params, X, Y),
            "diag_ggn": net.diag_ggn(params, X, Y),
            "ggn_vector_product": net.ggn_vector_product(params, X, Y, v),
            "kfac": net.kfac_factors(params, X, Y),
            "hessian_vector_product": net.hessian_vector_product(params, X, Y, v),
        }

    def oracle(params, X, Y, v):
        g = jax.vmap(jax.grad(oracle_loss), in_axes=(None, 3, 1, None, None))(
            params, X, Y, layers, loss
        )
        G = jax.vmap(lambda i: ravel_pytree(jax.tree.map(lambda x: x[i], g))[0])(jnp.arange(M))
        flat, unravel = ravel_pytree(params)

        def ggn_one(x, y):
            out = oracle_output(params, x, layers)
            J = jax.jacfwd(lambda th: oracle_output(unravel(th), x, layers))(flat)
            H = jax.hessian(lambda o: example_loss(o, y, layers, loss))(out)
            return J.T @ H @ J

        ggn = jnp.mean(jax.vmap(ggn_one, in_axes=(3, 1))(X, Y), axis=0)

        def kfc_one(x, y, k, l):
            """Σ_t ã_t ã_tᵀ and (1/T) Σ_t J_tᵀ H J_t of layers[k] (the l-th with params)."""
            a = oracle_inputs(params, x, layers)[k]
            P = oracle_patches(a, layers[k]) if isinstance(layers[k], L.Conv2D) else a[None]
            P1 = jnp.concatenate([P, jnp.ones((P.shape[0], 1))], axis=1)  # ã_t = [p_t; 1]
            z = oracle_z(params, a, layers[k], l)
            J = jax.jacfwd(lambda z: oracle_tail(params, a, layers, k, z))(z)
            J = J.reshape(J.shape[0], P.shape[0], -1)  # (n_out, T, d_out): J_t = ∂out/∂z_t
            H = jax.hessian(lambda o: example_loss(o, y, layers, loss))(
                oracle_output(params, x, layers)
            )
            return P1.T @ P1, jnp.einsum("otc,op,otd->cd", J, H, J) / P.shape[0]

        kfac = {}
        for l, k in enumerate(k for k, layer in enumerate(layers) if layer.param_names):
            A_i, G_i = jax.vmap(kfc_one, in_axes=(3, 1, None, None))(X, Y, k, l + 1)
            kfac[l + 1] = (jnp.mean(A_i, axis=0), jnp.mean(G_i, axis=0))
        clipped = clipped_mean(g, CLIP)
        return {
            "per_example_grads": g,
            "per_example_norms": example_norms(g),
            "clipped_grads": clipped,
            "dp_grads_sigma0": clipped,
            "sum_grad_squared": sum_of_squares(g),
            "grad_variance": variance(g),
            "gradient_gram": G @ G.T,
            "diag_ggn": unravel(jnp.diag(ggn)),
            "ggn_vector_product": unravel(ggn @ ravel_pytree(v)[0]),
            "kfac": kfac,
            "hessian_vector_product": jax.jvp(
                jax.grad(lambda p: oracle_cost(p, X, Y, layers, loss)), (params,), (v,)
            )[1],
        }

    with jax.enable_x64(True):
        got = jax.jit(computed)(params, X, Y, v)
        want = jax.jit(oracle)(params, X, Y, v)
    return got, want


EXTENSIONS = [
    "per_example_grads",
    "per_example_norms",
    "clipped_grads",
    "dp_grads_sigma0",
    "sum_grad_squared",
    "grad_variance",
    "gradient_gram",
    "diag_ggn",
    "ggn_vector_product",
    "hessian_vector_product",
]


@pytest.mark.parametrize("quantity", EXTENSIONS)
def test_conv_net_extension_matches_vmap_grad_or_dense_ggn_oracle(x64, quantity):
    got, want = extension_results()
    assert rel_err(got[quantity], want[quantity]) <= F64_TOL


def test_conv_kfac_factors_are_kfc_patches_summed_over_positions_and_g_averaged(x64):
    """KFC (Grosse & Martens 2016): A = (1/m) Σ_i Σ_t ã_t ã_tᵀ over the patches, and
    G = (1/m) Σ_i (1/T) Σ_t J_tᵀ H J_t, for both conv layers and the dense output layer."""
    got, want = extension_results()
    assert sorted(got["kfac"]) == [1, 2, 3]
    for l in (1, 2, 3):
        assert rel_err(got["kfac"][l].A, want["kfac"][l][0]) <= F64_TOL
        assert rel_err(got["kfac"][l].G, want["kfac"][l][1]) <= F64_TOL


def test_clipping_is_active_in_the_extensions_case(x64):
    got, _ = extension_results()
    norms = np.asarray(got["per_example_norms"])
    assert np.any(norms > CLIP) and np.all(norms > 0)


# ---------------------------------------------------------------------------------------
# Monte-Carlo diagonal GGN: the sampled columns pushed through the lax oracle's vjp
# ---------------------------------------------------------------------------------------

MC_SAMPLES = 3
MC_ARCHS = [EXTENSIONS_ARCH]  # two convs and a max pool; the samplers of ce, mse: dense tests


@functools.cache
def mc_diag_ggn_results(arch):
    """(MC estimate, MC estimate from another key, oracle of the first), one compile each side.

    The oracle draws S[L] (n_L, m, K) with the loss record's sampler from the same key at
    the oracle's own z[L] (the sampler's E[S Sᵀ] = H is tested on dense nets in
    tests/test_curvature.py), then pushes each column s_ic through `jax.vjp` of the lax
    forward: diag = (1/m) Σ_i Σ_c (J_iᵀ s_ic)².
    """
    net, params, X, Y = problem(arch)
    _, layers, loss = ARCHS[arch]
    keys = jax.random.key(11), jax.random.key(12)

    def computed(params, X, Y, key):
        return net.diag_ggn(params, X, Y, key=key, mc_samples=MC_SAMPLES)

    def oracle(params, X, Y, key):
        Z = jax.vmap(oracle_output, in_axes=(None, 3, None), out_axes=1)(params, X, layers)
        act = get_activation(layers[-1].activation)
        S = get_loss(loss).sampled_hessian_sqrt(Z, act.forward(Z), Y, act, key, MC_SAMPLES)

        def pushed(x, S_i):  # J_iᵀ s for each of example i's K columns s
            _, vjp = jax.vjp(lambda p: oracle_output(p, x, layers), params)
            return jax.vmap(lambda s: vjp(s)[0], in_axes=1)(S_i)

        G = jax.vmap(pushed, in_axes=(3, 1))(X, S)  # leaves (m, K, …)
        return jax.tree.map(lambda g: jnp.sum(g * g, axis=(0, 1)) / X.shape[-1], G)

    with jax.enable_x64(True):
        mc, other = (jax.jit(computed)(params, X, Y, key) for key in keys)
        want = jax.jit(oracle)(params, X, Y, keys[0])
    return mc, other, want


@pytest.mark.parametrize("arch", MC_ARCHS)
def test_conv_monte_carlo_diag_ggn_is_the_sampled_columns_through_the_oracles_vjp(x64, arch):
    mc, other, want = mc_diag_ggn_results(arch)
    assert rel_err(mc, want) <= F64_TOL
    assert rel_err(mc, other) > 1e-3  # sampled: another key gives another estimate


# ---------------------------------------------------------------------------------------
# Forward mode: each layer's hand-derived jvp against jax.jvp of the lax oracle
# ---------------------------------------------------------------------------------------

CONV_S2_P2 = L.Conv2D(3, 3, stride=2, pad=2, activation="tanh")
JVP_CASES = {
    # id: (layer, one image's shape, whether its input moves)
    "conv-f3-stride2-pad2-tanh": (CONV_S2_P2, (6, 7, 2), True),
    "conv-f3-stride2-pad2-tanh-first-layer": (CONV_S2_P2, (6, 7, 2), False),
    "conv-f2-leaky-relu": (L.Conv2D(2, 2, activation="leaky_relu"), (5, 5, 3), True),
    "max3-stride2-overlapping": (L.MaxPool2D(3, stride=2), (7, 6, 2), True),
    "max2": (L.MaxPool2D(2), (6, 4, 3), True),
    "avg3-stride2-overlapping": (L.AvgPool2D(3, stride=2), (7, 6, 2), True),
    "flatten": (L.Flatten(), (3, 4, 2), True),
}  # fmt: skip


@pytest.mark.parametrize("case", list(JVP_CASES))
def test_layer_jvp_equals_jax_jvp_of_the_lax_oracle(x64, case):
    """Conv2D: Ȧ = g'(Z) ⊙ Ż (7), Ż_t = W Ṗ_t + Ẇ P_t + ḃ (6) on the patches; max pool: the
    tangent at each window's argmax; average pool: the mean of the tangents; Flatten: reshaped.
    A first layer's input does not move (Ȧ_prev = None; the oracle's tangent is 0)."""
    layer, shape, moves = JVP_CASES[case]
    rng = np.random.default_rng(len(case))
    draw = lambda *s: jnp.asarray(rng.standard_normal(s))  # noqa: E731
    A_prev, A_prev_dot = draw(*shape, M), draw(*shape, M)  # distinct values: one max a window
    shapes = jax.eval_shape(lambda k: layer.init(k, shape, jnp.float64)[0], jax.random.key(0))
    params = {k: draw(*v.shape) for k, v in shapes.items()}
    tangent = {k: draw(*v.shape) for k, v in shapes.items()}

    def both(params, tangent, A_prev, A_prev_dot):
        _, cache = layer.forward(params, A_prev, "highest")
        got = layer.jvp(params, tangent, cache, A_prev, A_prev_dot if moves else None, "highest")
        named = lambda p: {f"{k}1": v for k, v in p.items()}  # noqa: E731  the oracle's W1, b1

        def oracle(p, A):
            one = lambda a: oracle_layer(named(p), a, layer, 1)[1]  # noqa: E731
            return jax.vmap(one, in_axes=3, out_axes=-1)(A)

        a_dot = A_prev_dot if moves else jnp.zeros_like(A_prev)
        return got, jax.jvp(oracle, (params, A_prev), (tangent, a_dot))[1]

    got, want = jax.jit(both)(params, tangent, A_prev, A_prev_dot)
    assert got.shape == want.shape
    assert rel_err(got, want) <= F64_TOL


# ---------------------------------------------------------------------------------------
# Bad input: clear errors with what was expected, what arrived and the fix
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "shape", "match"),
    [
        (L.Conv2D(2, 5), (4, 4, 1), r"window is 5 pixels but the image is 4 along H"),
        (L.Conv2D(2, 7, pad=1), (4, 4, 1), r"padded image is 6 along H.*more padding"),
        (L.MaxPool2D(3), (6, 2, 1), r"image is 2 along W"),
    ],
    ids=["kernel-larger-than-image", "kernel-larger-than-padded-image", "pool-larger-than-image"],
)
def test_a_window_larger_than_the_image_is_a_shape_error(layer, shape, match):
    net = mg.network([layer, L.Flatten(), L.Dense(1, "sigmoid")])
    with pytest.raises(mg.errors.ShapeError, match=match):
        net.init(shape, jax.random.key(0))


@pytest.mark.parametrize(
    "make",
    [
        lambda: L.Conv2D(2, 3, stride=0),
        lambda: L.MaxPool2D(2, stride=0),
        lambda: L.AvgPool2D(0),
        lambda: L.Conv2D(0, 3),
        lambda: L.Conv2D(2, 3, pad=-1),
    ],
    ids=["conv-stride-0", "maxpool-stride-0", "avgpool-size-0", "conv-0-channels", "pad--1"],
)
def test_a_stride_size_or_channel_count_out_of_range_is_a_config_error(make):
    with pytest.raises(mg.errors.ConfigError, match=r"must be an int ≥ [01], got -?\d"):
        make()


def test_softmax_on_a_conv_layer_is_a_config_error():
    with pytest.raises(mg.errors.ConfigError, match=r"elementwise activation.*Dense output"):
        L.Conv2D(2, 3, activation="softmax")


def test_images_whose_channels_do_not_match_the_params_are_a_shape_error(x64):
    net, params, X, Y = problem("conv3-pad1-tanh-max2-sigmoid-bce")  # C_prev = 2
    one_channel = X[:, :, :1]
    with pytest.raises(mg.errors.ShapeError, match=r"`W1` has shape \(3, 3, 3, 2\)"):
        net.value_and_grad(params, one_channel, Y)
    conv = ARCHS["conv3-pad1-tanh-max2-sigmoid-bce"][1][0]
    local = {"W": params["W1"], "b": params["b1"]}
    with pytest.raises(
        mg.errors.ShapeError, match=r"C_prev = W.shape\[3\] = 2.*net.init\(\(H, W, 1\)"
    ):
        conv.forward(local, one_channel, "default")


def test_images_given_examples_first_are_a_shape_error_with_the_fix(x64):
    net, params, X, Y = problem("conv3-pad1-tanh-max2-sigmoid-bce")
    examples_first = jnp.moveaxis(X, -1, 0)  # (m, H, W, C)
    # the network's params check meets it first: (m, H, W) read as one image gives W1 (…, W)
    with pytest.raises(
        mg.errors.ShapeError, match=r"`W1` has shape \(3, 3, 3, 2\) but .* \(3, 3, 3, 6\)"
    ):
        net.value_and_grad(params, examples_first, Y)
    conv = ARCHS["conv3-pad1-tanh-max2-sigmoid-bce"][1][0]
    local = {"W": params["W1"], "b": params["b1"]}
    with pytest.raises(mg.errors.ShapeError, match=r"examples first.*jnp.moveaxis\(X, 0, -1\)"):
        conv.forward(local, examples_first, "default")


def test_flat_images_are_a_shape_error_that_says_how_to_reshape():
    net = mg.network([L.Conv2D(2, 3), L.Flatten(), L.Dense(1, "sigmoid")])
    with pytest.raises(mg.errors.ShapeError, match=r"takes images \(H, W, C\), got shape \(36,\)"):
        net.init((36,), jax.random.key(0))
