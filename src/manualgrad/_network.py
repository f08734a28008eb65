r"""`mg.network`: bind a network's static options once, get pure jit-ready functions.

The optax/stax pattern: a constructor takes what is fixed for a model (the
activations, the loss, λ, the dropout rate, the precision policy) and returns a
NamedTuple of pure functions of arrays alone. Nothing needs `static_argnames`, a
list of activations works, and each function is the functional API's with the
options filled in:

    net = mg.network(["relu", "relu", "sigmoid"], "bce", l2=0.01)
    params = net.init([n_x, 20, 7, 1], jax.random.key(0))
    step = jax.jit(net.value_and_grad)
    C, grads = step(params, X, Y)

Names and options are checked when the network is built; shapes and dtypes at
trace time, as everywhere else.

>>> import jax, jax.numpy as jnp, manualgrad as mg
>>> net = mg.network(["relu", "sigmoid"])
>>> params = net.init([2, 4, 1], jax.random.key(0))
>>> X = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
>>> Y = jnp.array([[1.0, 0.0, 1.0]])
>>> C, grads = jax.jit(net.value_and_grad)(params, X, Y)
>>> sorted(grads) == sorted(params), C.shape
(True, ())
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax.numpy as jnp

from manualgrad import curvature, functional, per_example
from manualgrad._bridge import custom_vjp_cost
from manualgrad._core import engine
from manualgrad._core.engine import check
from manualgrad._errors import ConfigError

__all__ = ["Network", "network"]


class Network(NamedTuple):
    """The functions of one network, its static options bound (see :func:`network`).

    | field               | arguments (all arrays)                   | binds                 |
    |---------------------|------------------------------------------|-----------------------|
    | `init`              | layer_dims, key, method="he", dtype      | `init_params`         |
    | `forward`           | params, X, key=None                      | `forward`             |
    | `cost`              | params, X, Y, key=None                   | `cost`                |
    | `value_and_grad`    | params, X, Y, key=None                   | `value_and_grad`      |
    | `predict`           | params, X                                | `predict`             |
    | `per_example_grads` | params, X, Y, key=None                   | `per_example_grads`   |
    | `per_example_norms` | params, X, Y, key=None                   | `per_example_norms`   |
    | `clipped_grads`     | params, X, Y, clip_norm, key=None        | `clipped_grads`       |
    | `dp_grads`          | params, X, Y, noise_key, clip_norm,      | `dp_grads`            |
    |                     | noise_multiplier, key=None, normaliser   |                       |
    | `custom_vjp_cost`   | params, X, Y, key=None                   | `custom_vjp_cost`     |

    The functions bound are :mod:`manualgrad.functional`'s, :mod:`manualgrad.per_example`'s
    and :func:`manualgrad._bridge.custom_vjp_cost` (a cost whose `jax.grad` runs
    the hand-written backward).

    Curvature and gradient statistics (:mod:`manualgrad.curvature`), of the
    deterministic network (no dropout); `v` is a direction shaped like params, `key`
    and `mc_samples` select the Monte-Carlo estimate (`mc_samples` is static: jit
    `functools.partial(net.diag_ggn, mc_samples=1)`):

    | field                    | signature                                       |
    |--------------------------|-------------------------------------------------|
    | `sum_grad_squared`       | `(params, X, Y) -> {k: Σ_i g_i²}`               |
    | `grad_variance`          | `(params, X, Y) -> {k: (1/m) Σ_i (g_i − ḡ)²}`   |
    | `gradient_gram`          | `(params, X, Y) -> (m, m)`                      |
    | `gradient_noise_scale`   | `(params, X, Y) -> NoiseScale`                  |
    | `ggn_vector_product`     | `(params, X, Y, v) -> G v`                      |
    | `hessian_vector_product` | `(params, X, Y, v) -> ∇²C v`                    |
    | `diag_ggn`               | `(params, X, Y, key=None, mc_samples=None)`     |
    | `kfac_factors`           | `(params, X, Y, key=None, mc_samples=None)`     |
    | `diag_hessian`           | `(params, X, Y) -> diag ∇²C`                    |

    `key` is the dropout key (needed when keep_prob < 1). `activations`, `loss`,
    `l2`, `keep_prob` and `precision` hold the bound options.
    """

    activations: tuple[str, ...]
    loss: str
    l2: float
    keep_prob: float
    precision: str
    init: Callable[..., Any]
    forward: Callable[..., Any]
    cost: Callable[..., Any]
    value_and_grad: Callable[..., Any]
    predict: Callable[..., Any]
    per_example_grads: Callable[..., Any]
    per_example_norms: Callable[..., Any]
    clipped_grads: Callable[..., Any]
    dp_grads: Callable[..., Any]
    custom_vjp_cost: Callable[..., Any]
    sum_grad_squared: Callable[..., Any]
    grad_variance: Callable[..., Any]
    gradient_gram: Callable[..., Any]
    gradient_noise_scale: Callable[..., Any]
    ggn_vector_product: Callable[..., Any]
    hessian_vector_product: Callable[..., Any]
    diag_ggn: Callable[..., Any]
    kfac_factors: Callable[..., Any]
    diag_hessian: Callable[..., Any]


def network(
    activations: Sequence[str],
    loss: str = "bce",
    *,
    l2: float = 0.0,
    keep_prob: float = 1.0,
    precision: str = "default",
) -> Network:
    """Build the functions of a dense network with `activations` (one name per layer).

    | argument      | meaning                                                      |
    |---------------|--------------------------------------------------------------|
    | `activations` | one of :data:`manualgrad._core.activations.ACTIVATIONS` per layer  |
    | `loss`        | "bce" (sigmoid output), "ce" (softmax, one-hot Y), "mse"     |
    | `l2`          | λ of (λ/2m) Σ_l ‖W[l]‖_F², a Python number                   |
    | `keep_prob`   | inverted dropout on hidden layers (1.0: none)                |
    | `precision`   | "default", "highest" or "bf16" (:mod:`manualgrad._core.precision`) |

    Returns a :class:`Network` whose functions take arrays only, so `jax.jit`,
    `jax.vmap` and `optax` loops use them directly. The number of layers is fixed
    by `activations`; the widths come from the params.
    """
    if isinstance(activations, str) or not isinstance(activations, Sequence):
        raise ConfigError(
            f"expected `activations` to be a sequence of names, one per layer, got "
            f"{activations!r} — e.g. mg.network(['relu', 'sigmoid'])"
        )
    acts = tuple(activations)
    if not acts:
        raise ConfigError("`activations` is empty: give one activation name per layer")
    spec = engine.make_spec(len(acts), acts, loss, keep_prob=keep_prob, precision=precision)
    try:
        l2 = float(l2)
    except (TypeError, ValueError):
        raise ConfigError(
            f"`network` binds `l2` once, so it must be a Python number, got {l2!r}; for a "
            "traced λ use manualgrad.functional.value_and_grad(..., l2=λ)"
        ) from None
    check.check_l2(l2)
    options: dict[str, Any] = dict(
        activations=acts, loss=loss, keep_prob=keep_prob, precision=precision
    )

    def init(layer_dims: Sequence[int], key: Any, method: str = "he", dtype: Any = jnp.float32):
        """Params for `layer_dims` = [n_x, n_1, …, n_L] (one more than the activations)."""
        if isinstance(layer_dims, Sequence) and len(layer_dims) != len(acts) + 1:
            raise ConfigError(
                f"`layer_dims` {list(layer_dims)} describes {len(layer_dims) - 1} layers but the "
                f"network has {len(acts)} activations: give [n_x, n_1, …, n_L] with "
                f"{len(acts) + 1} sizes"
            )
        return functional.init_params(layer_dims, key, method, dtype)

    def forward(params, X, key=None):
        return functional.forward(
            params, X, key=key, activations=acts, keep_prob=keep_prob, precision=precision
        )

    def predict(params, X):
        return functional.predict(params, X, activations=acts, precision=precision)

    def clipped_grads(params, X, Y, clip_norm, key=None):
        return per_example.clipped_grads(
            params,
            X,
            Y,
            clip_norm=clip_norm,
            l2=l2,
            key=key,
            activations=acts,
            loss=loss,
            keep_prob=keep_prob,
            precision=precision,
        )

    def dp_grads(params, X, Y, noise_key, clip_norm, noise_multiplier, key=None, normaliser=None):
        return per_example.dp_grads(
            params,
            X,
            Y,
            noise_key=noise_key,
            clip_norm=clip_norm,
            noise_multiplier=noise_multiplier,
            l2=l2,
            key=key,
            normaliser=normaliser,
            activations=acts,
            loss=loss,
            keep_prob=keep_prob,
            precision=precision,
        )

    return Network(
        activations=acts,
        loss=loss,
        l2=l2,
        keep_prob=keep_prob,
        precision=precision,
        init=init,
        forward=forward,
        cost=_with_key(partial(functional.cost, l2=l2, **options)),
        value_and_grad=_with_key(partial(functional.value_and_grad, l2=l2, **options)),
        predict=predict,
        per_example_grads=_with_key(partial(per_example.per_example_grads, **options)),
        per_example_norms=_with_key(partial(per_example.per_example_norms, **options)),
        clipped_grads=clipped_grads,
        dp_grads=dp_grads,
        custom_vjp_cost=custom_vjp_cost(spec, l2),
        **_curvature_fields(acts, loss, l2, precision),
    )


def _curvature_fields(acts: tuple[str, ...], loss: str, l2: float, precision: str) -> dict:
    """The :mod:`manualgrad.curvature` functions with the network's options bound."""
    opts = dict(activations=acts, loss=loss, precision=precision)
    with_l2 = dict(opts, l2=l2)

    def sampled(fn, **kw):
        def bound(params, X, Y, key=None, mc_samples=None):
            return fn(params, X, Y, key=key, mc_samples=mc_samples, **kw)

        bound.__doc__ = fn.__doc__
        return bound

    return dict(
        sum_grad_squared=partial(curvature.sum_grad_squared, **opts),
        grad_variance=partial(curvature.grad_variance, **opts),
        gradient_gram=partial(curvature.gradient_gram, **opts),
        gradient_noise_scale=partial(curvature.gradient_noise_scale, **with_l2),
        ggn_vector_product=partial(curvature.ggn_vector_product, **with_l2),
        hessian_vector_product=partial(curvature.hessian_vector_product, **with_l2),
        diag_ggn=sampled(curvature.diag_ggn, **with_l2),
        kfac_factors=sampled(curvature.kfac_factors, **opts),
        diag_hessian=partial(curvature.diag_hessian, **with_l2),
    )


def _with_key(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn(params, X, Y, key=…)` as `(params, X, Y, key=None)`: key may be positional."""

    def bound(params, X, Y, key=None):
        return fn(params, X, Y, key=key)

    bound.__doc__ = getattr(getattr(fn, "func", fn), "__doc__", None)
    return bound
