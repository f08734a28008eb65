r"""The backward engine: a network is a sequence of layers; one forward, one chain, formula (2).

Every feature of manualgrad is a small function of the pass this module runs. It
owns, each written once:

| piece                         | function                    | formulas              |
|-------------------------------|-----------------------------|-----------------------|
| the static description        | :class:`Spec`               | —                     |
| params' names per layer       | `layer_keys`, `layer_params`| "W1", "b1", …         |
| input checks (trace time)     | `check_inputs`, `check_features` | —                |
| the dropout masks of a batch  | `dropout_masks`             | —                     |
| forward and its caches        | `forward`                   | each layer's forward  |
| dZ[L] of the loss             | `output_dZ`                 | (5) at L, or A − Y    |
| the chain dZ[L] → products    | `chain`                     | (4), (5): (3)         |
| forward + dZ[L] + chain       | `backward_pass`             | all of the above      |
| dW, db from the products      | `grads_from_products`       | (2), its 1/m          |
| dW, db of C from dZ[L]        | `mean_grads`                | (4), (5), (2)         |
| the L2 term                   | `add_l2_grads`, `cost`      | (λ/m) W, (λ/2m)‖W‖²   |
| the cost                      | `cost`, `example_losses`    | C = (1/m) Σ_i L_i     |

**Layers and products.** A layer (:mod:`manualgrad._core.layer`) brings its own forward
and backward. The chain runs from the loss's dZ[L] down through every layer's backward
and collects, from each layer with parameters, its :class:`~manualgrad._core.layer.Product`s:
the input A (d_in, T, m) its weight multiplied at T positions and dZ (d_out, T, m) =
∂L_i/∂Z there, the derivative of *each example's* loss L_i, with no 1/m. Column i of
every dZ depends on example i alone and is linear in dz[L](i) (every layer's backward
and the dropout masks are linear in dA at fixed caches). That is why a consumer may
scale the columns (clipping, masking, Poisson sampling) and then call
`grads_from_products`, and why the sums over examples may be split across devices.
Extensions read products only, never a layer's internals.

**Where the 1/m of formula (2) is applied.** In the engine only, by the two functions
of formula (2): :func:`grads_from_products`, per product, on the dZ of a chain that has
already run (columns weighted by clip factors or masks first), and :func:`mean_grads`,
once, on dZ[L] before the chain — the same numbers by linearity, without an
elementwise pass per layer. Their argument `m` is the normaliser: the batch size for
the mean gradient of C; the global batch size on a device holding a shard of it; the
expected batch size q·N for DP-SGD under Poisson sampling. Nothing outside the engine
divides a gradient by m. The L2 term's (λ/m) W[l] and (λ/2m) Σ‖W‖² use the same m.

This module is manualgrad's internal API: the public modules (`functional`,
`per_example`, `parallel`, `curvature`, `privacy`, the network) import it; users
should not. Its trace-time validators are part of it, as `check`
(:mod:`manualgrad._core.validation`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from manualgrad._core import regularization
from manualgrad._core import validation as check
from manualgrad._core.layer import Layer, Product
from manualgrad._core.losses import Loss, output_backward
from manualgrad._core.regularization import apply_dropout, l2_cost, l2_weight_grad
from manualgrad._errors import ShapeError

Array = jax.Array
Params = dict[str, Array]


class Spec(NamedTuple):
    """The static description of a network: its layers, loss, dropout rate and precision.

    `layers`: a tuple of :class:`~manualgrad._core.layer.Layer`; `loss`: the
    :class:`~manualgrad._core.losses.Loss` (None for a forward pass alone);
    `keep_prob`: dropout's keep probability on the outputs of the hidden layers with
    parameters (1.0: no dropout); `precision`: a policy of :mod:`manualgrad._core.precision`.
    Hashable, so a function may close over it under `jax.jit`.
    """

    layers: tuple[Layer, ...]
    loss: Loss | None
    keep_prob: float
    precision: str

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def is_dense(self) -> bool:
        """True when every layer is a dense layer: the course's network, its checks and keys."""
        from manualgrad.layers._dense import Dense

        return all(type(layer) is Dense for layer in self.layers)

    @property
    def output(self) -> Layer:
        return self.layers[-1]

    def without_dropout(self) -> Spec:
        return self._replace(keep_prob=1.0)


