r"""`Embedding(vocab_size, dim)`: a dense layer on one-hot token ids, written as a lookup.

| symbol | shape      | meaning                                                     |
|--------|------------|-------------------------------------------------------------|
| `X`    | (T, m)     | integer token ids x_t(i) in [0, V), examples last           |
| `W`    | (d, V)     | the embedding E, one column per token (our (d_out, d_in))   |
| `Z`    | (d, T, m)  | z_t(i) = E e_{x_t(i)} = E[:, x_t(i)]                        |

An embedding is a dense layer without bias or activation on one-hot inputs: with
a_t = e_{x_t} (V,), z_t = E a_t. So its formulas are (2) and (1) with a one-hot A,
written sparsely (docs/embeddings_and_layernorm.md):

    Z = E[:, X]                                        forward: a gather
    dE = (1/m) Σ_i Σ_t dz_t(i) e_{x_t(i)}ᵀ             (2): a scatter-add into columns
    ‖dE_i‖² = Σ_{t,s} [x_t(i) = x_s(i)] dz_t(i)·dz_s(i)  the norm identity, a_t·a_s = [x_t = x_s]

Token ids are not differentiable, so an embedding is a network's first layer and
has no dA_prev (formula (4) would give ∂L/∂a_t, a derivative with respect to a one-hot
vector that no id can move along). Its product is a
:class:`~manualgrad._core.products.Lookup`, which holds the ids instead of the V·T·m
numbers of the one-hot A.

>>> import jax, jax.numpy as jnp, manualgrad as mg
>>> net = mg.network([mg.layers.Embedding(10, 4), mg.layers.Flatten(),
...                   mg.layers.Dense(2, activation="softmax")], loss="ce")
>>> params = net.init((3,), jax.random.key(0))  # one example: T = 3 token ids
>>> {k: v.shape for k, v in params.items()}
{'W1': (4, 10), 'W2': (2, 12), 'b2': (2, 1)}
>>> X = jnp.array([[1, 2], [3, 3], [0, 9]])  # (T, m) = (3, 2)
>>> net.forward(params, X)[0].shape
(2, 2)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from manualgrad._core.layer import Layer, Lookup, Params, Product, Shape
from manualgrad._core.validation import check_layer_int
from manualgrad._errors import DataError, DTypeError, ShapeError

Array = jax.Array

__all__ = ["Embedding"]


@dataclass(frozen=True)
class Embedding(Layer):
    """A table of `vocab_size` vectors of length `dim`: token ids (T, m) -> vectors (dim, T, m).

    | argument     | meaning                                       |
    |--------------|-----------------------------------------------|
    | `vocab_size` | V, the number of token ids (ids 0 … V − 1)    |
    | `dim`        | d, the length of each token's vector          |

    Params: "W" (d, V), initialised N(0, 1) (as `torch.nn.Embedding`); the network
    names it "W{l}". It must be the network's first layer; `net.init` gets one
    example's shape (T,). The L2 term acts on it like on any weight. Ids outside
    [0, V) are an error when X is concrete; under `jax.jit` (X traced) they are not
    checked and give NaN (`jnp.take`'s fill), so check data at the boundary.
    """

    vocab_size: int
    dim: int

    def __post_init__(self) -> None:
        check_layer_int("Embedding", "vocab_size", self.vocab_size)
        check_layer_int("Embedding", "dim", self.dim)

    @property
    def param_names(self) -> tuple[str, ...]:
        return ("W",)

    @property
    def name(self) -> str:
        return f"Embedding({self.vocab_size}, {self.dim})"

    @property
    def takes_ids(self) -> bool:
        return True

    def init(self, key: Array, in_shape: Shape, dtype: Any) -> tuple[Params, Shape]:
        """E ~ N(0, 1) of shape (d, V); one example's output shape (d, T) for its ids (T,)."""
        in_shape = tuple(in_shape)
        if len(in_shape) != 1:
            raise ShapeError(
                f"{self.name} takes integer token ids, one example of shape (T,), but its "
                f"input has shape {in_shape}: an embedding must be the first layer, given "
                "ids X of shape (T, m) (not one-hot vectors), and net.init((T,), key)"
            )
        (T,) = in_shape
        if T < 1:
            raise ShapeError(
                f"{self.name} got sequences of length T = 0 (one example of shape {in_shape}): "
                "each example needs at least one token; pad short sequences to a common "
                "T ≥ 1 with a padding id"
            )
        E = jax.random.normal(key, (self.dim, self.vocab_size), dtype)
        return {"W": E}, (self.dim, T)

    def check_input(self, X: Array, dtype: Any) -> None:
        """X must be integer ids (T, m); when X is concrete (not traced), in [0, V)."""
        if not jnp.issubdtype(X.dtype, jnp.integer):
            raise DTypeError(
                f"{self.name} takes integer token ids, got `X` of dtype {X.dtype}: pass the "
                "ids as integers, e.g. X.astype(jnp.int32) (not one-hot or float vectors)"
            )
        try:
            ids = np.asarray(X)
        except jax.errors.TracerArrayConversionError:
            return  # values are checked where X is concrete: eagerly, or at the data boundary
        if ids.size and ids.min() < 0:
            raise DataError(
                f"{self.name} got a negative token id, {int(ids.min())}: ids index the "
                f"table's columns, 0 … {self.vocab_size - 1}; map your tokens to ids ≥ 0 "
                "(e.g. with a vocabulary dict) and use a reserved id such as 0 for padding"
            )
        if ids.size and ids.max() >= self.vocab_size:
            raise DataError(
                f"{self.name} got token id {int(ids.max())}, but the table has ids 0 … "
                f"{self.vocab_size - 1}: build it with Embedding(vocab_size="
                f"{int(ids.max()) + 1}, ...) or more, or map rare tokens to an 'unknown' id"
            )

    def forward(
        self, params: Mapping[str, Array], A_prev: Array, precision: str
    ) -> tuple[Array, Array]:
        """Z = E[:, X], (d, T, m): column x_t(i) of E at position t of example i; cache X."""
        return jnp.take(params["W"], A_prev, axis=1), A_prev

    def backward(
        self,
        params: Mapping[str, Array],
        cache: Array,
        dA: Array,
        precision: str,
        need_dA_prev: bool = True,
    ) -> tuple[Array | None, tuple[Product, ...]]:
        """No dA_prev (ids are not differentiable); the product (ids, dZ = dA) for (2) and (1).

        Asked for the input gradient anyway (`custom_vjp_cost`'s ∂C/∂X), it returns the
        float0 zeros that `jax.grad` expects for an integer input.
        """
        dA_prev: Any = np.zeros(cache.shape, jax.dtypes.float0) if need_dA_prev else None
        return dA_prev, (Lookup("W", None, cache[None], dA),)

    def jvp(
        self,
        params: Mapping[str, Array],
        tangent: Mapping[str, Array],
        cache: Array,
        A_prev: Array,
        A_prev_dot: Array | None,
        precision: str,
    ) -> Array:
        """Ż = Ė[:, X]: z is linear in E, and the ids do not move."""
        return jnp.take(tangent["W"], A_prev, axis=1)
