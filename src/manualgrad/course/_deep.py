r"""The Deep Learning Specialization's API, in jax.numpy, on top of manualgrad's core.

Course 1 week 4 ("Building your deep neural network: step by step") and course 2
week 1 (regularisation) build an L-layer network from the functions below. Each one
here has the course's name, signature, return values, cache layout and dict keys, so a
notebook can swap them in for its NumPy versions; the arithmetic is manualgrad's core
(:mod:`manualgrad._core.dense`, :mod:`manualgrad._core.activations`, :mod:`manualgrad._core.losses`,
:mod:`manualgrad._core.regularization`), not a second copy.

| course function                                   | returns                   | core       |
|---------------------------------------------------|---------------------------|------------|
| `initialize_parameters_deep(layer_dims)`          | {"W1", "b1", …}           | init       |
| `linear_forward(A, W, b)`                         | Z, (A, W, b)              | Z = WA + b |
| `sigmoid(Z)`, `relu(Z)`                           | A, Z                      | g          |
| `linear_activation_forward(A_prev, W, b, act)`    | A, ((A_prev, W, b), Z)    | Z, g       |
| `L_model_forward(X, parameters)`                  | AL, [cache_1, …, cache_L] | Z, g       |
| `compute_cost(AL, Y)`                             | scalar                    | C          |
| `sigmoid_backward(dA, Z)`, `relu_backward(dA, Z)` | dZ                        | (5)        |
| `linear_backward(dZ, (A_prev, W, b))`             | dA_prev, dW, db           | (2), (4)   |
| `linear_activation_backward(dA, cache, act)`      | dA_prev, dW, db           | (5)(2)(4)  |
| `L_model_backward(AL, Y, caches)`                 | {"dA0"…, "dW1"…, "db1"…}  | dAL, above |
| `update_parameters(parameters, grads, lr)`        | {"W1", "b1", …}           | W − α dW   |
| `compute_cost_with_regularization(A3, Y, p, λ)`   | scalar                    | C + L2     |

Differences from the course, all deliberate:

- **Arrays**: inputs may be NumPy or JAX arrays; outputs are JAX arrays. JAX computes
  in float32 unless float64 is on (`jax.config.update("jax_enable_x64", True)` or
  `with jax.enable_x64(True):`); the course's printed values are float64, so expect
  agreement to about 7 significant digits in float32 and to the last digit in float64.
- **Initialisation**: `initialize_parameters_deep(layer_dims)` with no `key` reproduces
  the course exactly — it draws from NumPy's legacy stream seeded like
  `np.random.seed(3)` (a private `np.random.RandomState(seed)`, so the global NumPy
  state is untouched) and scales by 0.01. A JAX key (`key=jax.random.key(0)`) draws
  from JAX's generator instead (:func:`manualgrad.init_params` with `method="random"`):
  same distribution, different numbers, since NumPy's randn stream cannot be
  reproduced with JAX keys.
- **Cost**: `compute_cost` is the course's formula on AL, −(1/m) Σ [y log a +
  (1 − y) log(1 − a)]. It becomes inf/nan once a sigmoid output saturates to exactly
  0 or 1 (log 0), as the course's does. The core's :func:`manualgrad.cost` works from
  Z[L] instead (softplus(z) − y z) and stays finite; use it outside the course.
- **Backward**: `L_model_backward` starts, as the course does, from
  dAL = −(Y/AL − (1 − Y)/(1 − AL)) and applies sigmoid backward (5). The core's
  :func:`manualgrad.backward` uses the fused, stable dZ[L] = AL − Y instead; both are
  equal wherever AL is not saturated.
- **Activations**: `activation` may be any name of :data:`manualgrad.ACTIVATIONS`
  except softmax, not only "relu" and "sigmoid"; the activation cache is Z, as in
  the course's `dnn_utils`.
- Nothing is modified in place: `update_parameters` returns a new dict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from manualgrad._core import dense
from manualgrad._core import validation as check
from manualgrad._core.activations import ACTIVATIONS, Activation, get_activation
from manualgrad._core.losses import bce_dA, cost_from_losses
from manualgrad._core.regularization import l2_cost
from manualgrad._errors import ConfigError, ShapeError
from manualgrad.course._arrays import as_float
from manualgrad.functional import init_params

Array = jax.Array
LinearCache = tuple[Array, Array, Array]
Cache = tuple[LinearCache, Array]

__all__ = [
    "L_model_backward",
    "L_model_forward",
    "compute_cost",
    "compute_cost_with_regularization",
    "initialize_parameters_deep",
    "linear_activation_backward",
    "linear_activation_forward",
    "linear_backward",
    "linear_forward",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "update_parameters",
]


def _params(parameters: Mapping[str, Any]) -> tuple[dict[str, Array], int]:
    """Check a params dict with the core's rules, convert it to JAX arrays; return (params, L)."""
    parameters = check.as_params(parameters)
    n_layers = check.check_params(parameters)
    return {k: as_float(v) for k, v in parameters.items()}, n_layers