def layer_keys(spec: Spec) -> tuple[dict[str, str], ...]:
    """Per layer, local parameter name -> the params dict's key: "W" of the l-th layer with
    parameters is "W{l}" (counting only layers with parameters, from 1)."""
    keys, l = [], 0
    for layer in spec.layers:
        names = layer.param_names
        if names:
            l += 1
        keys.append({name: f"{name}{l}" for name in names})
    return tuple(keys)


def param_order(spec: Spec) -> tuple[str, ...]:
    """Every key of the params, in layer order: "W1", "b1", "W2", "b2", …"""
    return tuple(key for keys in layer_keys(spec) for key in keys.values())


def layer_params(params: Mapping[str, Array], keys: Mapping[str, str]) -> dict[str, Array]:
    """One layer's params under its local names."""
    return {local: params[key] for local, key in keys.items()}


def hidden_with_dropout(spec: Spec) -> tuple[int, ...]:
    """The indices of the layers whose output dropout masks: hidden layers with parameters."""
    if spec.keep_prob == 1:
        return ()
    return tuple(k for k, layer in enumerate(spec.layers[:-1]) if layer.param_names)


# --------------------------------------------------------------------------------------
# Trace-time checks
# --------------------------------------------------------------------------------------


def expected_shapes(spec: Spec, example_shape: tuple[int, ...], dtype: Any) -> dict[str, Any]:
    """The params' shapes for one example's input shape, by abstract evaluation of each init."""
    return _init_chain(spec, tuple(example_shape), dtype)[0]


def output_shape(spec: Spec, example_shape: tuple[int, ...], dtype: Any) -> tuple[int, ...]:
    """One example's output shape for one example's input shape: (n_L,), or (n_L, T) for a
    network that outputs a sequence (a loss summed over its T positions)."""
    return _init_chain(spec, tuple(example_shape), dtype)[1]


@functools.lru_cache(maxsize=256)
def _init_chain(
    spec: Spec, example_shape: tuple[int, ...], dtype: Any
) -> tuple[dict[str, Any], tuple[int, ...]]:
    """(params' shapes, output shape) for one example's input shape: each layer's init in turn,
    abstractly evaluated; cached, as both are static facts of (spec, shape, dtype)."""
    shapes: dict[str, Any] = {}
    in_shape = tuple(example_shape)
    key = jax.random.key(0)
    for layer, keys in zip(spec.layers, layer_keys(spec), strict=True):
        out_shape: list[tuple[int, ...]] = []

        def local_params(k, layer=layer, s=in_shape, out_shape=out_shape):
            local, out = layer.init(k, s, dtype)
            out_shape.append(tuple(int(n) for n in out))  # static: read back, not traced
            return local

        local = jax.eval_shape(local_params, key)
        for name, key_name in keys.items():
            shapes[key_name] = local[name].shape
        in_shape = out_shape[0]
    return shapes, in_shape


def check_params(params: Any, spec: Spec, example_shape: tuple[int, ...] | None = None) -> Params:
    """The params as a dict of arrays, checked against the network's layers.

    A dense network gets the detailed checks of the course's keys ("W1", "b1", …, with
    chaining shapes); any other network its expected keys and, given one example's input
    shape, the shapes each layer's init gives.
    """
    params = check.as_params(params)
    if spec.is_dense:
        n_layers = check.check_params(params)
        check.check_layer_count(params, n_layers, spec)
    else:
        check.check_param_keys(params, param_order(spec))
    check.check_dtype_options(precision=spec.precision, dtype=check.params_dtype_of(params))
    if spec.is_dense:
        return params
    if example_shape is not None:
        dtype = check.params_dtype_of(params)
        check.check_param_shapes(params, expected_shapes(spec, example_shape, dtype))
    return params


