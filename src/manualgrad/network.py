r"""The L-layer dense network: init, forward, the hand-written backward, value_and_grad.

Params are a dict {"W1", "b1", …, "WL", "bL"} with W[l] of shape (n_l, n_{l-1}) and
b[l] of shape (n_l, 1); X is (n_x, m) and Y is (n_L, m), examples as columns.
`activations` is a tuple of names, one per layer. The cost is

    C = (1/m) Σ_i L(a[L](i), y(i))  [+ (λ/2m) Σ_l ‖W[l]‖_F²],

and `backward` returns ∂C/∂params with the params' keys and shapes, chaining from
layer L down to 1:

    dZ[L]   = A[L] − Y (fused) or dA[L] ⊙ g[L]'(Z[L])     (5)
    dW, db  = (1/m) dZ[l] A[l-1]ᵀ, (1/m) Σ_i dZ[l](i)      (2)
    dA[l-1] = W[l]ᵀ dZ[l]                                  (4)
    dZ[l-1] = dA[l-1] ⊙ g[l-1]'(Z[l-1])                    (5), so (4)+(5) = (3)

All functions are pure and jit-compatible with `activations`, `loss`, `keep_prob`
and `precision` static (:data:`STATIC_ARGNAMES`); a jitted `value_and_grad` does not
retrace for new inputs of the same shapes.

>>> import jax, jax.numpy as jnp, manualgrad as mg
>>> params = mg.init_params([2, 4, 1], jax.random.key(0))
>>> X = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
>>> Y = jnp.array([[1.0, 0.0, 1.0]])
>>> cost, grads = mg.value_and_grad(params, X, Y, activations=("relu", "sigmoid"))
>>> sorted(grads) == sorted(params)
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from manualgrad import _validation as check
from manualgrad._errors import ConfigError
from manualgrad.dense import (
    activation_backward,
    bias_grad,
    linear_forward,
    output_backward,
    prev_activation_grad,
    weight_grad,
)
from manualgrad.losses import cost_from_losses
from manualgrad.regularization import apply_dropout, dropout_masks, l2_cost, l2_weight_grad

Array = jax.Array
Params = dict[str, Array]

#: The arguments to mark static when jitting `forward`, `backward`, `cost` or `value_and_grad`.
STATIC_ARGNAMES = ("activations", "loss", "keep_prob", "precision")

INIT_METHODS = ("he", "xavier", "random", "zeros")


class LayerCache(NamedTuple):
    """What layer l's backward needs from its forward.

    A_prev: (n_{l-1}, m), the input the layer multiplied (after dropout, if any);
    Z: (n_l, m); A: (n_l, m), g(Z) before dropout; D: (n_l, m) boolean dropout mask
    of A[l], or None when layer l has no dropout.
    """

    A_prev: Array
    Z: Array
    A: Array
    D: Array | None


def init_params(
    layer_dims: Sequence[int], key: Array, method: str = "he", dtype: Any = jnp.float32
) -> Params:
    """Initialise W[l] ~ N(0, s²) of shape (n_l, n_{l-1}) and b[l] = 0 of shape (n_l, 1).

    | method     | s                          |
    |------------|----------------------------|
    | `"he"`     | sqrt(2 / n_{l-1})          |
    | `"xavier"` | sqrt(1 / n_{l-1}) (course) |
    | `"random"` | 0.01 (course's randn·0.01) |
    | `"zeros"`  | 0 (W too; breaks symmetry never — for demonstrations) |

    `layer_dims` is [n_x, n_1, …, n_L]; `key` a `jax.random.key`.
    """
    dims = check.check_init(layer_dims, key, dtype)
    if method not in INIT_METHODS:
        raise ConfigError(f"unknown init method {method!r}; expected one of {list(INIT_METHODS)}")
    keys = jax.random.split(key, len(dims) - 1)
    params: Params = {}
    for l in range(1, len(dims)):
        n_prev, n = dims[l - 1], dims[l]
        scale = {
            "he": (2 / n_prev) ** 0.5,
            "xavier": (1 / n_prev) ** 0.5,
            "random": 0.01,
            "zeros": 0.0,
        }[method]
        params[f"W{l}"] = jax.random.normal(keys[l - 1], (n, n_prev), dtype) * scale
        params[f"b{l}"] = jnp.zeros((n, 1), dtype)
    return params


def _validate(params, X, activations, *, keep_prob=1.0, key=None, l2=0.0, precision="default"):
    n_layers = check.check_params(params)
    acts = check.check_activations(activations, n_layers)
    m = check.check_X(params, X)
    check.check_options(
        l2=l2, keep_prob=keep_prob, key=key, precision=precision, dtype=check.params_dtype(params)
    )
    return n_layers, acts, m


def _hidden_dropout_masks(params, m, n_layers, keep_prob, key):
    """The masks of a batch of m examples: one (n_l, m) per hidden layer, or all None.

    The one rule for which masks a batch gets, shared by `_forward` and the per-example
    functions so that both see the same dropout.
    """
    if keep_prob == 1 or n_layers == 1:
        return [None] * (n_layers - 1)
    shapes = [(params[f"W{l}"].shape[0], m) for l in range(1, n_layers)]
    return dropout_masks(key, shapes, keep_prob)


def _forward(params, X, acts, keep_prob, key, precision):
    n_layers = len(acts)
    masks = _hidden_dropout_masks(params, X.shape[1], n_layers, keep_prob, key)
    caches = []
    A = X
    for l, act in enumerate(acts, start=1):
        Z = linear_forward(params[f"W{l}"], params[f"b{l}"], A, precision=precision)
        A_l = act.forward(Z)
        D = masks[l - 1] if l < n_layers else None
        caches.append(LayerCache(A_prev=A, Z=Z, A=A_l, D=D))
        A = A_l if D is None else apply_dropout(A_l, D, keep_prob)
    return A, tuple(caches)


def forward(
    params: Mapping[str, Array],
    X: Array,
    *,
    activations: Sequence[str],
    keep_prob: float = 1.0,
    key: Array | None = None,
    precision: str = "default",
) -> tuple[Array, tuple[LayerCache, ...]]:
    """A[L] and the caches: Z[l] = W[l] A[l-1] + b[l], A[l] = g[l](Z[l]) for l = 1 … L.

    X: (n_x, m) -> A[L]: (n_L, m). With keep_prob < 1, inverted dropout is applied to
    the hidden layers' activations with masks drawn from `key`
    (:func:`manualgrad.regularization.dropout_masks`).
    """
    params = check.as_params(params)
    X = check.as_array("X", X)
    _, acts, _ = _validate(
        params, X, activations, keep_prob=keep_prob, key=key, precision=precision
    )
    return _forward(params, X, acts, keep_prob, key, precision)


def _backward_dZ(params, caches, Y, acts, loss_spec, keep_prob, precision, scale=None):
    """(dZ[1], …, dZ[L]), each (n_l, m): derivatives of each example's loss L, no 1/m.

    The backward chain written once: dZ[L] from the output, then (4) and (5) down to
    layer 1. Column i of every dZ[l] depends on example i alone, and linearly on its
    dZ[L](i), which is what lets :mod:`manualgrad.per_example` rescale columns. With
    `scale` (the network backward passes 1/m) dZ[L] is multiplied by it, and by that
    linearity so is every dZ[l].
    """
    last = caches[-1]
    dZ = output_backward(last.Z, last.A, Y, acts[-1], loss_spec)
    if scale is not None:
        dZ = dZ * scale
    dZs = [dZ]
    for l in range(len(acts), 1, -1):
        prev = caches[l - 2]
        dA_prev = prev_activation_grad(params[f"W{l}"], dZ, precision=precision)  # (4)
        if prev.D is not None:
            dA_prev = apply_dropout(dA_prev, prev.D, keep_prob)
        dZ = activation_backward(dA_prev, prev.Z, prev.A, acts[l - 2])  # (5); (4)+(5) = (3)
        dZs.append(dZ)
    return tuple(reversed(dZs))


def _grads_from_dZ(params, caches, dZs, l2, m, precision, dZ_has_1_over_m=False):
    """Formula (2) on each layer's dZ[l] and A[l-1], plus (λ/m) W[l] when l2 > 0.

    With `dZ_has_1_over_m` the dZs came from `_backward_dZ(..., scale=1/m)` and (2)'s
    1/m is already in them.
    """
    m_of_2 = 1 if dZ_has_1_over_m else None
    grads: Params = {}
    for l, (cache, dZ) in enumerate(zip(caches, dZs, strict=True), start=1):
        dW = weight_grad(dZ, cache.A_prev, precision=precision, m=m_of_2)  # (2)
        if not (isinstance(l2, int | float) and l2 == 0):
            dW = dW + l2_weight_grad(params[f"W{l}"], l2, m)
        grads[f"W{l}"], grads[f"b{l}"] = dW, bias_grad(dZ, m=m_of_2)  # (2)
    return {k: grads[k] for k in params}


def _backward(params, caches, Y, acts, loss_spec, l2, keep_prob, precision):
    """∂C/∂params. The 1/m of (2) is applied once, to dZ[L] (fused into A[L] − Y): (4)
    and (5) are linear, so every dZ[l] then carries it and (2) needs no pass of its own
    over each dW[l] and db[l] — the same numbers, as fast as jax.grad's step."""
    m = Y.shape[1]
    dZs = _backward_dZ(params, caches, Y, acts, loss_spec, keep_prob, precision, scale=1 / m)
    return _grads_from_dZ(params, caches, dZs, l2, m, precision, dZ_has_1_over_m=True)


def backward(
    params: Mapping[str, Array],
    caches: Sequence[LayerCache],
    Y: Array,
    *,
    activations: Sequence[str],
    loss: str = "bce",
    l2: float | Array = 0.0,
    keep_prob: float = 1.0,
    precision: str = "default",
) -> Params:
    """∂C/∂params from the forward caches, by formulas (5), (2), (4) from layer L down to 1.

    Y: (n_L, m). Returns a dict with exactly the params' keys and shapes, so
    `optax.apply_updates(params, updates)` takes it directly. With l2 > 0 each dW[l]
    gets (λ/m) W[l]; with dropout, dA[l] is masked by the forward's D[l] / keep_prob.
    """
    params = check.as_params(params)
    n_layers = check.check_params(params)
    acts = check.check_activations(activations, n_layers)
    check.check_caches(caches, n_layers)
    loss_spec = check.check_loss(loss, acts[-1])
    m = check.check_X(params, caches[0].A_prev)
    check.check_options(
        l2=l2,
        keep_prob=keep_prob,
        key=None if keep_prob == 1 else True,
        precision=precision,
        dtype=check.params_dtype(params),
    )
    Y = check.as_array("Y", Y)
    check.check_Y(params, Y, m)
    Y = Y.astype(caches[-1].A.dtype)
    return _backward(params, caches, Y, acts, loss_spec, l2, keep_prob, precision)


def _cost_from_caches(params, caches, Y, loss_spec, l2):
    last = caches[-1]
    m = Y.shape[1]
    C = cost_from_losses(loss_spec.per_example(last.Z, last.A, Y))
    if not (isinstance(l2, int | float) and l2 == 0):
        C = C + l2_cost(params, l2, m)
    return C


def _prepare(params, X, Y, activations, loss, l2, keep_prob, key, precision):
    X = check.as_array("X", X)
    _, acts, m = _validate(
        params, X, activations, keep_prob=keep_prob, key=key, l2=l2, precision=precision
    )
    loss_spec = check.check_loss(loss, acts[-1])
    Y = check.as_array("Y", Y)
    check.check_Y(params, Y, m)
    return X, Y.astype(X.dtype), acts, loss_spec


def cost(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    *,
    activations: Sequence[str],
    loss: str = "bce",
    l2: float | Array = 0.0,
    keep_prob: float = 1.0,
    key: Array | None = None,
    precision: str = "default",
) -> Array:
    """C = (1/m) Σ_i L(a[L](i), y(i)) + (λ/2m) Σ_l ‖W[l]‖_F², a scalar.

    This is the function whose `jax.grad` the hand-written backward must equal.
    """
    params = check.as_params(params)
    X, Y, acts, loss_spec = _prepare(params, X, Y, activations, loss, l2, keep_prob, key, precision)
    _, caches = _forward(params, X, acts, keep_prob, key, precision)
    return _cost_from_caches(params, caches, Y, loss_spec, l2)


def value_and_grad(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    *,
    activations: Sequence[str],
    loss: str = "bce",
    l2: float | Array = 0.0,
    keep_prob: float = 1.0,
    key: Array | None = None,
    precision: str = "default",
) -> tuple[Array, Params]:
    """(C, ∂C/∂params): one forward pass and the hand-written backward pass.

    Shapes: X (n_x, m), Y (n_L, m); grads have the params' keys and shapes.
    `loss` is "bce" (sigmoid output), "ce" (softmax output, one-hot Y) or "mse";
    `l2` is λ; `keep_prob` < 1 turns on inverted dropout on hidden layers, with masks
    from `key`; `precision` is a policy of :mod:`manualgrad.precision`.
    """
    params = check.as_params(params)
    X, Y, acts, loss_spec = _prepare(params, X, Y, activations, loss, l2, keep_prob, key, precision)
    _, caches = _forward(params, X, acts, keep_prob, key, precision)
    C = _cost_from_caches(params, caches, Y, loss_spec, l2)
    grads = _backward(params, caches, Y, acts, loss_spec, l2, keep_prob, precision)
    return C, grads


def predict(
    params: Mapping[str, Array],
    X: Array,
    *,
    activations: Sequence[str],
    precision: str = "default",
) -> Array:
    """Class predictions of shape (1, m): A[L] > 0.5 for one output unit, argmax otherwise."""
    AL, _ = forward(params, X, activations=activations, precision=precision)
    if AL.shape[0] == 1:
        return (AL > 0.5).astype(jnp.int32)
    return jnp.argmax(AL, axis=0)[None, :].astype(jnp.int32)