def _labels(Y: Any, AL: Array) -> Array:
    """Y as AL's shape (1, m) and dtype; (m,) is accepted too, as the course's reshape does."""
    Y = as_float(Y, "Y")
    if Y.size != AL.size:
        raise ShapeError(
            f"expected `Y` with one label per column of AL {AL.shape}, got Y.shape = {Y.shape}"
        )
    return jnp.reshape(Y, AL.shape).astype(AL.dtype)


def _activation(name: str) -> Activation:
    act = get_activation(name)
    if act.derivative is None:
        raise ConfigError(
            f"`activation` {name!r} has no elementwise derivative; the course's layers use "
            f"'relu' or 'sigmoid' (valid here: {sorted(n for n in ACTIVATIONS if n != 'softmax')})"
        )
    return act


# ---------------------------------------------------------------------------- initialisation


def initialize_parameters_deep(
    layer_dims: Sequence[int], key: Array | None = None, seed: int = 3, dtype: Any = None
) -> dict[str, Array]:
    """W[l] = randn(n_l, n_{l-1}) · 0.01 and b[l] = zeros(n_l, 1), for l = 1 … L.

    `layer_dims` is [n_x, n_1, …, n_L]. Without `key`, the numbers are the course's:
    NumPy's legacy stream seeded with `seed` (the course's `np.random.seed(3)`), drawn
    layer by layer in the course's order. With a `jax.random.key`, JAX's generator is
    used (:func:`manualgrad.init_params`, method "random"). `dtype` defaults to JAX's
    default float (float32, or float64 when x64 is on).
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    if key is not None:
        return init_params(list(layer_dims), key, method="random", dtype=dtype)
    dims = list(layer_dims)
    if len(dims) < 2 or any(not isinstance(n, int | np.integer) or n < 1 for n in dims):
        raise ShapeError(
            f"`layer_dims` must be [n_x, n_1, …, n_L] with at least two positive ints, got {dims}"
        )
    rng = np.random.RandomState(seed)  # the stream np.random.seed(seed) starts
    params: dict[str, Array] = {}
    for l in range(1, len(dims)):
        params[f"W{l}"] = jnp.asarray(rng.randn(dims[l], dims[l - 1]) * 0.01, dtype)
        params[f"b{l}"] = jnp.zeros((dims[l], 1), dtype)
    return params


# ----------------------------------------------------------------------------------- forward


def linear_forward(A: Array, W: Array, b: Array) -> tuple[Array, LinearCache]:
    """Z = W A + b, and the cache (A, W, b).

    Shapes: A (n_{l-1}, m), W (n_l, n_{l-1}), b (n_l, 1) -> Z (n_l, m).
    """
    A, W, b = as_float(A), as_float(W), as_float(b)
    if A.ndim != 2 or W.ndim != 2 or W.shape[1] != A.shape[0] or b.shape != (W.shape[0], 1):
        raise ShapeError(
            "expected A (n_prev, m), W (n, n_prev), b (n, 1) with matching n_prev and n, got "
            f"A {A.shape}, W {W.shape}, b {b.shape} — examples must be columns of A"
        )
    return dense.linear_forward(W, b, A), (A, W, b)


def sigmoid(Z: Array) -> tuple[Array, Array]:
    """A = 1 / (1 + e^{−Z}), and the cache Z."""
    Z = as_float(Z)
    return ACTIVATIONS["sigmoid"].forward(Z), Z


def relu(Z: Array) -> tuple[Array, Array]:
    """A = max(Z, 0), and the cache Z."""
    Z = as_float(Z)
    return ACTIVATIONS["relu"].forward(Z), Z


def linear_activation_forward(
    A_prev: Array, W: Array, b: Array, activation: str
) -> tuple[Array, Cache]:
    """A = g(W A_prev + b), and the cache (linear_cache, activation_cache) = ((A_prev, W, b), Z).

    `activation` is "relu" or "sigmoid" (or another elementwise name of
    :data:`manualgrad.ACTIVATIONS`). Shapes as :func:`linear_forward`; A is (n_l, m).
    """
    act = _activation(activation)
    Z, linear_cache = linear_forward(A_prev, W, b)
    return act.forward(Z), (linear_cache, Z)


def L_model_forward(X: Array, parameters: Mapping[str, Array]) -> tuple[Array, list[Cache]]:
    """[LINEAR -> RELU] × (L−1) -> LINEAR -> SIGMOID, and the list of the L caches.

    X: (n_x, m) -> AL: (1, m) (or (n_L, m)); caches[l-1] is layer l's
    ((A[l-1], W[l], b[l]), Z[l]).
    """
    params, n_layers = _params(parameters)
    A = as_float(X, "X")
    check.check_X(params, A)
    caches = []
    for l in range(1, n_layers + 1):
        activation = "relu" if l < n_layers else "sigmoid"
        A, cache = linear_activation_forward(A, params[f"W{l}"], params[f"b{l}"], activation)
        caches.append(cache)
    return A, caches


# -------------------------------------------------------------------------------------- cost


def compute_cost(AL: Array, Y: Array) -> Array:
    """The course's cross-entropy on AL: −(1/m) Σ_i [y log a + (1 − y) log(1 − a)], a scalar.

    AL, Y: (1, m). Infinite (or nan) when some a is exactly 0 or 1; the core's
    :func:`manualgrad.cost` evaluates the same cost from Z[L] without log 0.
    """
    AL = as_float(AL)
    Y = _labels(Y, AL)
    losses = -jnp.sum(Y * jnp.log(AL) + (1 - Y) * jnp.log(1 - AL), axis=0)  # course's form on AL
    return cost_from_losses(losses)


def compute_cost_with_regularization(
    A3: Array, Y: Array, parameters: Mapping[str, Array], lambd: float
) -> Array:
    """compute_cost(A3, Y) + (λ / 2m) Σ_l ‖W[l]‖_F², over all L layers of `parameters`.

    The course (course 2 week 1) wrote it for three layers; this sums every W[l].
    A3, Y: (1, m).
    """
    params, _ = _params(parameters)
    m = jnp.shape(A3)[-1]
    return compute_cost(A3, Y) + l2_cost(params, lambd, m)


# ---------------------------------------------------------------------------------- backward


def _backward_through(dA: Array, Z: Array, act: Activation) -> Array:
    """Formula (5): dZ = dA ⊙ g'(Z), with A recomputed from the cached Z."""
    return dense.activation_backward(as_float(dA), Z, act.forward(Z), act)