def _examples_first_fix(params: Any, spec: Spec, X: Array) -> str | None:
    """How to move the examples of X to the last axis, when the params fit X so rearranged.

    (m, …) -> jnp.moveaxis(X, 0, -1); for a sequence batch given (m, T, n_x), the layout
    of Keras and PyTorch's batch_first, -> jnp.transpose(X, (2, 1, 0)). None if neither fits.
    """
    shape = tuple(X.shape)
    candidates = [(shape[1:], "jnp.moveaxis(X, 0, -1)")]
    if len(shape) == 3:
        candidates.append(((shape[2], shape[1]), "jnp.transpose(X, (2, 1, 0))"))
    for example_shape, fix in candidates:
        try:
            check_params(params, spec, example_shape)
        except (ShapeError, ValueError, TypeError):
            continue
        return fix
    return None


def check_features(
    params: Any, X: Any, spec: Spec, *, key: Any = None
) -> tuple[Params, Array, int]:
    """Check params and X (…, m), and with dropout on the key, at trace time; return them and m."""
    X = check.as_array("X", X)
    if spec.is_dense:
        params = check_params(params, spec)
        m = check.check_X(params, X)
    else:
        m = check.check_X_examples_last(X)
        try:
            params = check_params(params, spec, tuple(X.shape[:-1]))
        except ShapeError as err:
            fix = _examples_first_fix(params, spec, X)
            if fix is None:
                raise
            fits = X.shape[1:] if fix.startswith("jnp.moveaxis") else (X.shape[2], X.shape[1])
            raise ShapeError(
                f"{err} — X has shape {tuple(X.shape)}, and the params fit one example of shape "
                f"{tuple(fits)}: are the examples first? examples are the last axis, "
                f"X = {fix}"
            ) from None
        spec.layers[0].check_input(X, check.params_dtype_of(params))
    check.check_dropout_key(spec.keep_prob, key)
    return params, X, m


def check_inputs(
    params: Any,
    X: Any,
    Y: Any,
    spec: Spec,
    *,
    l2: Any = 0.0,
    key: Any = None,
    needs_key: bool = True,
) -> tuple[Params, Array, Array, int]:
    """Check params, X (…, m), Y (n_L, m), λ and the dropout key at trace time.

    Returns params, X, Y cast to the params' dtype, and m. `needs_key=False` where the masks
    already exist (backward from caches).
    """
    if spec.loss is None:  # `loss=None` passed where a loss is needed (only forward has none)
        check.check_loss(None, None)  # the unknown-loss error
    params, X, m = check_features(
        params, X, spec.without_dropout() if not needs_key else spec, key=key
    )
    params_dtype = check.params_dtype_of(params)
    check.check_l2(l2, dtype=params_dtype)
    out = None if spec.is_dense else output_shape(spec, tuple(X.shape[:-1]), params_dtype)
    Y = check_labels(params, Y, m, spec, out)
    return params, X, Y.astype(params_dtype), m


def output_units(params: Mapping[str, Array], spec: Spec) -> int | None:
    """n_L, the rows of the output layer's weight "W" (None for a layer without one)."""
    key = layer_keys(spec)[-1].get("W")
    return None if key is None else params[key].shape[0]


def check_labels(
    params: Mapping[str, Array],
    Y: Any,
    m: int,
    spec: Spec,
    out_shape: tuple[int, ...] | None = None,
) -> Array:
    """Check Y (n_L, m) against the network's output units, with the catalogue's hints.

    `out_shape`: one example's output shape, where known; a sequence output (n_L, T) needs
    labels (n_L, T, m), one per position.
    """
    Y = check.as_array("Y", Y)
    if out_shape is not None and len(out_shape) > 1:
        check.check_sequence_labels(Y, m, out_shape)
        return Y
    check.check_labels(Y, m, output_units(params, spec))
    return Y


