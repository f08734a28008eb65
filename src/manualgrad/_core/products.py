r"""Product kinds: how a layer's parameters enter its Z, and every extension's formula for each.

A layer's backward hands the extensions one product per weight (:mod:`manualgrad._core.layer`).
Each kind of product is a record of the same four fields — the params' keys of the weight
and bias, what the weight multiplies (`A`) and dZ = ∂L_i/∂Z per example (no 1/m) — and
carries, as methods, the formulas every extension needs. The extensions call the methods
and never branch on the kind: dispatch happens here, in one place.

| kind         | Z at position t of example i | `A` holds                     | layer     |
|--------------|------------------------------|-------------------------------|-----------|
| `Product`    | W a_t + b                    | a_t, (d_in, T, m)             | Dense, Conv2D |
| `Lookup`     | E onehot(x_t) = E[:, x_t]    | the ids x_t, (1, T, m)        | Embedding |
| `ScaleShift` | γ ⊙ x̂_t + β                  | x̂_t, (d, T, m)                | LayerNorm |

| method                         | returns                                  | used by          |
|--------------------------------|------------------------------------------|------------------|
| `grads(params, m, …, weights)` | formula (2), (1/m) Σ_i s_i g_i           | the engine       |
| `example_grads(params)`        | formula (1), g_i for every i, (m, *shape)| per_example      |
| `squared_norms()`              | ‖g_i‖² of this product's params, (m,)    | norms, clip, DP  |
| `scaled(s)`                    | column i of dZ times s_i                 | clipping         |
| `squares(params, precision)`   | Σ_i g_i ⊙ g_i                            | Σg², variance    |
| `gram(precision)`              | ⟨g_i, g_j⟩, (m, m)                       | gradient Gram    |
| `diag_sums(params, precision)` | Σ_i Σ_c g_ic ⊙ g_ic of pushed columns    | diag GGN         |
| `kfac_sums(params, precision)` | Σ_i Σ_t ã ãᵀ and (1/T) Σ s sᵀ            | KFAC             |

A pushed product (curvature) has dZ (d_out, T, m, K): one slice per column of the loss
Hessian's square root; `as_examples()` makes its m·K (example, column) pairs m·K examples.
docs/per_example.md, docs/curvature.md and docs/embeddings_and_layernorm.md derive the
formulas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp

from manualgrad._core import dense
from manualgrad._core.precision import matmul
from manualgrad._errors import ConfigError

Array = jax.Array
Params = dict[str, Array]

__all__ = ["Lookup", "Product", "ScaleShift", "flat", "weighted_flat"]


def flat(x: Array) -> Array:
    """(d, T, m) -> (d, T·m): every position of every example as a column."""
    return x.reshape(x.shape[0], -1)


def weighted_flat(dZ: Array, weights: Array | None) -> Array:
    """dZ (d, T, m) as (d, T·m) columns, column (t, i) scaled by s_i when `weights` s (m,) is given.

    For T = 1 the scaling comes after the reshape, on the (d, m) matrix itself, so that the
    compiled program multiplies dZ once for both the matmul and the bias sum of (2) (a
    scaling before the reshape is duplicated by XLA into each consumer's layout).
    """
    if weights is None:
        return flat(dZ)
    if dZ.shape[1] == 1:
        return flat(dZ) * weights[None, :]
    return flat(dZ * weights[None, None, :])


def _example_weight_grad(dz: Array, a: Array) -> Array:
    """Formula (1) for one example: dW_i = Σ_t dz_t a_tᵀ. Shapes: dz (d_out, T), a (d_in, T)."""
    return matmul(dz, a, 1, 1, "default")  # (1), summed over the T positions


def _example_weight_grads(dZ: Array, A: Array) -> Array:
    """Formula (1) for every example: dW_i, shape (m, d_out, d_in), from dZ (d_out, T, m), A.

    The one expression of the materialised g_i: the squared norms and the weighted sum of a
    product that materialises (:meth:`Product.forms_example_grads`) both call it, so XLA
    computes the m copies once for the two.
    """
    return jax.vmap(_example_weight_grad, in_axes=(2, 2))(dZ, A)  # (1)


def _sum_squares(grads: Params) -> Params:
    """Σ_i g_i ⊙ g_i from per-example grads (m, *shape)."""
    return {k: jnp.sum(x * x, axis=0) for k, x in grads.items()}


class Product(NamedTuple):
    """One weight-sharing product Z = W A (+ b) of a layer, seen from the backward pass.

    | field    | shape          | meaning                                              |
    |----------|----------------|------------------------------------------------------|
    | `weight` | —              | the layer's local name of W ("W")                    |
    | `bias`   | —              | the local name of b added at every position, or None |
    | `A`      | (d_in, T, m)   | the input W multiplies at each of T positions        |
    | `dZ`     | (d_out, T, m)  | ∂L_i/∂Z at each position, per example (no 1/m)       |

    T = 1 for a dense layer. Column i of `dZ` depends on example i alone and is linear
    in that example's dz[L]: the fact clipping, DP and curvature rest on. This is the
    dense kind; :class:`Lookup` and :class:`ScaleShift` override every formula.
    """

    weight: str
    bias: str | None
    A: Array
    dZ: Array

    @property
    def positions(self) -> int:
        """T, the number of positions W is applied at in one example."""
        return self.A.shape[1]

    # ---- shared by every kind: column operations --------------------------------------

    def scaled(self, s: Array) -> Product:
        """Column i of dZ scaled by s_i (m,): the product of the loss s_i L_i."""
        return self._replace(dZ=self.dZ * s[None, None, :])

    def as_examples(self) -> Product:
        """A pushed product's m·K (example, column) pairs as m·K examples: dZ (d_out, T, m·K)."""
        d_out, T, m, K = self.dZ.shape
        return self._replace(A=jnp.repeat(self.A, K, axis=2), dZ=self.dZ.reshape(d_out, T, m * K))

    # ---- the dense formulas ----------------------------------------------------------

    def grads(
        self,
        params: Mapping[str, Array],
        *,
        m: int | float | Array,
        precision: str,
        weights: Array | None = None,
    ) -> Params:
        """Formula (2): dW = (1/m) Σ_i Σ_t s_i dz_t(i) a_t(i)ᵀ, db = (1/m) Σ_{i,t} s_i dz_t(i).

        Shapes: A (d_in, T, m), dZ (d_out, T, m) -> dW reshaped to W's shape, db to b's;
        s (m,) = `weights` (1 when None). The sums are
        :func:`manualgrad._core.dense.weight_grad` and `bias_grad` on the (d, T·m) columns.
        """
        W = params[self.weight]
        dZ = weighted_flat(self.dZ, weights)
        if weights is not None and self.forms_example_grads():
            # the g_i its squared norm formed, weighted: (1/m) Σ_i s_i dW_i, no second pass
            dW_i = _example_weight_grads(self.dZ, self.A)  # (1), (m, d_out, d_in)
            dW = matmul(weights / m, dW_i.reshape(dW_i.shape[0], -1), 0, 0, precision)  # (2)
        else:
            dW = dense.weight_grad(dZ, flat(self.A), precision=precision, m=m)  # (2), T·m columns
        grads = {self.weight: dW.reshape(W.shape)}
        if self.bias is not None:
            db = dense.bias_grad(dZ, m=m)  # (2)
            grads[self.bias] = db.reshape(params[self.bias].shape)
        return grads

    def example_grads(self, params: Mapping[str, Array]) -> Params:
        """Formula (1) for every example: {W: (m, *W.shape), b: (m, *b.shape)}.

        `jax.vmap` of dW_i = Σ_t dz_t(i) a_t(i)ᵀ, db_i = Σ_t dz_t(i) over the last axis.
        """
        W = params[self.weight]
        dW = _example_weight_grads(self.dZ, self.A)  # (1)
        grads = {self.weight: dW.reshape((-1, *W.shape))}
        if self.bias is not None:
            b = params[self.bias]
            grads[self.bias] = jnp.sum(self.dZ, axis=1).T.reshape((-1, *b.shape))  # (1)
        return grads

    def uses_norm_identity(self) -> bool:
        """fastDP's rule: the identity's T² cross terms against the d_in·d_out entries of dW_i."""
        d_in, T = self.A.shape[0], self.A.shape[1]
        d_out = self.dZ.shape[0]
        return d_in * d_out >= 2 * T * T

    def forms_example_grads(self) -> bool:
        """True where the squared norms materialise g_i (T > 1 and the identity costs more)."""
        return self.positions > 1 and not self.uses_norm_identity()

    def squared_norms(self) -> Array:
        """‖dW_i‖² (+ ‖db_i‖²) for every example, shape (m,): Σ_{t,s} (dz_t·dz_s)(a_t·a_s)."""
        A, dZ = self.A, self.dZ
        if self.positions == 1:
            dz_sq = jnp.sum(dZ[:, 0] * dZ[:, 0], axis=0)  # ‖dz(i)‖², (m,)
            a_sq = jnp.sum(A[:, 0] * A[:, 0], axis=0)  # ‖a(i)‖², (m,)
            bias = 1 if self.bias is not None else 0
            return dz_sq * (a_sq + bias)  # ‖dW_i‖_F² + ‖db_i‖² by (1)
        if self.uses_norm_identity():
            dz_dots = jnp.einsum("ptm,psm->tsm", dZ, dZ)  # dz_t(i) · dz_s(i), (T, T, m)
            a_dots = jnp.einsum("qtm,qsm->tsm", A, A)  # a_t(i) · a_s(i)
            total = jnp.sum(dz_dots * a_dots, axis=(0, 1))
        else:
            dW = _example_weight_grads(dZ, A)  # (1), (m, d_out, d_in)
            total = jnp.sum(dW * dW, axis=(1, 2))
        if self.bias is not None:
            db = jnp.sum(dZ, axis=1)  # (d_out, m)
            total = total + jnp.sum(db * db, axis=0)
        return total

    def squares(self, params: Mapping[str, Array], precision: str) -> Params:
        """Σ_i g_i ⊙ g_i of W and b (no 1/m), g_i by formula (1).

        T = 1: (g_i ⊙ g_i)_W = (dz_i ⊙ dz_i)(a_i ⊙ a_i)ᵀ, so the sum over i is formula (2)
        with dZ → dZ ⊙ dZ, A → A ⊙ A (and m = 1), one matmul. T > 1: g_i = Σ_t dz_t a_tᵀ
        does not factor; it is formed by formula (1) (m · d_out · d_in numbers) and squared.
        """
        if self.positions == 1:
            sq = self._replace(A=self.A * self.A, dZ=self.dZ * self.dZ)
            return sq.grads(params, m=1, precision=precision)  # (2) on squares
        return _sum_squares(self.example_grads(params))  # (1), squared

    def gram(self, precision: str) -> Array:
        """Σ_{t,s} (dz_t(i)·dz_s(j)) (a_t(i)·a_s(j) + 1): ⟨g_i, g_j⟩ of W and b, (m, m).

        By ⟨u vᵀ, u' v'ᵀ⟩_F = (u·u')(v·v') on (1); the bias adds Σ_{t,s} dz_t(i)·dz_s(j).
        Every position of every example is a column of the flattened (d, T·m) arrays, so
        both dot products are one matmul each, (T·m, T·m).
        """
        _, T, m = self.A.shape
        dz_dots = matmul(flat(self.dZ), flat(self.dZ), 0, 0, precision)
        a_dots = matmul(flat(self.A), flat(self.A), 0, 0, precision)
        bias = 1.0 if self.bias is not None else 0.0
        terms = dz_dots * (a_dots + bias)  # [(t, i), (s, j)]
        return jnp.sum(terms.reshape(T, m, T, m), axis=(0, 2))

    def diag_sums(self, params: Mapping[str, Array], precision: str) -> Params:
        """Σ_i Σ_c (g_ic ⊙ g_ic), g_ic = Σ_t s_ct(i) a_t(i)ᵀ, of a pushed product (dZ (…, m, K)).

        T = 1: with Q = Σ_c s_c ⊙ s_c (d_out, m), formula (2) on (Q, A ⊙ A) — the entry
        (j, k) is Σ_i Q_ji a_ki², because ∂z_j/∂W_jk = a_k. T > 1: every (example, column)
        pair is an example of formula (1) (:meth:`squares`), m·K·d_out·d_in numbers.
        """
        if self.positions == 1:
            Q = jnp.sum(self.dZ * self.dZ, axis=3)  # Σ_c s_c ⊙ s_c, (d_out, 1, m)
            sq = self._replace(A=self.A * self.A, dZ=Q)
            return sq.grads(params, m=1, precision=precision)  # (2) on squares
        return self.as_examples().squares(params, precision)

    def kfac_sums(self, params: Mapping[str, Array], precision: str) -> tuple[Array, Array]:
        """(Σ_i Σ_t ã_t ã_tᵀ, (1/T) Σ_i Σ_t Σ_c s_ct s_ctᵀ) of a pushed product, ã = [a; 1]."""
        A_t = flat(self.A)  # (d_in, T·m): every position of every example
        if self.bias is not None:
            A_t = jnp.concatenate([A_t, jnp.ones((1, A_t.shape[1]), A_t.dtype)], axis=0)
        S_flat = self.dZ.reshape(self.dZ.shape[0], -1)  # (d_out, T·m·K)
        return (
            matmul(A_t, A_t, 1, 1, precision),  # Σ_i Σ_t ã ãᵀ
            matmul(S_flat, S_flat, 1, 1, precision) / self.positions,  # KFC's 1/T
        )


# --------------------------------------------------------------------------------------
# Lookup: an embedding, Z = E onehot(x), with the one-hot A kept as ids
# --------------------------------------------------------------------------------------


def _example_lookup_grad(dz: Array, ids: Array, shape: tuple[int, ...]) -> Array:
    """Formula (1) with one-hot a_t: dE_i = Σ_t dz_t e_{x_t}ᵀ, dz_t added into column x_t.

    Shapes: dz (d, T), ids (T,) -> dE (d, V) = `shape`.
    """
    return jnp.zeros(shape, dz.dtype).at[:, ids].add(dz)  # (1), sparse


class Lookup(Product):
    """The product of an embedding: Z = E onehot(x), E (d, V), with A the ids x, not one-hot.

    | field    | shape       | meaning                                               |
    |----------|-------------|-------------------------------------------------------|
    | `weight` | —           | the key of E                                          |
    | `bias`   | —           | None                                                  |
    | `A`      | (1, T, m)   | the token ids x_t(i), integers in [0, V)              |
    | `dZ`     | (d, T, m)   | ∂L_i/∂z_t per position, per example (no 1/m)          |

    Formulas (1), (2) with a_t = e_{x_t}: every outer product dz_t e_{x_t}ᵀ is dz_t added
    to column x_t, and a_t · a_s = [x_t = x_s], so no one-hot (V·T·m numbers) is formed.
    """

    __slots__ = ()

    def grads(
        self,
        params: Mapping[str, Array],
        *,
        m: int | float | Array,
        precision: str,
        weights: Array | None = None,
    ) -> Params:
        """Formula (2): dE = (1/m) Σ_i Σ_t s_i dz_t(i) e_{x_t(i)}ᵀ, a scatter-add into columns.

        Shapes: ids (1, T, m), dZ (d, T, m) -> dE (d, V).
        """
        E = params[self.weight]
        dZ = weighted_flat(self.dZ, weights)  # (d, T·m)
        dE = jnp.zeros(E.shape, dZ.dtype).at[:, self.A.reshape(-1)].add(dZ) / m  # (2), sparse
        return {self.weight: dE}

    def example_grads(self, params: Mapping[str, Array]) -> Params:
        """Formula (1) for every example: dE_i = Σ_t dz_t(i) e_{x_t(i)}ᵀ, (m, d, V)."""
        shape = params[self.weight].shape
        dE = jax.vmap(_example_lookup_grad, in_axes=(2, 1, None))(self.dZ, self.A[0], shape)
        return {self.weight: dE}  # (1)

    def squared_norms(self) -> Array:
        """‖dE_i‖² = Σ_{t,s} [x_t(i) = x_s(i)] dz_t(i)·dz_s(i), shape (m,).

        The norm identity with a_t · a_s = e_{x_t} · e_{x_s} = [x_t = x_s]: the norm of the
        sparse row update, T² d per example, never the d·V entries of dE_i.
        """
        ids = self.A[0]  # (T, m)
        same = ids[:, None, :] == ids[None, :, :]  # [x_t = x_s], (T, T, m)
        dz_dots = jnp.einsum("ptm,psm->tsm", self.dZ, self.dZ)  # dz_t · dz_s
        return jnp.sum(jnp.where(same, dz_dots, 0), axis=(0, 1))

    def squares(self, params: Mapping[str, Array], precision: str) -> Params:
        """Σ_i dE_i ⊙ dE_i: formula (1) per example (m·d·V numbers), squared."""
        return _sum_squares(self.example_grads(params))

    def gram(self, precision: str) -> Array:
        """⟨dE_i, dE_j⟩ = Σ_{t,s} [x_t(i) = x_s(j)] dz_t(i)·dz_s(j), (m, m): one (T·m)² matmul."""
        T, m = self.A.shape[1], self.A.shape[2]
        ids = self.A.reshape(-1)  # (T·m,)
        dz_dots = matmul(flat(self.dZ), flat(self.dZ), 0, 0, precision)
        terms = jnp.where(ids[:, None] == ids[None, :], dz_dots, 0)  # [(t, i), (s, j)]
        return jnp.sum(terms.reshape(T, m, T, m), axis=(0, 2))

    def diag_sums(self, params: Mapping[str, Array], precision: str) -> Params:
        """Σ_i Σ_c dE_ic ⊙ dE_ic of the pushed columns: every (example, column) an example."""
        return self.as_examples().squares(params, precision)

    def kfac_sums(self, params: Mapping[str, Array], precision: str) -> tuple[Array, Array]:
        """(diag(counts), (1/T) Σ s sᵀ): Σ_i Σ_t e_x e_xᵀ is diagonal, the counts of each id."""
        V = params[self.weight].shape[1]
        ids = self.A.reshape(-1)
        counts = jnp.zeros((V,), self.dZ.dtype).at[ids].add(1)  # Σ_i Σ_t e_x e_xᵀ's diagonal
        S_flat = self.dZ.reshape(self.dZ.shape[0], -1)  # (d, T·m·K)
        return jnp.diag(counts), matmul(S_flat, S_flat, 1, 1, precision) / self.positions


# --------------------------------------------------------------------------------------
# ScaleShift: LayerNorm's Z = γ ⊙ x̂ + β, elementwise
# --------------------------------------------------------------------------------------


class ScaleShift(Product):
    """The product of a scale and shift: Z = γ ⊙ x̂ + β at every position, γ, β (d, 1).

    | field    | shape       | meaning                                   |
    |----------|-------------|-------------------------------------------|
    | `weight` | —           | the key of γ                              |
    | `bias`   | —           | the key of β                              |
    | `A`      | (d, T, m)   | x̂, what γ multiplies elementwise          |
    | `dZ`     | (d, T, m)   | ∂L_i/∂Z per position, per example          |

    Formula (1): dγ_i = Σ_t dz_t(i) ⊙ x̂_t(i), dβ_i = Σ_t dz_t(i) — 2d numbers per
    example, so every per-example quantity materialises them (no Gram trick is cheaper).
    """

    __slots__ = ()

    def grads(
        self,
        params: Mapping[str, Array],
        *,
        m: int | float | Array,
        precision: str,
        weights: Array | None = None,
    ) -> Params:
        """Formula (2): dγ = (1/m) Σ_{i,t} s_i dz_t(i) ⊙ x̂_t(i), dβ = (1/m) Σ_{i,t} s_i dz_t(i)."""
        dZ = weighted_flat(self.dZ, weights)  # (d, T·m)
        dgamma = jnp.sum(dZ * flat(self.A), axis=1, keepdims=True) / m  # (2)
        grads = {self.weight: dgamma.reshape(params[self.weight].shape)}
        if self.bias is not None:
            grads[self.bias] = dense.bias_grad(dZ, m=m).reshape(params[self.bias].shape)  # (2)
        return grads

    def example_grads(self, params: Mapping[str, Array]) -> Params:
        """Formula (1): dγ_i = Σ_t dz_t(i) ⊙ x̂_t(i), dβ_i = Σ_t dz_t(i), each (m, d, 1)."""
        shape = params[self.weight].shape
        grads = {self.weight: jnp.sum(self.dZ * self.A, axis=1).T.reshape((-1, *shape))}  # (1)
        if self.bias is not None:
            b = params[self.bias].shape
            grads[self.bias] = jnp.sum(self.dZ, axis=1).T.reshape((-1, *b))  # (1)
        return grads

    def _stacked(self) -> Array:
        """[dγ_i; dβ_i] for every example, (2d, m) (or (d, m) without β)."""
        parts = [jnp.sum(self.dZ * self.A, axis=1)]  # (1)
        if self.bias is not None:
            parts.append(jnp.sum(self.dZ, axis=1))  # (1)
        return jnp.concatenate(parts, axis=0)

    def squared_norms(self) -> Array:
        """‖dγ_i‖² + ‖dβ_i‖², shape (m,), from the materialised 2d numbers per example."""
        G = self._stacked()
        return jnp.sum(G * G, axis=0)

    def squares(self, params: Mapping[str, Array], precision: str) -> Params:
        """Σ_i dγ_i ⊙ dγ_i and Σ_i dβ_i ⊙ dβ_i."""
        return _sum_squares(self.example_grads(params))

    def gram(self, precision: str) -> Array:
        """⟨g_i, g_j⟩ = Gᵀ G with G = [dγ_i; dβ_i] (2d, m)."""
        G = self._stacked()
        return matmul(G, G, 0, 0, precision)

    def diag_sums(self, params: Mapping[str, Array], precision: str) -> Params:
        """Σ_i Σ_c g_ic ⊙ g_ic of the pushed columns: every (example, column) an example."""
        return self.as_examples().squares(params, precision)

    def kfac_sums(self, params: Mapping[str, Array], precision: str) -> tuple[Array, Array]:
        """Not defined: γ ⊙ x̂ + β is no matrix product, so it has no A ⊗ G factorisation."""
        raise ConfigError(
            f"`kfac_factors` factors the GGN block of a matrix product Z = W A, but "
            f"{self.weight} and {self.bias} are a LayerNorm's scale and shift "
            "(Z = γ ⊙ x̂ + β, elementwise), which has no Kronecker factors: use "
            "mg.curvature.diag_ggn for this network (its γ, β block is d numbers each)"
        )
