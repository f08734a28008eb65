r"""The backward engine: one forward pass, one chain of dZ[l], formula (2), L2 and the cost.

Every feature of manualgrad is a small function of the pass this module runs. It
owns, each written once:

| piece                       | function                   | formulas            |
|-----------------------------|----------------------------|---------------------|
| the static options          | :class:`Spec`, `make_spec` | —                   |
| input checks (trace time)   | `check_inputs`, `check_features` | —             |
| the dropout masks of a batch| `dropout_masks`            | —                   |
| forward and its caches      | `forward`                  | Z = W A + b, A = g(Z) |
| dZ[L] of the loss           | `output_dZ`                | (5) at L, or A − Y  |
| the chain dZ[L] → dZ[1]     | `chain`                    | (4), (5): (3)       |
| forward + dZ[L] + chain     | `backward_pass`            | all of the above    |
| dW, db from dZ              | `grads_from_dZ`            | (2), its 1/m        |
| dW, db of C from dZ[L]      | `mean_grads`               | (4), (5), (2)       |
| one example's dW, db        | `example_grads_from_dz`    | (1)                 |
| the L2 term                 | `add_l2_grads`, `cost`     | (λ/m) W, (λ/2m)‖W‖² |
| the cost                    | `cost`                     | C = (1/m) Σ_i L_i   |

What a consumer receives from `backward_pass` is a :class:`Pass`: for each layer l
the cache (A[l-1], Z[l], A[l], D[l]) and dZ[l] = ∂L_i/∂Z[l] column by column — the
derivative of *each example's* loss L_i, with no 1/m. Column i of every dZ[l]
depends on example i alone and is linear in dz[L](i) (formulas (4), (5) and the
dropout masks are linear in dA at fixed Z). That is why a consumer may scale the
columns (clipping, masking, Poisson sampling) and then call `grads_from_dZ`, and why
the sums over examples may be split across devices.

**Where the 1/m of formula (2) is applied.** In the engine only, by the two functions
of formula (2): :func:`grads_from_dZ`, per layer, on the dZ[l] of a chain that has
already run (columns weighted by clip factors or masks first), and :func:`mean_grads`,
once, on dZ[L] before the chain — the same numbers by linearity, without an
elementwise pass per layer (`bench/before_after.py` measures the difference). Their
argument `m` is the normaliser: the batch size for the mean gradient of C; the global
batch size on a device holding a shard of it; the expected batch size q·N for DP-SGD
under Poisson sampling. Nothing outside the engine divides a gradient by m. The L2
term's (λ/m) W[l] and (λ/2m) Σ‖W‖² use the same m, in :func:`add_l2_grads` and
:func:`cost`.

The chain is rank-agnostic: `forward` and `chain` accept one example as vectors
x (n_x,), y (n_L,), so the one-example path of formula (1) is the same code, and
`per_example_grads` is `jax.vmap` of it.

This module is manualgrad's internal API: the public modules (`functional`,
`per_example`, `parallel`, `bridge`, `course`, `curvature`, `privacy`) import it;
users should not. Its trace-time validators are part of it, as `check`
(:mod:`manualgrad._core.validation`: shapes, dtypes, names and options, with the
catalogue's messages). Its functions take validated inputs and do no checks of their own
beyond :func:`make_spec` and :func:`check_inputs`.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple, Required, TypedDict

import jax
import jax.numpy as jnp

from manualgrad._core import regularization
from manualgrad._core import validation as check
from manualgrad._core.activations import Activation
from manualgrad._core.dense import (
    activation_backward,
    bias_grad,
    example_bias_grad,
    example_weight_grad,
    linear_forward,
    output_backward,
    prev_activation_grad,
    weight_grad,
)
from manualgrad._core.losses import Loss
from manualgrad._core.regularization import apply_dropout, l2_cost, l2_weight_grad
from manualgrad._errors import ConfigError

Array = jax.Array
Params = dict[str, Array]


class Spec(NamedTuple):
    """The static options of a network, resolved and checked once.

    `activations`: one :class:`~manualgrad._core.activations.Activation` per layer;
    `loss`: the :class:`~manualgrad._core.losses.Loss` (None for a forward pass alone);
    `keep_prob`: dropout's keep probability on hidden layers (1.0: no dropout);
    `precision`: a policy of :mod:`manualgrad._core.precision`.
    """

    activations: tuple[Activation, ...]
    loss: Loss | None
    keep_prob: float
    precision: str

    @property
    def n_layers(self) -> int:
        return len(self.activations)


class LayerCache(NamedTuple):
    """What layer l's backward needs from its forward.

    A_prev: (n_{l-1}, m), the input the layer multiplied (after dropout, if any);
    Z: (n_l, m); A: (n_l, m), g(Z) before dropout; D: (n_l, m) boolean dropout mask
    of A[l], or None when layer l has no dropout. One example: (n,) vectors.
    """

    A_prev: Array
    Z: Array
    A: Array
    D: Array | None


class Pass(NamedTuple):
    """One forward and backward pass: per layer the cache and dZ[l] (n_l, m), no 1/m."""

    caches: tuple[LayerCache, ...]
    dZs: tuple[Array, ...]


def make_spec(
    n_layers: int,
    activations: Sequence[str],
    loss: str | None = "bce",
    *,
    keep_prob: float = 1.0,
    precision: str = "default",
) -> Spec:
    """Check the names and static options of an `n_layers` network and resolve them."""
    acts = check.check_activations(activations, n_layers)
    loss_spec = None if loss is None else check.check_loss(loss, acts[-1])
    check.check_static_options(keep_prob=keep_prob, precision=precision)
    return Spec(acts, loss_spec, keep_prob, precision)


def spec_for(
    params: Mapping[str, Any],
    activations: Sequence[str],
    loss: str | None = "bce",
    *,
    keep_prob: float = 1.0,
    precision: str = "default",
) -> tuple[Params, Spec]:
    """The params as a dict of arrays, checked, and the :class:`Spec` for them."""
    params = check.as_params(params)
    n_layers = check.check_params(params)
    spec = make_spec(n_layers, activations, loss, keep_prob=keep_prob, precision=precision)
    check.check_dtype_options(precision=precision, dtype=check.params_dtype(params))
    return params, spec


def check_features(params: Params, X: Any, spec: Spec, *, key: Any = None) -> tuple[Array, int]:
    """Check X (n_x, m) and, with dropout on, the key, at trace time; return X and m."""
    X = check.as_array("X", X)
    m = check.check_X(params, X)
    check.check_dropout_key(spec.keep_prob, key)
    return X, m


def check_inputs(
    params: Params,
    X: Any,
    Y: Any,
    spec: Spec,
    *,
    l2: Any = 0.0,
    key: Any = None,
    needs_key: bool = True,
) -> tuple[Array, Array, int]:
    """Check X (n_x, m), Y (n_L, m), λ and the dropout key at trace time; return X, Y, m.

    Y is cast to X's dtype. `needs_key=False` where the masks already exist
    (backward from caches).
    """
    if spec.loss is None:  # `loss=None` passed where a loss is needed (only forward has none)
        check.check_loss(None, None)  # the unknown-loss error
    X = check.as_array("X", X)
    m = check.check_X(params, X)
    check.check_l2(l2, dtype=check.params_dtype(params))
    if needs_key:
        check.check_dropout_key(spec.keep_prob, key)
    Y = check.as_array("Y", Y)
    check.check_Y(params, Y, m)
    return X, Y.astype(X.dtype), m


class Options(TypedDict, total=False):
    """The keyword options of the functional API (`mg.value_and_grad(params, X, Y, **options)`).

    | option        | default     | meaning                                              |
    |---------------|-------------|------------------------------------------------------|
    | `activations` | (required)  | one activation name per layer                         |
    | `loss`        | `"bce"`     | "bce" (sigmoid output), "ce" (softmax, one-hot Y), "mse" |
    | `l2`          | `0.0`       | λ of (λ/2m) Σ_l ‖W[l]‖_F² (may be traced)             |
    | `keep_prob`   | `1.0`       | inverted dropout on hidden layers (static)            |
    | `key`         | `None`      | the dropout key, needed when keep_prob < 1            |
    | `precision`   | `"default"` | a policy of :mod:`manualgrad._core.precision` (static)      |

    :func:`manualgrad.network` binds them once instead.
    """

    activations: Required[Sequence[str]]
    loss: str
    l2: float | Array
    keep_prob: float
    key: Array | None
    precision: str


OPTION_NAMES = ("activations", "loss", "l2", "keep_prob", "key", "precision")


def check_option_names(
    options: Mapping[str, Any], *, function: str, allowed: Collection[str] = OPTION_NAMES
) -> None:
    """Check the names of `function`'s keyword options: each one allowed, `activations` given.

    An unknown or unsupported option name is a :class:`ConfigError` naming the
    closest valid one; so is a missing `activations`.
    """
    for name in options:
        if name not in allowed:
            close = difflib.get_close_matches(str(name), list(allowed), n=1)
            hint = f" — did you mean `{close[0]}`?" if close else ""
            raise ConfigError(
                f"`{function}` got an unknown option `{name}`{hint} (its options: "
                f"{', '.join(f'`{a}`' for a in allowed)})"
            )
    if "activations" not in options:
        raise ConfigError(
            f"`{function}` needs `activations`, one name per layer, e.g. "
            "activations=('relu', 'sigmoid')"
        )


def checked_options(
    params: Mapping[str, Any],
    X: Any,
    Y: Any,
    options: Mapping[str, Any],
    *,
    function: str,
    allowed: Collection[str] = OPTION_NAMES,
) -> tuple[Params, Array, Array, Spec, Any, Array | None]:
    """Check `function`'s keyword options and its inputs; return params, X, Y, spec, λ, key.

    The names first (:func:`check_option_names`), then the options and inputs.
    """
    check_option_names(options, function=function, allowed=allowed)
    l2, key = options.get("l2", 0.0), options.get("key")
    params, spec = spec_for(
        params,
        options["activations"],
        options.get("loss", "bce"),
        keep_prob=options.get("keep_prob", 1.0),
        precision=options.get("precision", "default"),
    )
    X, Y, _ = check_inputs(params, X, Y, spec, l2=l2, key=key)
    return params, X, Y, spec, l2, key


def dropout_masks(params: Params, m: int, spec: Spec, key: Array | None) -> list[Array | None]:
    """The masks of a batch of m examples: one (n_l, m) boolean per hidden layer, or all None.

    The one rule for which masks a batch gets, so that `value_and_grad`, the
    per-example functions and a `jax.grad` oracle given the same key see the same
    dropout (:func:`manualgrad._core.regularization.dropout_masks`).
    """
    n_layers = spec.n_layers
    if spec.keep_prob == 1 or n_layers == 1:
        return [None] * (n_layers - 1)
    assert key is not None  # check_inputs asks for a key when keep_prob < 1
    shapes = [(params[f"W{l}"].shape[0], m) for l in range(1, n_layers)]
    return list(regularization.dropout_masks(key, shapes, spec.keep_prob))


def forward(
    params: Params, X: Array, spec: Spec, masks: Sequence[Array | None] | None = None
) -> tuple[Array, tuple[LayerCache, ...]]:
    """A[L] and the caches: Z[l] = W[l] A[l-1] + b[l], A[l] = g[l](Z[l]) for l = 1 … L.

    X (n_x, m) or one example x (n_x,). `masks` (from :func:`dropout_masks`, one per
    hidden layer, or None) turn on inverted dropout: A[l] D[l] / keep_prob is what
    layer l + 1 multiplies.
    """
    n_layers = spec.n_layers
    masks = [None] * (n_layers - 1) if masks is None else masks
    caches = []
    A = X
    for l, act in enumerate(spec.activations, start=1):
        b = params[f"b{l}"] if X.ndim == 2 else params[f"b{l}"][:, 0]
        Z = linear_forward(params[f"W{l}"], b, A, precision=spec.precision)
        A_l = act.forward(Z)
        D = masks[l - 1] if l < n_layers else None
        caches.append(LayerCache(A_prev=A, Z=Z, A=A_l, D=D))
        A = A_l if D is None else apply_dropout(A_l, D, spec.keep_prob)
    return A, tuple(caches)


def output_dZ(caches: Sequence[LayerCache], Y: Array, spec: Spec) -> Array:
    """dZ[L] = ∂L_i/∂Z[L] of each example's loss: A[L] − Y (fused) or dA[L] ⊙ g'(Z[L]) (5)."""
    assert spec.loss is not None, "a Spec made with loss=None has no dZ[L]"
    last = caches[-1]
    return output_backward(last.Z, last.A, Y, spec.activations[-1], spec.loss)


def chain(
    params: Params, caches: Sequence[LayerCache], dZL: Array, spec: Spec
) -> tuple[Array, ...]:
    """(dZ[1], …, dZ[L]) from dZ[L]: formulas (4) and (5), from layer L down to 1.

    dZL may be any (n_L, m) array — the loss's dZ[L] for gradients, or a column of a
    square-root factor of the loss Hessian for curvature — and may be one example's
    (n_L,) vector. Each dZ[l] is linear in dZL.
    """
    dZ = dZL
    dZs = [dZ]
    for l in range(spec.n_layers, 1, -1):
        prev = caches[l - 2]
        dA_prev = prev_activation_grad(params[f"W{l}"], dZ, precision=spec.precision)  # (4)
        if prev.D is not None:
            dA_prev = apply_dropout(dA_prev, prev.D, spec.keep_prob)
        dZ = activation_backward(dA_prev, prev.Z, prev.A, spec.activations[l - 2])  # (5): (3)
        dZs.append(dZ)
    return tuple(reversed(dZs))


def backward_pass(
    params: Params,
    X: Array,
    Y: Array,
    spec: Spec,
    masks: Sequence[Array | None] | None = None,
) -> Pass:
    """The forward pass, dZ[L] of the loss and the chain: per layer (A[l-1], Z, A, D) and dZ[l]."""
    _, caches = forward(params, X, spec, masks)
    return Pass(caches, chain(params, caches, output_dZ(caches, Y, spec), spec))


def grads_from_dZ(
    params: Params,
    caches: Sequence[LayerCache],
    dZs: Sequence[Array],
    *,
    m: int | float | Array,
    precision: str,
) -> Params:
    """Formula (2) for every layer: dW[l] = (1/m) dZ[l] A[l-1]ᵀ, db[l] = (1/m) Σ_i dZ[l](i).

    For the dZ[l] of a chain that has already run. `m` is the normaliser (the batch
    size for ∂C/∂params; the global batch size for one device's shard; q·N for
    DP-SGD). With columns of dZ[l] scaled by s_i beforehand this is (1/m) Σ_i s_i g_i.
    Returns a dict with the params' keys, in their order; no L2 term. When only the
    mean gradient is wanted, :func:`mean_grads` gets the same from dZ[L] more cheaply.
    """
    grads: Params = {}
    for l, (cache, dZ) in enumerate(zip(caches, dZs, strict=True), start=1):
        grads[f"W{l}"] = weight_grad(dZ, cache.A_prev, precision=precision, m=m)  # (2)
        grads[f"b{l}"] = bias_grad(dZ, m=m)  # (2)
    return {k: grads[k] for k in params}


def mean_grads(
    params: Params, caches: Sequence[LayerCache], dZL: Array, spec: Spec, *, m: int | float | Array
) -> Params:
    """Formula (2) for every layer from dZ[L]: the chain, with the 1/m applied once, to dZ[L].

    The chain (4), (5) is linear in dZ[L], so chain(dZ[L] / m) = chain(dZ[L]) / m layer
    by layer, and :func:`grads_from_dZ` of it with m = 1 is (2) with the normaliser m.
    Dividing the n_L × m numbers of dZ[L] (the fewest of any layer) spares every layer
    its own elementwise pass over dZ[l] or dW[l]. Use it when every example has the same
    weight 1/m (the gradient of C); to weight examples (clipping) use `grads_from_dZ`.
    """
    dZs = chain(params, caches, dZL / m, spec)  # (2)'s 1/m, once: every dZ[l] is linear in it
    return grads_from_dZ(params, caches, dZs, m=1, precision=spec.precision)  # (2)


def example_grads_from_dz(
    params: Params, caches: Sequence[LayerCache], dzs: Sequence[Array]
) -> Params:
    """Formula (1) for every layer of one example: dW[l] = dz[l] a[l-1]ᵀ, db[l] = dz[l]."""
    grads: Params = {}
    for l, (cache, dz) in enumerate(zip(caches, dzs, strict=True), start=1):
        grads[f"W{l}"] = example_weight_grad(dz, cache.A_prev)  # (1)
        grads[f"b{l}"] = example_bias_grad(dz)  # (1)
    return {k: grads[k] for k in params}


def _has_l2(l2: Any) -> bool:
    return not (isinstance(l2, int | float) and l2 == 0)


def add_l2_grads(grads: Params, params: Params, l2: Any, m: int | float | Array) -> Params:
    """dW[l] + (λ/m) W[l] for every layer (biases untouched); `grads` itself when λ is 0."""
    if not _has_l2(l2):
        return grads
    return {
        k: g + l2_weight_grad(params[k], l2, m) if k.startswith("W") else g
        for k, g in grads.items()
    }


def example_losses(caches: Sequence[LayerCache], Y: Array, spec: Spec) -> Array:
    """L_i for every example, shape (m,) (or () for one example), from Z[L] and A[L]."""
    assert spec.loss is not None, "a Spec made with loss=None has no losses"
    last = caches[-1]
    return spec.loss.per_example(last.Z, last.A, Y)


def cost(params: Params, loss_sum: Array, *, m: int | float | Array, l2: Any) -> Array:
    """C = (1/m) Σ_i L_i + (λ/2m) Σ_l ‖W[l]‖_F², from Σ_i L_i."""
    C = loss_sum / m
    if _has_l2(l2):
        C = C + l2_cost(params, l2, m)
    return C


def value_and_grad(
    params: Params,
    X: Array,
    Y: Array,
    spec: Spec,
    *,
    l2: Any = 0.0,
    key: Array | None = None,
) -> tuple[Array, Params]:
    """(C, ∂C/∂params) on checked inputs: `forward`, then (2) by `mean_grads`, L2 and the cost."""
    m = X.shape[1]
    _, caches = forward(params, X, spec, dropout_masks(params, m, spec, key))
    C = cost(params, jnp.sum(example_losses(caches, Y, spec)), m=m, l2=l2)
    grads = mean_grads(params, caches, output_dZ(caches, Y, spec), spec, m=m)
    return C, add_l2_grads(grads, params, l2, m)