# --------------------------------------------------------------------------------------
# Forward
# --------------------------------------------------------------------------------------


class Caches(NamedTuple):
    """What the backward pass needs from the forward: per layer its cache and dropout mask.

    `layers[k]` is layer k's own cache (a dense layer's `DenseCache(A_prev, Z, A)`);
    `masks[k]` the boolean mask D applied to layer k's output, or None.
    """

    layers: tuple[Any, ...]
    masks: tuple[Array | None, ...]


def dropout_masks(params: Params, X: Array, spec: Spec, key: Array | None) -> tuple[Any, ...]:
    """The masks of a batch: one boolean per hidden layer with parameters, shaped like its output.

    The one rule for which masks a batch gets, so that `value_and_grad`, the per-example
    functions and a `jax.grad` oracle given the same key see the same dropout
    (:func:`manualgrad.regularization.dropout_masks` on the hidden outputs' shapes).
    """
    hidden = hidden_with_dropout(spec)
    masks: list[Any] = [None] * spec.n_layers
    if not hidden:
        return tuple(masks)
    assert key is not None  # check_inputs asks for a key when keep_prob < 1
    shapes = jax.eval_shape(lambda p, x: _output_shapes(p, x, spec), params, X)
    drawn = regularization.dropout_masks(key, [shapes[k].shape for k in hidden], spec.keep_prob)
    for k, D in zip(hidden, drawn, strict=True):
        masks[k] = D
    return tuple(masks)


def _output_shapes(params: Params, X: Array, spec: Spec) -> list[Array]:
    outs, A = [], X
    for layer, keys in zip(spec.layers, layer_keys(spec), strict=True):
        A, _ = layer.forward(layer_params(params, keys), A, spec.precision)
        outs.append(A)
    return outs


def forward(
    params: Mapping[str, Array], X: Array, spec: Spec, masks: Sequence[Any] | None = None
) -> tuple[Array, Caches]:
    """A[L] and the caches: each layer's forward in turn, from A[0] = X.

    X (…, m), examples last. `masks` (from :func:`dropout_masks`, one per layer or None)
    turn on inverted dropout: A D / keep_prob is what the next layer receives.
    """
    masks = (None,) * spec.n_layers if masks is None else tuple(masks)
    caches = []
    A = X
    for layer, keys, D in zip(spec.layers, layer_keys(spec), masks, strict=True):
        A, cache = layer.forward(layer_params(params, keys), A, spec.precision)
        caches.append(cache)
        if D is not None:
            A = apply_dropout(A, D, spec.keep_prob)
    return A, Caches(tuple(caches), masks)


def output_values(caches: Caches, spec: Spec) -> tuple[Array, Array, Any]:
    """(Z[L], A[L], the output activation): where the loss meets the network."""
    return spec.output.output_values(caches.layers[-1])


def output_dZ(caches: Caches, Y: Array, spec: Spec) -> Array:
    """dZ[L] = ∂L_i/∂Z[L] of each example's loss: A[L] − Y (fused) or dA[L] ⊙ g'(Z[L]) (5)."""
    assert spec.loss is not None, "a Spec made with loss=None has no dZ[L]"
    Z, A, act = output_values(caches, spec)
    return output_backward(Z, A, Y, act, spec.loss)


# --------------------------------------------------------------------------------------
# Backward: the chain and formula (2)
# --------------------------------------------------------------------------------------


class Pass(NamedTuple):
    """One forward and backward pass: the caches and, layer by layer, the products.

    `products` holds one :class:`~manualgrad._core.layer.Product` per weight of every
    layer with parameters, first layer first, with the params' keys ("W1", "b1") as
    names. No 1/m anywhere.
    """

    caches: Caches
    products: tuple[Product, ...]


