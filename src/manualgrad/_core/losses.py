r"""Losses L(a[L], y) of one example, written from the output pre-activation z[L].

The cost over m examples is C = (1/m) Σ_i L(a[L](i), y(i)). Every loss here is
evaluated from Z[L] (the logits) in a form that stays finite when the output
saturates: there is never a log(0).

| name  | g[L]    | per-example loss L                       | stable form used            |
|-------|---------|------------------------------------------|-----------------------------|
| `bce` | sigmoid | −[y log a + (1 − y) log(1 − a)]          | softplus(z) − y z           |
| `ce`  | softmax | −Σ_k y_k log a_k (y one-hot, (n_L, m))   | −Σ_k y_k log_softmax(z)_k   |
| `mse` | any     | ½ ‖a − y‖²                               | as written                  |

Each loss provides dA[L] = ∂L/∂a[L] (for `bce` the course's
dAL = −(Y/AL − (1 − Y)/(1 − AL))). For sigmoid + bce and softmax + ce the product
of dA[L] with g[L]'(Z[L]) collapses to the fused, stable

    dZ[L] = A[L] − Y,

which is what the network backward uses (it never forms Y/AL). All functions take
(n_L, m) arrays, or (n_L,) for one example, and reduce over axis 0 (the outputs of
one example), returning one loss per example.

**What else a loss knows.** Everything that depends on which loss it is lives in its
:class:`Loss` record, so that no other module branches on a loss's name:

| field                  | what                                              | used by           |
|------------------------|---------------------------------------------------|-------------------|
| `hessian_sqrt`         | S with S Sᵀ = ∂²L/∂z[L]² of the GGN, exact        | curvature         |
| `sampled_hessian_sqrt` | S with E[S Sᵀ] = ∂²L/∂z[L]², from sampled labels  | curvature (MC)    |
| `hessian_vp`           | the loss Hessian at the split times J v           | curvature (G v)   |
| `prepare_labels`       | the host check of Y (and ce's one-hot encoding)   | data loading, CLI |
| `label_check`          | the same rule traced, for `checkify`              | value checks      |

The loss Hessian is taken at the GGN's split: on z[L] for the fused pairs (sigmoid +
bce: σ(1 − σ); softmax + ce: (Σ_k y_k)(diag(p) − p pᵀ)), on a[L] for mse (H = I),
brought to z[L] by formula (5) (square roots) or (7) and (5) (products).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from manualgrad._core.activations import Activation
from manualgrad._core.dense import activation_backward, activation_jvp

Array = jax.Array

__all__ = [
    "LOSSES",
    "Loss",
    "bce_dA",
    "bce_hessian_sqrt",
    "bce_hessian_vp",
    "bce_label_check",
    "bce_loss",
    "bce_prepare_labels",
    "bce_sampled_hessian_sqrt",
    "ce_dA",
    "ce_hessian_sqrt",
    "ce_hessian_vp",
    "ce_label_check",
    "ce_loss",
    "ce_prepare_labels",
    "ce_sampled_hessian_sqrt",
    "cost_from_losses",
    "fused_dZ",
    "get_loss",
    "mse_dA",
    "mse_hessian_sqrt",
    "mse_hessian_vp",
    "mse_loss",
    "mse_sampled_hessian_sqrt",
    "one_hot_labels",
    "output_activation",
    "output_backward",
]


def bce_loss(ZL: Array, AL: Array, Y: Array) -> Array:
    """L = −[y log σ(z) + (1 − y) log(1 − σ(z))] = softplus(z) − y z, summed over axis 0."""
    del AL
    return jnp.sum(jnp.logaddexp(0, ZL) - Y * ZL, axis=0)


def bce_dA(AL: Array, Y: Array) -> Array:
    """dA[L] = ∂L/∂a = −(y/a − (1 − y)/(1 − a)) (the course's dAL; infinite when a saturates)."""
    return -(Y / AL - (1 - Y) / (1 - AL))


def ce_loss(ZL: Array, AL: Array, Y: Array) -> Array:
    """L = −Σ_k y_k log a_k = −Σ_k y_k log_softmax(z)_k, over the classes on axis 0."""
    del AL
    return -jnp.sum(Y * jax.nn.log_softmax(ZL, axis=0), axis=0)


def ce_dA(AL: Array, Y: Array) -> Array:
    """dA[L] = ∂L/∂a_k = −y_k / a_k."""
    return -Y / AL


def mse_loss(ZL: Array, AL: Array, Y: Array) -> Array:
    """L = ½ ‖a − y‖², summed over the outputs on axis 0."""
    del ZL
    return 0.5 * jnp.sum((AL - Y) ** 2, axis=0)


def mse_dA(AL: Array, Y: Array) -> Array:
    """dA[L] = ∂L/∂a = a − y."""
    return AL - Y


def fused_dZ(AL: Array, Y: Array) -> Array:
    """dZ[L] = A[L] − Y: dA[L] ⊙ σ'(Z[L]) for sigmoid + bce, the softmax JVP for softmax + ce."""
    return AL - Y


# --------------------------------------------------------------------------------------
# The loss Hessian at the split, for curvature: square roots (columns last) and products
# --------------------------------------------------------------------------------------
#
# Shapes: Z, A, Y (n_L, m); a square root S (n_L, m, K) holds K columns per example at
# z[L], the column axis last so that the example axis keeps its place (and its
# sharding). `act` is the output activation's record.


def _to_z(S_A: Array, Z: Array, A: Array, act: Activation) -> Array:
    """Formula (5) at layer L on every column of S_A (n_L, m, K): from a[L] to z[L]."""

    def one(s):
        return activation_backward(s, Z, A, act)  # (5) at layer L

    return jax.vmap(one, in_axes=2, out_axes=2)(S_A)


def _eye_columns(Z: Array) -> Array:
    """I as K = n_L columns per example: (n_L, 1, n_L), e_c in column c."""
    return jnp.eye(Z.shape[0], dtype=Z.dtype)[:, None, :]


def bce_hessian_sqrt(Z: Array, A: Array, Y: Array, act: Activation) -> Array:
    """S[k, i, c] = δ_kc √(a_c (1 − a_c)): H = diag(a(1 − a)) on z (no dependence on y)."""
    del Y, act
    return _eye_columns(Z) * jnp.sqrt(A * (1 - A)).T[None, :, :]


def ce_hessian_sqrt(Z: Array, A: Array, Y: Array, act: Activation) -> Array:
    """S[k, i, c] = √p_c (δ_kc − p_k) √(Σ_k y_k): H = (Σ_k y_k)(diag(p) − p pᵀ) on z."""
    del act
    S = (_eye_columns(Z) - A[:, :, None]) * jnp.sqrt(A).T[None, :, :]
    return S * jnp.sqrt(jnp.sum(Y, axis=0))[None, :, None]


def mse_hessian_sqrt(Z: Array, A: Array, Y: Array, act: Activation) -> Array:
    """S = (5) on the columns of I: H = I on a[L], brought to z[L] by g'(Z[L])."""
    del Y
    n_L, m = Z.shape
    return _to_z(jnp.broadcast_to(_eye_columns(Z), (n_L, m, n_L)), Z, A, act)


def bce_sampled_hessian_sqrt(
    Z: Array, A: Array, Y: Array, act: Activation, key: Array, mc_samples: int
) -> Array:
    """S = (a − ŷ)/√M, ŷ ~ Bernoulli(a), M columns: E[S Sᵀ] = diag(a(1 − a))."""
    del Y, act
    n_L, m = Z.shape
    y_hat = jax.random.bernoulli(key, A[:, :, None], (n_L, m, mc_samples))
    return (A[:, :, None] - y_hat.astype(A.dtype)) / math.sqrt(mc_samples)


def ce_sampled_hessian_sqrt(
    Z: Array, A: Array, Y: Array, act: Activation, key: Array, mc_samples: int
) -> Array:
    """S = (p − e_ŷ) √(Σ_k y_k)/√M, ŷ ~ Cat(p), M columns: E[S Sᵀ] = (Σ_k y_k)(diag(p) − p pᵀ)."""
    del act
    n_L, m = Z.shape
    c = jax.random.categorical(key, Z, axis=0, shape=(mc_samples, m)).T  # (m, M)
    e_hat = jax.nn.one_hot(c, n_L, axis=0, dtype=A.dtype)  # (n_L, m, M)
    S = (A[:, :, None] - e_hat) / math.sqrt(mc_samples)
    return S * jnp.sqrt(jnp.sum(Y, axis=0))[None, :, None]


def mse_sampled_hessian_sqrt(
    Z: Array, A: Array, Y: Array, act: Activation, key: Array, mc_samples: int
) -> Array:
    """S = (5) on ε/√M, ε ~ N(0, I) (the residual of ŷ ~ N(a, I)), M columns: E[S Sᵀ] = H."""
    del Y
    n_L, m = Z.shape
    eps = jax.random.normal(key, (n_L, m, mc_samples), A.dtype) / math.sqrt(mc_samples)
    return _to_z(eps, Z, A, act)


def bce_hessian_vp(Z_dot: Array, Z: Array, A: Array, Y: Array, act: Activation) -> Array:
    """H ż on z[L] for sigmoid + bce: a(1 − a) ⊙ ż."""
    del Z, Y, act
    return A * (1 - A) * Z_dot


def ce_hessian_vp(Z_dot: Array, Z: Array, A: Array, Y: Array, act: Activation) -> Array:
    """H ż on z[L] for softmax + ce: (Σ_k y_k)(diag(p) − p pᵀ) ż, softmax's (7)."""

    return activation_jvp(Z_dot, Z, A, act) * jnp.sum(Y, axis=0)[None, :]  # (7)


def mse_hessian_vp(Z_dot: Array, Z: Array, A: Array, Y: Array, act: Activation) -> Array:
    """(5) on H ȧ with H = I on a[L], ȧ = (7) of ż: g'(Z) ⊙ (g'(Z) ⊙ ż) for elementwise g."""

    del Y
    A_dot = activation_jvp(Z_dot, Z, A, act)  # (7) at layer L: J v at a[L]
    return activation_backward(A_dot, Z, A, act)  # H = I, then (5) at layer L


# --------------------------------------------------------------------------------------
# The label rule: on the host (data loading, CLI) and traced (checkify value checks)
# --------------------------------------------------------------------------------------


def one_hot_labels(labels: Any, n_classes: int | None = None, source: str = "data") -> np.ndarray:
    """Integer class labels of shape (m,) or (1, m) -> one-hot Y of shape (K, m), on the host."""
    from manualgrad._errors import DataError

    labels = np.asarray(labels).reshape(-1)
    if not np.all(labels == np.round(labels)) or labels.min() < 0:
        bad = labels[(labels != np.round(labels)) | (labels < 0)][0]
        raise DataError(f"{source}: class labels must be integers 0 … K-1, found {bad}")
    K = int(labels.max()) + 1 if n_classes is None else n_classes
    if labels.max() >= K:
        raise DataError(f"{source}: label {int(labels.max())} does not fit {K} classes")
    return np.eye(K)[:, labels.astype(np.int64)]


def bce_prepare_labels(Y: np.ndarray, source: str) -> np.ndarray:
    """Y (n_y, m) with values in {0, 1}, else a DataError."""
    from manualgrad._errors import DataError, plural

    bad = (Y != 0) & (Y != 1)
    if bad.any():
        raise DataError(
            f"{source}: loss 'bce' needs labels in {{0, 1}}, found {Y[bad][0]:g} "
            f"({plural(int(bad.sum()), 'bad label')}); for more classes use --loss ce"
        )
    return Y


def ce_prepare_labels(Y: np.ndarray, source: str) -> np.ndarray:
    """One-hot Y (K, m), or one row of integer labels 0 … K-1, encoded here; else a DataError."""
    from manualgrad._errors import DataError

    if Y.shape[0] == 1:
        Y = one_hot_labels(Y, source=source)
        if Y.shape[0] < 2:
            raise DataError(f"{source}: loss 'ce' needs at least 2 classes, found 1")
        return Y
    ok = np.all((Y == 0) | (Y == 1), axis=0) & (Y.sum(axis=0) == 1)
    if not ok.all():
        i = int(np.argmin(ok))
        raise DataError(
            f"{source}: loss 'ce' needs one-hot Y (one 1 per column), but example {i} "
            f"is {Y[:, i].tolist()}"
        )
    return Y


#: (count of bad labels, the message for one, the message for several with `{bad}`);
#: the messages are `str.format` templates (checkify formats them), so braces are doubled.
LabelCheck = tuple[Array, str, str]


def bce_label_check(Y: Array, soft_labels: bool) -> LabelCheck:
    """Traced: Y ∈ {0, 1} (Y ∈ [0, 1] with soft labels)."""
    ok = (Y >= 0) & (Y <= 1) if soft_labels else (Y == 0) | (Y == 1)
    wanted = "[0, 1]" if soft_labels else "{{0, 1}}"  # braces escaped for .format
    rest = (
        f" outside {wanted}, which 'bce' needs: binary labels are 0 or 1 (for classes "
        "0 … K-1 use softmax with 'ce' and one-hot Y)"
    )
    return jnp.sum(~ok), f"`Y` has 1 label{rest}", f"`Y` has {{bad}} labels{rest}"


def ce_label_check(Y: Array, soft_labels: bool) -> LabelCheck:
    """Traced: one-hot columns (non-negative columns summing to 1 with soft labels)."""
    sums = jnp.sum(Y, axis=0)
    if soft_labels:
        ok = jnp.all(Y >= 0, axis=0) & (jnp.abs(sums - 1) <= 1e-3)
        wanted = "non-negative and summing to 1"
    else:
        ok = jnp.all((Y == 0) | (Y == 1), axis=0) & (sums == 1)
        wanted = "one-hot"
    rest = (
        f" not {wanted}, which 'ce' needs: encode class indices y with "
        "jax.nn.one_hot(y, n_L, axis=0)"
    )
    return (
        jnp.sum(~ok),
        f"`Y` has 1 column that is{rest}",
        f"`Y` has {{bad}} columns that are{rest}",
    )


class Loss(NamedTuple):
    """A loss: its per-example value from (Z[L], A[L], Y), its dA[L], and its output activations.

    `output_activations` lists the output activations it may follow (`None`: any).
    `fused_with` names the output activation for which dZ[L] = A[L] − Y.
    `default_output` is the output activation a network gets for this loss when the
    user names only the hidden ones (see :func:`output_activation`).

    What curvature needs, at z[L] with the output activation's record `act` (columns of
    a square root last, S: (n_L, m, K)):

    | field                                           | returns                        |
    |-------------------------------------------------|--------------------------------|
    | `hessian_sqrt(Z, A, Y, act)`                    | S, S Sᵀ = H (K = n_L)          |
    | `sampled_hessian_sqrt(Z, A, Y, act, key, M)`    | S, E[S Sᵀ] = H (K = M)         |
    | `hessian_vp(Ż, Z, A, Y, act)`                   | H Ż brought to z[L], (n_L, m)  |

    The label rule: `prepare_labels(Y, source)` checks a NumPy Y on the host (raising
    :class:`~manualgrad.DataError`) and returns it, one-hot encoded for ce given one row
    of class indices; `label_check(Y, soft_labels)` is the same rule traced, returning
    (count of bad labels, message for one, message for several). Both are None for a
    loss that takes any finite Y (mse).
    """

    name: str
    per_example: Callable[[Array, Array, Array], Array]
    dA: Callable[[Array, Array], Array]
    output_activations: tuple[str, ...] | None
    fused_with: str | None
    default_output: str
    hessian_sqrt: Callable[[Array, Array, Array, Activation], Array]
    sampled_hessian_sqrt: Callable[[Array, Array, Array, Activation, Array, int], Array]
    hessian_vp: Callable[[Array, Array, Array, Array, Activation], Array]
    prepare_labels: Callable[[np.ndarray, str], np.ndarray] | None = None
    label_check: Callable[[Array, bool], LabelCheck] | None = None


LOSSES: dict[str, Loss] = {
    "bce": Loss(
        "bce",
        bce_loss,
        bce_dA,
        ("sigmoid",),
        "sigmoid",
        "sigmoid",
        hessian_sqrt=bce_hessian_sqrt,
        sampled_hessian_sqrt=bce_sampled_hessian_sqrt,
        hessian_vp=bce_hessian_vp,
        prepare_labels=bce_prepare_labels,
        label_check=bce_label_check,
    ),
    "ce": Loss(
        "ce",
        ce_loss,
        ce_dA,
        ("softmax",),
        "softmax",
        "softmax",
        hessian_sqrt=ce_hessian_sqrt,
        sampled_hessian_sqrt=ce_sampled_hessian_sqrt,
        hessian_vp=ce_hessian_vp,
        prepare_labels=ce_prepare_labels,
        label_check=ce_label_check,
    ),
    "mse": Loss(  # regression: unbounded output, any finite Y
        "mse",
        mse_loss,
        mse_dA,
        None,
        None,
        "linear",
        hessian_sqrt=mse_hessian_sqrt,
        sampled_hessian_sqrt=mse_sampled_hessian_sqrt,
        hessian_vp=mse_hessian_vp,
    ),
}


def get_loss(name: str) -> Loss:
    """Look up a loss by name, with an error that lists the valid names."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        from manualgrad._errors import ConfigError

        raise ConfigError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}") from None


def output_activation(loss: str) -> str:
    """The output activation that goes with `loss`: sigmoid for bce, softmax for ce, linear for mse.

    The one place this rule lives; both command-line tools and any code that builds a
    network from hidden activations plus a loss take it from here.

    >>> output_activation("ce")
    'softmax'
    """
    return get_loss(loss).default_output


def cost_from_losses(losses: Array) -> Array:
    """C = (1/m) Σ_i L_i for a vector of per-example losses of shape (m,)."""
    return jnp.mean(losses)


def output_backward(ZL: Array, AL: Array, Y: Array, activation: Any, loss: Loss) -> Array:
    """dZ[L] of the output layer: where the loss meets the network.

    For sigmoid + bce and softmax + ce this is the fused, stable dZ[L] = A[L] − Y
    (it never forms Y/AL). Otherwise it is formula (5) applied to the loss's dA[L].
    Shapes: (n_L, m) or (n_L,).
    """
    if loss.fused_with == activation.name:
        return fused_dZ(AL, Y)
    return activation_backward(loss.dA(AL, Y), ZL, AL, activation)  # (5) at layer L
