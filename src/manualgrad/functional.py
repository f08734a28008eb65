r"""The functional API: init, forward, the hand-written backward, cost, value_and_grad, predict.

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

These are the primitives: every function takes the options as keywords. To jit them,
bind the options once with :func:`manualgrad.network`, whose functions take only
arrays (`jax.jit(mg.network(("relu", "sigmoid")).value_and_grad)`); or mark
`activations`, `loss`, `keep_prob` and `precision` static (:data:`STATIC_ARGNAMES`).
The pass itself is :mod:`manualgrad._core.engine`'s.

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
from typing import Any, Unpack

import jax
import jax.numpy as jnp

from manualgrad._core import engine
from manualgrad._core.engine import LayerCache, Options, check
from manualgrad._errors import ConfigError

Array = jax.Array
Params = dict[str, Array]

#: The keywords to mark static when jitting the functional API directly.
STATIC_ARGNAMES = ("activations", "loss", "keep_prob", "precision")

INIT_METHODS = ("he", "xavier", "random", "zeros")

__all__ = [
    "INIT_METHODS",
    "STATIC_ARGNAMES",
    "LayerCache",
    "Options",
    "backward",
    "cost",
    "forward",
    "init_params",
    "predict",
    "value_and_grad",
]


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
    (:func:`manualgrad._core.regularization.dropout_masks`).
    """
    params, spec = engine.spec_for(
        params, activations, None, keep_prob=keep_prob, precision=precision
    )
    X, m = engine.check_features(params, X, spec, key=key)
    return engine.forward(params, X, spec, engine.dropout_masks(params, m, spec, key))


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
    params, spec = engine.spec_for(
        params, activations, loss, keep_prob=keep_prob, precision=precision
    )
    check.check_caches(caches, spec.n_layers)
    _, Y, m = engine.check_inputs(params, caches[0].A_prev, Y, spec, l2=l2, needs_key=False)
    Y = Y.astype(caches[-1].A.dtype)
    grads = engine.mean_grads(params, caches, engine.output_dZ(caches, Y, spec), spec, m=m)
    return engine.add_l2_grads(grads, params, l2, m)


def cost(params: Mapping[str, Array], X: Array, Y: Array, **options: Unpack[Options]) -> Array:
    """C = (1/m) Σ_i L(a[L](i), y(i)) + (λ/2m) Σ_l ‖W[l]‖_F², a scalar.

    This is the function whose `jax.grad` the hand-written backward must equal.
    Options as for :func:`value_and_grad`.
    """
    params, X, Y, spec, l2, key = engine.checked_options(params, X, Y, options, function="cost")
    m = X.shape[1]
    _, caches = engine.forward(params, X, spec, engine.dropout_masks(params, m, spec, key))
    return engine.cost(params, jnp.sum(engine.example_losses(caches, Y, spec)), m=m, l2=l2)


def value_and_grad(
    params: Mapping[str, Array], X: Array, Y: Array, **options: Unpack[Options]
) -> tuple[Array, Params]:
    """(C, ∂C/∂params): one forward pass and the hand-written backward pass.

    Shapes: X (n_x, m), Y (n_L, m); grads have the params' keys and shapes. The
    options (`activations` required; `loss`, `l2`, `keep_prob`, `key`, `precision`)
    are those of :class:`Options`. To jit, bind the options with :func:`manualgrad.network`, or mark
    :data:`STATIC_ARGNAMES` static.
    """
    params, X, Y, spec, l2, key = engine.checked_options(
        params, X, Y, options, function="value_and_grad"
    )
    return engine.value_and_grad(params, X, Y, spec, l2=l2, key=key)


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