def chain(
    params: Mapping[str, Array],
    caches: Caches,
    dZL: Array,
    spec: Spec,
    *,
    input_grad: bool = False,
) -> tuple[Product, ...] | tuple[tuple[Product, ...], Array]:
    """The products of every layer from dZ[L]: formulas (4) and (5), from layer L down to 1.

    dZL may be any (n_L, m) array (or (n_L, T, m) for a sequence output) — the loss's
    dZ[L] for gradients, or a column of a square-root factor of the loss Hessian for
    curvature. Every product's dZ is linear
    in dZL. With `input_grad`, also returns dA[0] = ∂L_i/∂X (formula (4) at layer 1).
    """
    keys = layer_keys(spec)
    n = spec.n_layers
    out: list[Product] = []
    dA_prev, products = spec.output.backward_from_dZ(
        layer_params(params, keys[-1]), caches.layers[-1], dZL, spec.precision, n > 1 or input_grad
    )
    out.extend(_named(products, keys[-1]))
    for k in range(n - 2, -1, -1):
        dA = dA_prev
        assert dA is not None
        D = caches.masks[k]
        if D is not None:
            dA = apply_dropout(dA, D, spec.keep_prob)
        dA_prev, products = spec.layers[k].backward(
            layer_params(params, keys[k]), caches.layers[k], dA, spec.precision, k > 0 or input_grad
        )
        out.extend(_named(products, keys[k]))
    products_first_to_last = tuple(reversed(out))
    if input_grad:
        assert dA_prev is not None
        return products_first_to_last, dA_prev
    return products_first_to_last


def _named(products: Sequence[Product], keys: Mapping[str, str]) -> list[Product]:
    """The layer's products with the params' keys as names, last product first."""
    named = [
        p._replace(weight=keys[p.weight], bias=None if p.bias is None else keys[p.bias])
        for p in products
    ]
    return named[::-1]


def products_of(
    params: Mapping[str, Array], caches: Caches, dZL: Array, spec: Spec
) -> tuple[Product, ...]:
    """:func:`chain` without the input gradient: the products alone."""
    return chain(params, caches, dZL, spec)  # type: ignore[return-value]


def chain_with_input_grad(
    params: Mapping[str, Array], caches: Caches, dZL: Array, spec: Spec
) -> tuple[tuple[Product, ...], Array]:
    """:func:`chain` and dA[0] = ∂L_i/∂X, the input gradient (formula (4) at layer 1)."""
    return chain(params, caches, dZL, spec, input_grad=True)  # type: ignore[return-value]


def backward_pass(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    spec: Spec,
    masks: Sequence[Any] | None = None,
) -> Pass:
    """The forward pass, dZ[L] of the loss and the chain: the caches and every product."""
    _, caches = forward(params, X, spec, masks)
    return Pass(caches, products_of(params, caches, output_dZ(caches, Y, spec), spec))


def product_grads(
    product: Product,
    params: Mapping[str, Array],
    *,
    m: int | float | Array,
    precision: str,
    weights: Array | None = None,
) -> Params:
    """Formula (2) for one product: dW = (1/m) Σ_i Σ_t dz_t(i) a_t(i)ᵀ, db = (1/m) Σ_{i,t} dz_t(i).

    Shapes: A (d_in, T, m), dZ (d_out, T, m) -> dW reshaped to W's shape, db to b's.
    With `weights` s (m,), column i of dZ is scaled by s_i first: (1/m) Σ_i s_i g_i (clipping,
    masks). Each product kind writes (2) once, as its `grads` method
    (:mod:`manualgrad._core.products`; a dense layer's are
    :func:`manualgrad._core.dense.weight_grad` and `bias_grad` on the (d, T·m) columns).
    """
    return product.grads(params, m=m, precision=precision, weights=weights)  # (2)