def sigmoid_backward(dA: Array, cache: Array) -> Array:
    """dZ = dA ⊙ σ(Z)(1 − σ(Z)), where cache = Z (formula (5))."""
    return _backward_through(dA, as_float(cache), ACTIVATIONS["sigmoid"])


def relu_backward(dA: Array, cache: Array) -> Array:
    """dZ = dA where Z > 0 and 0 elsewhere (g'(0) = 0), where cache = Z (formula (5))."""
    return _backward_through(dA, as_float(cache), ACTIVATIONS["relu"])


def linear_backward(dZ: Array, cache: LinearCache) -> tuple[Array, Array, Array]:
    """(dA_prev, dW, db) from dZ and the cache (A_prev, W, b): formulas (4) and (2).

    Shapes: dZ (n_l, m) -> dA_prev (n_{l-1}, m), dW (n_l, n_{l-1}), db (n_l, 1).
    """
    A_prev, W, _ = cache
    dW, db, dA_prev = dense.linear_backward(as_float(dZ), as_float(A_prev), as_float(W))
    return dA_prev, dW, db


def linear_activation_backward(
    dA: Array, cache: Cache, activation: str
) -> tuple[Array, Array, Array]:
    """(dA_prev, dW, db) for a LINEAR -> ACTIVATION layer: (5), then (2) and (4)."""
    linear_cache, activation_cache = cache
    dZ = _backward_through(dA, as_float(activation_cache), _activation(activation))
    return linear_backward(dZ, linear_cache)


def L_model_backward(AL: Array, Y: Array, caches: Sequence[Cache]) -> dict[str, Array]:
    """Gradients of the course's cost for [LINEAR -> RELU] × (L−1) -> LINEAR -> SIGMOID.

    Starts from the course's dAL = −(Y/AL − (1 − Y)/(1 − AL)), then sigmoid backward
    for layer L and relu backward below. Returns exactly the keys "dA0" … "dA{L-1}",
    "dW1" … "dWL" and "db1" … "dbL" (dA0 is the gradient with respect to X).
    """
    n_layers = len(caches)
    AL = as_float(AL)
    Y = _labels(Y, AL)
    dA = bce_dA(AL, Y)  # the course's dAL
    grads: dict[str, Array] = {}
    for l in range(n_layers, 0, -1):
        activation = "sigmoid" if l == n_layers else "relu"
        dA, grads[f"dW{l}"], grads[f"db{l}"] = linear_activation_backward(
            dA, caches[l - 1], activation
        )
        grads[f"dA{l - 1}"] = dA
    return grads


def update_parameters(
    parameters: Mapping[str, Array], grads: Mapping[str, Array], learning_rate: float
) -> dict[str, Array]:
    """One gradient-descent step W[l] := W[l] − α dW[l], b[l] := b[l] − α db[l], as a new dict.

    `grads` needs "dW1", "db1", … (extra keys such as "dA0" are ignored).
    """
    params, _ = _params(parameters)
    missing = sorted(f"d{k}" for k in params if f"d{k}" not in grads)
    if missing:
        raise ShapeError(
            f"`grads` is missing {missing}: expected 'dW1', 'db1', … for every parameter, "
            f"got keys {sorted(grads)} — pass the dict L_model_backward returns"
        )
    return {k: p - learning_rate * as_float(grads[f"d{k}"]) for k, p in params.items()}
