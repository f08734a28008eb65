r"""The functional names of a dense network, each a one-line shim over :func:`manualgrad.network`.

Params are a dict {"W1", "b1", …, "WL", "bL"} with W[l] of shape (n_l, n_{l-1}) and
b[l] of shape (n_l, 1); X is (n_x, m) and Y is (n_L, m), examples as columns.
`activations` names one activation per layer. The cost is

    C = (1/m) Σ_i L(a[L](i), y(i))  [+ (λ/2m) Σ_l ‖W[l]‖_F²],

and `value_and_grad` returns ∂C/∂params with the params' keys and shapes, chaining
from layer L down to 1:

    dZ[L]   = A[L] − Y (fused) or dA[L] ⊙ g[L]'(Z[L])     (5)
    dW, db  = (1/m) dZ[l] A[l-1]ᵀ, (1/m) Σ_i dZ[l](i)      (2)
    dA[l-1] = W[l]ᵀ dZ[l]                                  (4)
    dZ[l-1] = dA[l-1] ⊙ g[l-1]'(Z[l-1])                    (5), so (4)+(5) = (3)

Each function builds `mg.network(activations, loss, …)` and calls its function: the
same code, the same numbers. To jit, build the network once and jit its functions
(`jax.jit(mg.network(["relu", "sigmoid"]).value_and_grad)`); these shims take names,
which `jax.jit` cannot trace. λ (`l2`) may be traced here.

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
from typing import Any

import jax
import jax.numpy as jnp

from manualgrad._core.engine import Caches
from manualgrad._network import Network, network, with_l2

Array = jax.Array
Params = dict[str, Array]

#: the init methods of dense layers
INIT_METHODS = ("he", "xavier", "random", "zeros")

__all__ = [
    "INIT_METHODS",
    "Caches",
    "backward",
    "clipped_grads",
    "cost",
    "dp_grads",
    "forward",
    "init_params",
    "per_example_grads",
    "per_example_norms",
    "predict",
    "value_and_grad",
]


def _net(
    activations: Sequence[str],
    loss: str = "bce",
    l2: Any = 0.0,
    keep_prob: float = 1.0,
    precision: str = "default",
) -> Network:
    """The dense network of `activations`; λ may be a traced value."""
    net = network(activations, loss, keep_prob=keep_prob, precision=precision)
    return net if isinstance(l2, int | float) and l2 == 0 else with_l2(net, l2)


def init_params(
    layer_dims: Sequence[int], key: Array, method: str = "he", dtype: Any = jnp.float32
) -> Params:
    """W[l] ~ N(0, s²) of shape (n_l, n_{l-1}), b[l] = 0 of shape (n_l, 1) for `layer_dims`.

    | method     | s                          |
    |------------|----------------------------|
    | `"he"`     | sqrt(2 / n_{l-1})          |
    | `"xavier"` | sqrt(1 / n_{l-1}) (course) |
    | `"random"` | 0.01 (course's randn·0.01) |
    | `"zeros"`  | 0 (W too: for demonstrations of symmetry) |

    `layer_dims` is [n_x, n_1, …, n_L]; `key` a `jax.random.key`. The same params as
    `mg.network([...]).init(layer_dims, key, method)`.
    """
    n = max(len(layer_dims) - 1, 1) if isinstance(layer_dims, Sequence) else 1
    return network(["linear"] * n, "mse").init(layer_dims, key, method, dtype)


def forward(
    params: Mapping[str, Array],
    X: Array,
    *,
    activations: Sequence[str],
    keep_prob: float = 1.0,
    key: Array | None = None,
    precision: str = "default",
) -> tuple[Array, Caches]:
    """(A[L], caches) of `mg.network(activations).forward`: X (n_x, m) -> A[L] (n_L, m)."""
    return _net(activations, "mse", keep_prob=keep_prob, precision=precision).forward(
        params, X, key
    )


def backward(
    params: Mapping[str, Array],
    caches: Caches,
    Y: Array,
    *,
    activations: Sequence[str],
    loss: str = "bce",
    l2: float | Array = 0.0,
    keep_prob: float = 1.0,
    precision: str = "default",
) -> Params:
    """∂C/∂params from `forward`'s caches, by formulas (5), (2), (4) from layer L down to 1."""
    return _net(activations, loss, l2, keep_prob, precision).backward(params, caches, Y)


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
    """C = (1/m) Σ_i L(a[L](i), y(i)) + (λ/2m) Σ_l ‖W[l]‖_F², a scalar (`net.cost`)."""
    return _net(activations, loss, l2, keep_prob, precision).cost(params, X, Y, key)


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
    """(C, ∂C/∂params): one forward pass and the hand-written backward (`net.value_and_grad`)."""
    return _net(activations, loss, l2, keep_prob, precision).value_and_grad(params, X, Y, key)


def predict(
    params: Mapping[str, Array],
    X: Array,
    *,
    activations: Sequence[str],
    precision: str = "default",
) -> Array:
    """Class predictions (1, m): A[L] > 0.5 for one output unit, argmax otherwise."""
    return _net(activations, "mse", precision=precision).predict(params, X)


def per_example_grads(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    *,
    activations: Sequence[str],
    loss: str = "bce",
    keep_prob: float = 1.0,
    key: Array | None = None,
    precision: str = "default",
) -> Params:
    """g_i = ∂L_i/∂params, (m, *shape) per key (`manualgrad.per_example.per_example_grads`)."""
    net = _net(activations, loss, keep_prob=keep_prob, precision=precision)
    return net.per_example_grads(params, X, Y, key)


def per_example_norms(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    *,
    activations: Sequence[str],
    loss: str = "bce",
    keep_prob: float = 1.0,
    key: Array | None = None,
    precision: str = "default",
) -> Array:
    """‖g_i‖, (m,) (:func:`manualgrad.per_example.per_example_norms`)."""
    net = _net(activations, loss, keep_prob=keep_prob, precision=precision)
    return net.per_example_norms(params, X, Y, key)


def clipped_grads(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    *,
    clip_norm: float | Array,
    activations: Sequence[str],
    loss: str = "bce",
    l2: float | Array = 0.0,
    keep_prob: float = 1.0,
    key: Array | None = None,
    precision: str = "default",
) -> Params:
    """(1/m) Σ_i min(1, C/‖g_i‖) g_i [+ (λ/m) W] (:func:`manualgrad.per_example.clipped_grads`)."""
    net = _net(activations, loss, l2, keep_prob, precision)
    return net.clipped_grads(params, X, Y, clip_norm, key)


def dp_grads(
    params: Mapping[str, Array],
    X: Array,
    Y: Array,
    *,
    noise_key: Array,
    clip_norm: float | Array,
    noise_multiplier: float | Array,
    normaliser: float | Array | None = None,
    activations: Sequence[str],
    loss: str = "bce",
    l2: float | Array = 0.0,
    keep_prob: float = 1.0,
    key: Array | None = None,
    precision: str = "default",
) -> Params:
    """The DP-SGD gradient (:func:`manualgrad.per_example.dp_grads`)."""
    net = _net(activations, loss, l2, keep_prob, precision)
    return net.dp_grads(params, X, Y, noise_key, clip_norm, noise_multiplier, key, normaliser)