def grads_from_products(
    params: Mapping[str, Array],
    products: Sequence[Product],
    *,
    m: int | float | Array,
    precision: str,
    weights: Array | None = None,
) -> Params:
    """Formula (2) for every product: dW = (1/m) dZ Aᵀ summed over positions, db = (1/m) Σ dZ.

    For the products of a chain that has already run. `m` is the normaliser (the batch
    size for ∂C/∂params; the global batch size for one device's shard; q·N for DP-SGD).
    With `weights` s (m,) (or columns of dZ scaled by s_i beforehand) this is
    (1/m) Σ_i s_i g_i. Returns a dict
    with the params' keys, in their order; no L2 term. When only the mean gradient is
    wanted, :func:`mean_grads` gets the same from dZ[L] more cheaply.
    """
    grads: Params = {}
    for product in products:
        grads.update(product_grads(product, params, m=m, precision=precision, weights=weights))
    return {k: grads[k] for k in params}


def mean_grads(
    params: Mapping[str, Array], caches: Caches, dZL: Array, spec: Spec, *, m: int | float | Array
) -> Params:
    """Formula (2) for every layer from dZ[L]: the chain, with the 1/m applied once, to dZ[L].

    The chain (4), (5) is linear in dZ[L], so chain(dZ[L] / m) = chain(dZ[L]) / m layer
    by layer, and :func:`grads_from_products` of it with m = 1 is (2) with the normaliser
    m. Dividing the n_L × m numbers of dZ[L] (the fewest of any layer) spares every layer
    its own elementwise pass over dZ[l] or dW[l]. Use it when every example has the same
    weight 1/m (the gradient of C); to weight examples (clipping) use the products.
    """
    products = products_of(params, caches, dZL / m, spec)  # (2)'s 1/m, once, by linearity
    return grads_from_products(params, products, m=1, precision=spec.precision)  # (2)


# --------------------------------------------------------------------------------------
# L2 and the cost
# --------------------------------------------------------------------------------------


def has_l2(l2: Any) -> bool:
    """False for a concrete λ = 0 (no L2 term is traced at all)."""
    return not (isinstance(l2, int | float) and l2 == 0)


def weight_keys(params: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys the L2 term acts on: every weight ("W…"), no bias."""
    return tuple(k for k in params if k.startswith("W"))


def add_l2_grads(
    grads: Params, params: Mapping[str, Array], l2: Any, m: int | float | Array
) -> Params:
    """dW + (λ/m) W for every weight (biases untouched); `grads` itself when λ is 0."""
    if not has_l2(l2):
        return grads
    weights = set(weight_keys(params))
    return {
        k: g + l2_weight_grad(params[k], l2, m) if k in weights else g for k, g in grads.items()
    }


def example_losses(caches: Caches, Y: Array, spec: Spec) -> Array:
    """L_i for every example, shape (m,), from Z[L] and A[L]; summed over the T positions of a
    sequence output (n_L, T, m)."""
    assert spec.loss is not None, "a Spec made with loss=None has no losses"
    Z, A, _ = output_values(caches, spec)
    losses = spec.loss.per_example(Z, A, Y)
    if losses.ndim > 1:  # a sequence output (n_L, T, m): L_i = Σ_t L(a_t(i), y_t(i))
        losses = jnp.sum(losses, axis=tuple(range(losses.ndim - 1)))
    return losses


def cost(params: Mapping[str, Array], loss_sum: Array, *, m: int | float | Array, l2: Any) -> Array:
    """C = (1/m) Σ_i L_i + (λ/2m) Σ_l ‖W[l]‖_F², from Σ_i L_i."""
    C = loss_sum / m
    if has_l2(l2):
        C = C + l2_cost(params, l2, m)
    return C


def value_and_grad(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    spec: Spec,
    *,
    l2: Any = 0.0,
    key: Array | None = None,
) -> tuple[Array, Params]:
    """(C, ∂C/∂params) on checked inputs: `forward`, then (2) by `mean_grads`, L2 and the cost."""
    m = X.shape[-1]
    _, caches = forward(params, X, spec, dropout_masks(dict(params), X, spec, key))
    C = cost(params, jnp.sum(example_losses(caches, Y, spec)), m=m, l2=l2)
    grads = mean_grads(params, caches, output_dZ(caches, Y, spec), spec, m=m)
    return C, add_l2_grads(grads, params, l2, m)
