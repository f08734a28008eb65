r"""`mg.network`: a sequence of layers and a loss, bound once, with pure jit-ready functions.

The optax/stax pattern: a constructor takes what is fixed for a model (its layers,
the loss, λ, the dropout rate, the precision policy) and returns a frozen, hashable
record whose functions take arrays alone. Nothing needs `static_argnames`:

    net = mg.network(
        [mg.layers.Dense(20, activation="relu"), mg.layers.Dense(1, activation="sigmoid")],
        loss="bce", l2=0.01,
    )
    params = net.init((n_x,), jax.random.key(0))   # one example's shape, features first
    step = jax.jit(net.value_and_grad)
    C, grads = step(params, X, Y)                   # X (n_x, m), Y (1, m): examples last

The dense shorthand names one activation per layer and takes the widths from
`layer_dims` at init: `mg.network(["relu", "sigmoid"], "bce")` with
`net.init([n_x, n_1, 1], key)`. Both give the same params and the same numbers.

Every extension is a plain function of the network, `mg.curvature.diag_ggn(net, params,
X, Y)`; the most used ones are also bound here (`net.diag_ggn(params, X, Y)`).
Names and options are checked when the network is built; shapes and dtypes at trace
time, as everywhere else.

>>> import jax, jax.numpy as jnp, manualgrad as mg
>>> net = mg.network([mg.layers.Dense(4), mg.layers.Dense(1, activation="sigmoid")], loss="bce")
>>> params = net.init((2,), jax.random.key(0))
>>> X = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
>>> Y = jnp.array([[1.0, 0.0, 1.0]])
>>> C, grads = jax.jit(net.value_and_grad)(params, X, Y)
>>> sorted(grads) == sorted(params), C.shape
(True, ())
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp

from manualgrad._core import engine
from manualgrad._core import validation as check
from manualgrad._core.layer import Layer
from manualgrad._core.losses import get_loss
from manualgrad._errors import ConfigError
from manualgrad.layers._dense import Dense

Array = jax.Array
Params = dict[str, Array]

__all__ = ["Network", "network"]


def _extension(module: str) -> Any:
    """An extension module, imported when a bound function first needs it (no import cycle)."""
    return importlib.import_module(f"manualgrad.{module}")


@dataclass(frozen=True)
class Network:
    """A network: its layers, its loss and the static options, with its functions bound.

    | field       | meaning                                                         |
    |-------------|-----------------------------------------------------------------|
    | `layers`    | the layers, first to last (:mod:`manualgrad.layers`)            |
    | `loss`      | "bce" (sigmoid output), "ce" (softmax, one-hot Y), "mse"        |
    | `l2`        | λ of (λ/2m) Σ_l ‖W[l]‖_F²                                       |
    | `keep_prob` | inverted dropout on the hidden layers with parameters (1.0: none) |
    | `precision` | "default", "highest" or "bf16" (:mod:`manualgrad.precision`)    |

    Functions (all take arrays only, so `jax.jit`, `jax.vmap` and optax loops use them
    directly; `key` is the dropout key, needed when keep_prob < 1):

    | function                             | returns                                  |
    |--------------------------------------|------------------------------------------|
    | `init(input_shape, key)`             | params "W1", "b1", … (shorthand: layer_dims) |
    | `forward(params, X, key)`            | (A[L], caches)                           |
    | `cost(params, X, Y, key)`            | C                                        |
    | `value_and_grad(params, X, Y, key)`  | (C, ∂C/∂params), the hand-written backward |
    | `predict(params, X)`                 | class predictions (1, m)                 |
    | `custom_vjp_cost(params, X, Y, key)` | C, whose `jax.grad` is hand-written      |
    | `per_example_grads`, `per_example_norms`, `clipped_grads`, `dp_grads` | per example |
    | `sum_grad_squared`, `grad_variance`, `gradient_gram`, `gradient_noise_scale` | statistics |
    | `ggn_vector_product`, `hessian_vector_product`, `diag_ggn`, `kfac_factors`,   | curvature |
    | `diag_hessian`                                                                |            |

    The per-example functions are :mod:`manualgrad.per_example`'s, the rest
    :mod:`manualgrad.curvature`'s, with the network as first argument.

    Frozen and hashable: a network may be a static argument or a dict key.
    """

    layers: tuple[Layer, ...]
    loss: str = "bce"
    l2: Any = 0.0
    keep_prob: float = 1.0
    precision: str = "default"

    # ---- what the network is ---------------------------------------------------------

    @property
    def spec(self) -> engine.Spec:
        """The engine's view of the network (its layers, loss record, dropout, precision)."""
        return engine.Spec(self.layers, get_loss(self.loss), self.keep_prob, self.precision)

    @property
    def activations(self) -> tuple[str, ...]:
        """The activation of every layer of a dense network (the shorthand's names)."""
        return tuple(getattr(layer, "activation", type(layer).__name__) for layer in self.layers)

    @property
    def is_shorthand(self) -> bool:
        """True for a dense network whose widths come from `layer_dims` at init."""
        return all(isinstance(layer, Dense) and layer.units is None for layer in self.layers)

    @property
    def param_keys(self) -> tuple[str, ...]:
        """The params' keys in layer order: "W1", "b1", "W2", …"""
        return engine.param_order(self.spec)

    def checked(
        self, params: Any, X: Any, Y: Any, key: Any = None, *, needs_key: bool = True
    ) -> tuple[Params, Array, Array, int]:
        """params, X, Y (cast to X's dtype) and m, checked at trace time against the network."""
        return engine.check_inputs(
            params, X, Y, self.spec, l2=self.l2, key=key, needs_key=needs_key
        )

    # ---- the core functions -------------------------------------------------------

    def init(
        self,
        input_shape: Sequence[int],
        key: Array,
        method: str | None = None,
        dtype: Any = jnp.float32,
    ) -> Params:
        """Params for one example's `input_shape` (features first: `(n_x,)` for vectors).

        For the shorthand (`mg.network(["relu", "sigmoid"])`, no units), `input_shape` is
        `layer_dims` = [n_x, n_1, …, n_L]. `method` overrides every dense layer's init
        ("he", "xavier", "random", "zeros"). The key is split once per layer with
        parameters, in order.
        """
        if self.is_shorthand:
            dims = check.check_init(input_shape, key, dtype)
            if len(dims) != len(self.layers) + 1:
                raise ConfigError(
                    f"`layer_dims` {dims} describes {len(dims) - 1} layers but the network has "
                    f"{len(self.layers)} activations: give [n_x, n_1, …, n_L] with "
                    f"{len(self.layers) + 1} sizes"
                )
            in_shape: tuple[int, ...] = (dims[0],)
            units: list[int | None] = list(dims[1:])
        else:
            in_shape = check.check_input_shape(input_shape, key, dtype)
            units = [None] * len(self.layers)
        if method is not None and method not in ("he", "xavier", "random", "zeros"):
            raise ConfigError(
                f"unknown init method {method!r}; expected one of "
                "['he', 'xavier', 'random', 'zeros']"
            )
        n_with_params = sum(1 for layer in self.layers if layer.param_names)
        keys = iter(jax.random.split(key, n_with_params))
        params: Params = {}
        for layer, names, n in zip(self.layers, engine.layer_keys(self.spec), units, strict=True):
            k = next(keys) if layer.param_names else key
            if isinstance(layer, Dense):
                local, in_shape = layer.init(k, in_shape, dtype, units=n, method=method or "")
            else:
                local, in_shape = layer.init(k, in_shape, dtype)
            params.update({names[name]: local[name] for name in layer.param_names})
        return params

    def forward(self, params: Any, X: Any, key: Array | None = None) -> tuple[Array, engine.Caches]:
        """(A[L], caches): every layer's forward from A[0] = X (…, m), dropout from `key`."""
        spec = self.spec._replace(loss=None)
        params, X, _ = engine.check_features(params, X, spec, key=key)
        return engine.forward(params, X, spec, engine.dropout_masks(params, X, spec, key))

    def cost(self, params: Any, X: Any, Y: Any, key: Array | None = None) -> Array:
        """C = (1/m) Σ_i L(a[L](i), y(i)) + (λ/2m) Σ_l ‖W[l]‖_F², a scalar.

        This is the function whose `jax.grad` the hand-written backward must equal.
        """
        params, X, Y, m = self.checked(params, X, Y, key)
        spec = self.spec
        _, caches = engine.forward(params, X, spec, engine.dropout_masks(params, X, spec, key))
        return engine.cost(params, jnp.sum(engine.example_losses(caches, Y, spec)), m=m, l2=self.l2)

    def value_and_grad(
        self, params: Any, X: Any, Y: Any, key: Array | None = None
    ) -> tuple[Array, Params]:
        """(C, ∂C/∂params): one forward pass and the hand-written backward pass.

        Shapes: X (…, m), Y (n_L, m); grads have the params' keys and shapes, so
        `optax.apply_updates(params, updates)` takes them directly.
        """
        params, X, Y, _ = self.checked(params, X, Y, key)
        return engine.value_and_grad(params, X, Y, self.spec, l2=self.l2, key=key)

    def backward(self, params: Any, caches: engine.Caches, Y: Any) -> Params:
        """∂C/∂params from `forward`'s caches (and their dropout masks): the chain, (2), L2."""
        spec = self.spec
        check.check_caches(caches, spec.n_layers)
        params = engine.check_params(params, spec)
        check.check_l2(self.l2, dtype=check.params_dtype_of(params))
        _, A_L, _ = engine.output_values(caches, spec)
        m = A_L.shape[-1]
        Y = engine.check_labels(params, Y, m, spec, tuple(A_L.shape[:-1]))
        Y = Y.astype(A_L.dtype)
        grads = engine.mean_grads(params, caches, engine.output_dZ(caches, Y, spec), spec, m=m)
        return engine.add_l2_grads(grads, params, self.l2, m)

    def predict(self, params: Any, X: Any) -> Array:
        """Class predictions of shape (1, m): A[L] > 0.5 for one output unit, argmax otherwise.

        A sequence output (n_L, T, m) gives one prediction per time step, (1, T, m).
        """
        AL, _ = replace(self, keep_prob=1.0).forward(params, X)
        if AL.shape[0] == 1:
            return (AL > 0.5).astype(jnp.int32)
        return jnp.argmax(AL, axis=0)[None].astype(jnp.int32)

    def custom_vjp_cost(self, params: Any, X: Any, Y: Any, key: Array | None = None) -> Array:
        """C, as :meth:`cost`, whose `jax.grad` (params, X and Y) runs the hand-written backward."""
        from manualgrad._bridge import custom_vjp_cost

        return custom_vjp_cost(self.spec, self.l2)(params, X, Y, key)

    # ---- per-example (manualgrad.per_example) ---------------------------------------

    def per_example_grads(self, params: Any, X: Any, Y: Any, key: Array | None = None) -> Params:
        """g_i = ∂L_i/∂params for every example, (m, *shape) per key."""
        return _extension("per_example").per_example_grads(self, params, X, Y, key)

    def per_example_norms(self, params: Any, X: Any, Y: Any, key: Array | None = None) -> Array:
        """‖g_i‖ for every example, (m,), with no per-example gradient formed."""
        return _extension("per_example").per_example_norms(self, params, X, Y, key)

    def clipped_grads(
        self, params: Any, X: Any, Y: Any, clip_norm: Any, key: Array | None = None
    ) -> Params:
        """(1/m) Σ_i min(1, C/‖g_i‖) g_i [+ (λ/m) W], in one backward pass."""
        return _extension("per_example").clipped_grads(self, params, X, Y, clip_norm, key)

    def dp_grads(
        self,
        params: Any,
        X: Any,
        Y: Any,
        noise_key: Array,
        clip_norm: Any,
        noise_multiplier: Any,
        key: Array | None = None,
        normaliser: Any = None,
    ) -> Params:
        """The DP-SGD gradient: clipped sum plus N(0, σ²C²I), over the normaliser."""
        return _extension("per_example").dp_grads(
            self, params, X, Y, noise_key, clip_norm, noise_multiplier, key, normaliser
        )

    # ---- curvature (manualgrad.curvature) -------------------------------------------

    def sum_grad_squared(self, params: Any, X: Any, Y: Any) -> Params:
        """Σ_i g_i ⊙ g_i (:func:`manualgrad.curvature.sum_grad_squared`)."""
        return _extension("curvature").sum_grad_squared(self, params, X, Y)

    def grad_variance(self, params: Any, X: Any, Y: Any) -> Params:
        """(1/m) Σ_i (g_i − ḡ)² (:func:`manualgrad.curvature.grad_variance`)."""
        return _extension("curvature").grad_variance(self, params, X, Y)

    def gradient_gram(self, params: Any, X: Any, Y: Any) -> Array:
        """⟨g_i, g_j⟩, (m, m) (:func:`manualgrad.curvature.gradient_gram`)."""
        return _extension("curvature").gradient_gram(self, params, X, Y)

    def gradient_noise_scale(self, params: Any, X: Any, Y: Any) -> Any:
        """B_simple = tr(Σ)/‖G‖² (:func:`manualgrad.curvature.gradient_noise_scale`)."""
        return _extension("curvature").gradient_noise_scale(self, params, X, Y)

    def ggn_vector_product(self, params: Any, X: Any, Y: Any, v: Any) -> Params:
        """G v (:func:`manualgrad.curvature.ggn_vector_product`)."""
        return _extension("curvature").ggn_vector_product(self, params, X, Y, v)

    def hessian_vector_product(self, params: Any, X: Any, Y: Any, v: Any) -> Params:
        """∇²C v (:func:`manualgrad.curvature.hessian_vector_product`)."""
        return _extension("curvature").hessian_vector_product(self, params, X, Y, v)

    def diag_ggn(
        self, params: Any, X: Any, Y: Any, key: Array | None = None, mc_samples: int | None = None
    ) -> Params:
        """diag G, exact or Monte Carlo (:func:`manualgrad.curvature.diag_ggn`)."""
        return _extension("curvature").diag_ggn(self, params, X, Y, key, mc_samples)

    def kfac_factors(
        self, params: Any, X: Any, Y: Any, key: Array | None = None, mc_samples: int | None = None
    ) -> Any:
        """Kronecker factors per layer (:func:`manualgrad.curvature.kfac_factors`)."""
        return _extension("curvature").kfac_factors(self, params, X, Y, key, mc_samples)

    def diag_hessian(self, params: Any, X: Any, Y: Any) -> Params:
        """diag ∇²C (:func:`manualgrad.curvature.diag_hessian`)."""
        return _extension("curvature").diag_hessian(self, params, X, Y)


