r"""The layer protocol: what a kind of layer tells the engine, and the one view extensions read.

A network is a sequence of layers. Each layer is a frozen, hashable record of its
static settings (units, activation, …) with pure functions for its hand-derived
formulas, micrograd-style: forward and backward side by side.

| method                               | returns                                | dense: |
|--------------------------------------|----------------------------------------|--------|
| `init(key, in_shape, dtype)`         | (params with local names, out_shape)   | —      |
| `forward(params, A_prev, p)`         | (A, cache for the backward)            | Z, A   |
| `backward(params, cache, dA, p)`     | (dA_prev, products)                    | (5), (4) |
| `jvp(params, v, cache, A_prev, Ȧ_prev, p)` | Ȧ, the forward-mode change       | (6), (7) |

`p` is the network's precision policy (:mod:`manualgrad._core.precision`).

**Products: every parameterised operation is formula (2) summed over positions.** A
layer whose parameters enter as Z = W A (+ b) — one W applied at T *positions* per
example (a dense layer: T = 1; a convolution: T output pixels, A the unfolded patches;
a recurrent cell: T time steps) — returns from `backward` one :class:`Product` per
weight: its input A (d_in, T, m) and dZ (d_out, T, m), with dZ = ∂L_i/∂Z of each
example's loss (no 1/m). From a product alone follow

    (2)  dW = (1/m) Σ_i Σ_t dz_t(i) a_t(i)ᵀ,        db = (1/m) Σ_i Σ_t dz_t(i)
    (1)  dW_i = Σ_t dz_t(i) a_t(i)ᵀ,                db_i = Σ_t dz_t(i)
         ‖dW_i‖² = Σ_{t,s} (dz_t · dz_s)(a_t · a_s)  (T = 1: ‖dz‖² ‖a‖²)

and every extension (per-example gradients and norms, clipping, DP, Σg², variance,
Gram, diagonal GGN, KFAC) reads only products, never a layer's internals. Layers
without parameters (activations, pooling, flatten, dropout) return no product and take
part only in the chain, formulas (4) and (5).

**Product kinds** (:mod:`manualgrad._core.products`). Parameters that do not enter as a
dense W A have a product kind of their own, with the same fields and each extension's
formula as a method: :class:`Lookup` for an embedding (Z = E onehot(x), A holds the ids
(1, T, m)) and :class:`ScaleShift` for a layer norm (Z = γ ⊙ x̂ + β, A holds x̂).

The weight's gradient is computed as a (d_out, d_in) matrix and reshaped to W's shape
(row-major), so W must be laid out (d_out, …d_in…); the bias's as (d_out,) reshaped
to b's shape.

**Write your own layer.** Subclass :class:`Layer` as a frozen dataclass and implement
`init`, `forward` and `backward` (and `jvp` for exact GGN-vector products, if the
default — forward-mode differentiation of your `forward` — is not what you want). See
the docs page "Write your own layer".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax

from manualgrad._core.products import Lookup, Product, ScaleShift
from manualgrad._core.validation import check_X_float

Array = jax.Array
Params = dict[str, Array]
Shape = tuple[int, ...]

__all__ = ["Layer", "Lookup", "Params", "Product", "ScaleShift", "Shape"]


@dataclass(frozen=True)
class Layer:
    """The base of every layer kind: a frozen, hashable record of static settings.

    Subclasses implement :meth:`init`, :meth:`forward` and :meth:`backward`, and may
    override :meth:`jvp`. `param_names` lists the local names of the layer's parameters
    in the order the network's params dict holds them ("W", "b" for a dense layer; empty
    for a layer without parameters). The network names layer k's parameter "W" as
    "W{k}", counting only layers with parameters, from 1 — the course's "W1", "b1".
    """

    @property
    def param_names(self) -> tuple[str, ...]:
        return ()

    @property
    def name(self) -> str:
        """A short description for messages: the class name and its settings."""
        return repr(self)

    def init(self, key: Array, in_shape: Shape, dtype: Any) -> tuple[Params, Shape]:
        """(params with local names, one example's output shape) for one example's `in_shape`."""
        raise NotImplementedError(f"{type(self).__name__} must implement `init`")

    @property
    def takes_ids(self) -> bool:
        """True for a layer whose input is integer token ids (an embedding): never cast to float."""
        return False

    def check_input(self, X: Array, dtype: Any) -> None:
        """Check the network's input X when this layer is first: floats of the params' `dtype`.

        A layer that takes other input (an embedding: integer token ids) overrides it.
        Called at trace time; X may be a tracer.
        """
        check_X_float(X, dtype)

    def forward(
        self, params: Mapping[str, Array], A_prev: Array, precision: str
    ) -> tuple[Any, Any]:
        """(A, cache): the layer's output for a batch (examples last) and what backward needs."""
        raise NotImplementedError(f"{type(self).__name__} must implement `forward`")

    def backward(
        self,
        params: Mapping[str, Array],
        cache: Any,
        dA: Array,
        precision: str,
        need_dA_prev: bool = True,
    ) -> tuple[Array | None, tuple[Product, ...]]:
        """(dA_prev, products) from dA = ∂L_i/∂A: the chain through this layer.

        `need_dA_prev` is False for the first layer, whose dA_prev (∂L_i/∂X) nobody
        asks for unless the input gradient is wanted; return None then.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement `backward`")

    def backward_from_dZ(
        self,
        params: Mapping[str, Array],
        cache: Any,
        dZ: Array,
        precision: str,
        need_dA_prev: bool = True,
    ) -> tuple[Array | None, tuple[Product, ...]]:
        """(dA_prev, products) from dZ = ∂L_i/∂Z, below the activation: (4) and the products.

        Only a layer that can end a network needs it: the loss gives dZ[L] there (fused
        A − Y, or (5) on dA[L]), and curvature pushes columns of ∂²L/∂z² from there.
        """
        raise NotImplementedError(
            f"{self.name} cannot be a network's output layer: the last layer must apply an "
            "activation the loss acts on, e.g. mg.layers.Dense(1, activation='sigmoid')"
        )

    @property
    def output_activation(self) -> Any:
        """The activation record the loss meets, for a layer that can end a network; else None."""
        return None

    def output_values(self, cache: Any) -> tuple[Array, Array, Any]:
        """(Z, A, activation record) of an output layer: where the loss meets the network."""
        raise NotImplementedError(
            f"{self.name} cannot be a network's output layer: the last layer must apply an "
            "activation the loss acts on, e.g. mg.layers.Dense(1, activation='sigmoid')"
        )

    def pre_activation_jvp(
        self,
        params: Mapping[str, Array],
        tangent: Mapping[str, Array],
        A_prev: Array,
        A_prev_dot: Array | None,
        precision: str,
    ) -> Array:
        """Ż, the tangent of an output layer's pre-activation Z: where the loss Hessian acts.

        Only a layer that can end a network needs it (curvature's G v). Dense: formula (6).
        """
        raise NotImplementedError(
            f"{self.name} cannot be a network's output layer: the last layer must apply an "
            "activation the loss acts on, e.g. mg.layers.Dense(1, activation='sigmoid')"
        )

    def jvp(
        self,
        params: Mapping[str, Array],
        tangent: Mapping[str, Array],
        cache: Any,
        A_prev: Array,
        A_prev_dot: Array | None,
        precision: str,
    ) -> Array:
        """Ȧ: the change of the output when the params move along `tangent` and A_prev along Ȧ_prev.

        The default is `jax.jvp` of :meth:`forward` (forward mode through the forward
        pass); dense layers override it with the hand-derived formulas (6) and (7).
        `A_prev_dot` is None where the input does not move (the first layer).
        """
        import jax.numpy as jnp

        a_dot = jnp.zeros_like(A_prev) if A_prev_dot is None else A_prev_dot

        def f(p, a):
            return self.forward(p, a, precision)[0]

        return jax.jvp(f, (dict(params), A_prev), (dict(tangent), a_dot))[1]