def network(
    layers: Sequence[Layer | str],
    loss: str = "bce",
    *,
    l2: float = 0.0,
    keep_prob: float = 1.0,
    precision: str = "default",
) -> Network:
    """A network of `layers` with `loss`: a frozen :class:`Network` with its functions bound.

    | argument    | meaning                                                         |
    |-------------|-----------------------------------------------------------------|
    | `layers`    | :mod:`manualgrad.layers` records, first to last; a name alone   |
    |             | ("relu") is `Dense(activation=name)` with its width from init's |
    |             | layer_dims (the dense shorthand)                                 |
    | `loss`      | "bce" (sigmoid output), "ce" (softmax, one-hot Y), "mse"        |
    | `l2`        | λ of (λ/2m) Σ_l ‖W[l]‖_F², a Python number                      |
    | `keep_prob` | inverted dropout on the hidden layers with parameters (1.0: none) |
    | `precision` | "default", "highest" or "bf16" (:mod:`manualgrad.precision`)    |

    Names, the loss's fit to the output layer and the options are checked here; shapes
    and dtypes at trace time.
    """
    if isinstance(layers, str | Layer) or not isinstance(layers, Sequence):
        raise ConfigError(
            f"expected `layers` to be a sequence of layers (or activation names), got "
            f"{layers!r} — e.g. mg.network([mg.layers.Dense(20), mg.layers.Dense(1, "
            "activation='sigmoid')]) or mg.network(['relu', 'sigmoid'])"
        )
    if not layers:
        raise ConfigError("`layers` is empty: give at least one layer, e.g. [mg.layers.Dense(1)]")
    if all(isinstance(layer, str) for layer in layers):
        check.check_activations(list(layers), len(layers))  # type: ignore[arg-type]
    resolved = tuple(_as_layer(layer, l) for l, layer in enumerate(layers, start=1))
    for l, layer in enumerate(resolved[:-1], start=1):
        if isinstance(layer, Dense):
            check.check_hidden_activation(l, layer.activation)
    for l, layer in enumerate(resolved[1:], start=2):
        if layer.takes_ids:
            raise ConfigError(
                f"layer {l}, {layer.name}, takes integer token ids, which only the network's "
                "input is: put it first, mg.network([mg.layers.Embedding(V, d), ...])"
            )
    out_act = resolved[-1].output_activation
    if out_act is None:
        raise ConfigError(
            f"{resolved[-1].name} cannot be a network's output layer: the last layer must apply "
            "an activation the loss acts on, e.g. mg.layers.Dense(1, activation='sigmoid')"
        )
    check.check_loss(loss, out_act)
    check.check_static_options(keep_prob=keep_prob, precision=precision)
    try:
        l2 = float(l2)
    except (TypeError, ValueError):
        raise ConfigError(
            f"`network` binds `l2` once, so it must be a Python number, got {l2!r}; for a "
            "traced λ use manualgrad.functional.value_and_grad(..., l2=λ)"
        ) from None
    check.check_l2(l2)
    return Network(resolved, loss, l2, keep_prob, precision)


def _as_layer(layer: Layer | str, l: int) -> Layer:
    if isinstance(layer, Layer):
        return layer
    if isinstance(layer, str):
        return Dense(activation=layer)
    raise ConfigError(
        f"layer {l}: expected a layer (e.g. mg.layers.Dense(20)) or an activation name, "
        f"got {layer!r}"
    )


def with_l2(net: Network, l2: Any) -> Network:
    """The same network with λ = `l2`, which may be traced (the functional API's λ)."""
    check.check_l2(l2)
    return replace(net, l2=l2)
