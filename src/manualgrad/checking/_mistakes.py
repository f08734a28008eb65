r"""The classic mistakes of a hand-written backward pass, recognised from the numbers.

A backward pass that disagrees with `jax.grad` is wrong somewhere; this module says
where and how. It knows, for every layer l, the forward values (A[l-1], W[l], Z[l],
A[l]) and the true backward values, and it recomputes layer l's outputs under each
known mistake. When the recomputed value equals what the user's function returned,
that mistake is the diagnosis, with the formula it breaks:

    (2)  dW[l] = (1/m) dZ[l] A[l-1]ᵀ,    db[l] = (1/m) Σ_i dZ[l](i)
    (4)  dA[l-1] = W[l]ᵀ dZ[l]
    (5)  dZ[l] = dA[l] ⊙ g[l]'(Z[l])

dZ and dA are, as in the course, derivatives of each example's own loss: no 1/m.

A mistake either changes one returned key (a `dW`, `db` or `dA` mistake: the missing
1/m, a transpose, a sum over the wrong axis) or the layer's dZ (a `dZ` mistake: the
wrong activation derivative, a sign, the fused A − Y with the wrong loss), which then
shows in all of dW[l], db[l] and dA[l-1]. Layer l is recomputed from the dA[l] the
user's own function returned when it returns one (the course's `L_model_backward`
does), so a mistake higher up is reported once, where it happens, and the layers
below it "follow from" it. Up to two mistakes in one layer are recognised.

>>> [m.id for m in MISTAKES if m.kind == "db"]  # doctest: +NORMALIZE_WHITESPACE
['db_missing_1_over_m', 'db_1_over_m_twice', 'db_without_keepdims', 'db_wrong_axis',
 'db_summed_over_everything', 'db_sign']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from manualgrad.checking.gradcheck import relative_difference

#: A hypothesis matches the user's value when their relative difference is at most this.
MATCH_TOL = 1e-8

#: The keys of one layer l, in backprop order: dZ[l] (the regularization assignment returns
#: it), dW[l], db[l], then dA[l-1].
KINDS = ("dZ", "dW", "db", "dA")


class Layer(NamedTuple):
    """What the diagnosis knows of layer l (numpy float64 arrays, examples as columns).

    A_prev (n_{l-1}, m), W (n_l, n_{l-1}), W_below = W[l-1] or None for l = 1,
    Z and A (n_l, m); Y (n_L, m) and `loss` matter for the output layer (l = L).
    `l2` is the L2 strength λ of the cost's term (λ/(2m)) Σ_l ‖W[l]‖² (0: none).
    With inverted dropout, `D` (n_l, m) is the 0/1 mask on this layer's output (A is then
    the dropped A[l] ⊙ D / keep_prob), `D_prev` the one on A_prev (None: no dropout there).
    """

    l: int
    L: int
    activation: str
    A_prev: np.ndarray
    W: np.ndarray
    W_below: np.ndarray | None
    Z: np.ndarray
    A: np.ndarray
    Y: np.ndarray
    loss: str
    l2: float = 0.0
    D: np.ndarray | None = None
    D_prev: np.ndarray | None = None
    keep_prob: float = 1.0

    @property
    def m(self) -> int:
        return self.Z.shape[1]

    @property
    def output(self) -> bool:
        return self.l == self.L


class Mistake(NamedTuple):
    """One classic mistake.

    `kind` is "dZ" (the layer's dZ is wrong) or the key it changes ("dW", "db", "dA");
    `label` names it in a few words, for a table.
    `values(layer, x)` gives the value(s) a backward pass with this mistake produces:
    for "dZ" from x = dA[l], otherwise from x = dZ[l] (an empty list when the mistake
    cannot occur in this layer). `text` explains it; `{l}` and `{prev}` are filled
    with l and l − 1. `mentions_m`: the text speaks of m, so a row adds its value.
    `fits(layer, x, user)`, when given, replaces `values` for a mistake with a free
    constant (an L2 term of unknown λ), fitted to the user's value.
    """

    id: str
    kind: str
    label: str
    formula: str
    text: str
    values: Callable[[Layer, np.ndarray], list[np.ndarray]]
    mentions_m: bool = False
    fits: Callable[[Layer, np.ndarray, np.ndarray], list[np.ndarray]] | None = None


def sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) = 1 / (1 + e^{−z})."""
    return 1 / (1 + np.exp(-z))


def _sigmoid_prime(z: np.ndarray) -> np.ndarray:
    s = sigmoid(z)
    return s * (1 - s)


def g_prime(activation: str, Z: np.ndarray) -> np.ndarray:
    """g'(Z) for the course's activations: relu'(z) = [z > 0] (relu'(0) = 0), σ'(z) = σ(1 − σ)."""
    if activation == "relu":
        return (Z > 0).astype(Z.dtype)
    return _sigmoid_prime(Z)


def correct_dZ(layer: Layer, dA: np.ndarray) -> np.ndarray:
    """Formula (5): dZ[l] = dA[l] ⊙ g'(Z[l])."""
    return dA * g_prime(layer.activation, layer.Z)  # (5)


def dropout_backward(layer: Layer, dA_dropped: np.ndarray) -> np.ndarray:
    """Inverted dropout's backward on A_prev: dA[l-1] = dÃ[l-1] ⊙ D[l-1] / keep_prob
    (unchanged without dropout there)."""
    if layer.D_prev is None:
        return dA_dropped
    return dA_dropped * layer.D_prev / layer.keep_prob


def correct(kind: str, layer: Layer, dZ: np.ndarray) -> np.ndarray:
    """The right dZ[l] (dZ itself), dW[l], db[l] (formula (2), with (λ/m) W[l] under L2) or
    dA[l-1] (formula (4), then the dropout mask on A[l-1] if any) from dZ[l]."""
    if kind == "dZ":
        return dZ
    if kind == "dW":
        return dZ @ layer.A_prev.T / layer.m + layer.l2 / layer.m * layer.W  # (2)
    if kind == "db":
        return np.sum(dZ, axis=1, keepdims=True) / layer.m  # (2)
    return dropout_backward(layer, layer.W.T @ dZ)  # (4)


def _matmul(a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """[a @ b], or [] when the shapes do not chain (a mistake that cannot run here)."""
    return [a @ b] if a.shape[1] == b.shape[0] else []


def _plus_multiple_of_W(layer: Layer, dZ: np.ndarray, user: np.ndarray) -> list[np.ndarray]:
    """The right dW[l] plus c W[l], c fitted to the user's dW (least squares); [] for c ≈ 0."""
    right = correct("dW", layer, dZ)
    if user.shape != right.shape:
        return []
    c = float(np.vdot(user - right, layer.W) / np.vdot(layer.W, layer.W))
    lam, m = layer.l2, layer.m
    named = (-lam / m, -lam / (2 * m), lam - lam / m) if lam else ()  # the L2 mistakes by name
    is_named = any(abs(c - x) <= MATCH_TOL * abs(c) for x in named)
    return [right + c * layer.W] if abs(c) > MATCH_TOL and not is_named else []


def _dA_values(layer: Layer, dA_dropped: list[np.ndarray]) -> list[np.ndarray]:
    """A dA[l-1] mistake's values, through the dropout mask of A[l-1] as the right one is."""
    if layer.D_prev is None:
        return dA_dropped
    return [dropout_backward(layer, v) for v in dA_dropped if v.shape == layer.D_prev.shape]


def _with_dropout(layer: Layer, value: Callable[[], np.ndarray]) -> list[np.ndarray]:
    """A dropout mistake's value, on layers whose A_prev was dropped (and where it differs)."""
    return _when(layer.D_prev is not None and 0 < layer.keep_prob < 1, value)


def _when(condition: bool, value: Callable[[], np.ndarray]) -> list[np.ndarray]:
    return [value()] if condition else []


# fmt: off
MISTAKES: tuple[Mistake, ...] = (
    # -- the layer's dZ (formula (5), and at the output the loss) ----------------------------
    Mistake("dz_sign", "dZ", "dZ sign flipped", "(5)",
            "dZ[{l}] has the wrong sign, so dW[{l}], db[{l}] and dA[{prev}] all flip: formula "
            "(5) is dZ[{l}] = dA[{l}] ⊙ g'(Z[{l}]); at the output check dA[L] = −(Y/A[L] − "
            "(1 − Y)/(1 − A[L])), or dZ[L] = A[L] − Y (not Y − A[L])",
            lambda layer, dA: [-correct_dZ(layer, dA)]),
    Mistake("fused_dZ_with_wrong_loss", "dZ", "A − Y with the wrong loss", "(5)",
            "dZ[{l}] = A − Y is the fused form of sigmoid + cross-entropy only; with the "
            "squared error it is dZ[{l}] = (A − Y) ⊙ σ'(Z[{l}]) (formula (5) at the output)",
            lambda layer, dA: _when(layer.output and layer.loss != "bce",
                                    lambda: layer.A - layer.Y)),
    Mistake("fused_dZ_used_as_dA", "dZ", "A − Y used as dA", "(5)",
            "A − Y is used as dA[{l}] and then multiplied by σ'(Z[{l}]): for cross-entropy "
            "dA[{l}] = −(Y/A − (1 − Y)/(1 − A)), or take dZ[{l}] = A − Y directly, without σ' "
            "(formula (5))",
            lambda layer, dA: _when(layer.output and layer.loss == "bce",
                                    lambda: (layer.A - layer.Y) * _sigmoid_prime(layer.Z))),
    Mistake("dz_without_derivative", "dZ", "g'(Z) missing", "(5)",
            "dZ[{l}] = dA[{l}]: the ⊙ g'(Z[{l}]) of formula (5) is missing",
            lambda layer, dA: [dA]),
    Mistake("sigmoid_derivative_on_relu", "dZ", "σ' on a relu layer", "(5)",
            "layer {l} is relu but dZ[{l}] uses the sigmoid derivative σ(Z)(1 − σ(Z)): formula "
            "(5) needs relu'(Z[{l}]) = 1 where Z > 0, else 0",
            lambda layer, dA: _when(layer.activation == "relu",
                                    lambda: dA * _sigmoid_prime(layer.Z))),
    Mistake("relu_derivative_on_sigmoid", "dZ", "relu' on the sigmoid layer", "(5)",
            "layer {l} is sigmoid but dZ[{l}] uses the relu derivative: formula (5) needs "
            "σ'(Z[{l}]) = A[{l}](1 − A[{l}])",
            lambda layer, dA: _when(layer.activation == "sigmoid",
                                    lambda: dA * (layer.Z > 0))),
    Mistake("derivative_at_A", "dZ", "σ' taken at A", "(5)",
            "σ' is evaluated at A[{l}] = σ(Z[{l}]) instead of at Z[{l}]: formula (5) takes "
            "g'(Z[{l}]) — the activation cache holds Z — and σ'(Z) = σ(Z)(1 − σ(Z)) = A(1 − A)",
            lambda layer, dA: _when(layer.activation == "sigmoid",
                                    lambda: dA * _sigmoid_prime(layer.A))),
    Mistake("a_one_minus_a_at_Z", "dZ", "Z(1 − Z) for σ'", "(5)",
            "σ'(Z[{l}]) is computed as Z(1 − Z): the form A(1 − A) of formula (5) needs "
            "A = σ(Z), not Z",
            lambda layer, dA: _when(layer.activation == "sigmoid",
                                    lambda: dA * layer.Z * (1 - layer.Z))),
    Mistake("relu_derivative_at_zero", "dZ", "relu'(0) = 1", "(5)",
            "relu'(0) = 1 where Z[{l}] is exactly 0: relu'(0) is 0, as in the course's "
            "relu_backward and in jax.nn.relu — write dZ[Z <= 0] = 0, not dZ[Z < 0] = 0 "
            "(formula (5))",
            lambda layer, dA: _when(layer.activation == "relu", lambda: dA * (layer.Z >= 0))),
    # -- dW[l] (formula (2)) -----------------------------------------------------------------
    Mistake("dW_missing_1_over_m", "dW", "1/m missing", "(2)",
            "dW[{l}] is m times too large: the 1/m of formula (2) is missing — "
            "dW[{l}] = (1/m) dZ[{l}] A[{prev}]ᵀ",
            lambda layer, dZ: [dZ @ layer.A_prev.T], mentions_m=True),
    Mistake("dW_1_over_m_twice", "dW", "1/m twice", "(2)",
            "dW[{l}] is m times too small: 1/m is applied twice — formula (2) divides by m "
            "once, and dZ (each example's own derivative) carries none",
            lambda layer, dZ: [dZ @ layer.A_prev.T / layer.m**2], mentions_m=True),
    Mistake("dW_transposed", "dW", "transposed", "(2)",
            "dW[{l}] is transposed: formula (2), dW[{l}] = (1/m) dZ[{l}] A[{prev}]ᵀ, has "
            "W[{l}]'s shape (n_{l}, n_{prev}); (1/m) A[{prev}] dZ[{l}]ᵀ is its transpose",
            lambda layer, dZ: [layer.A_prev @ dZ.T / layer.m]),
    Mistake("dW_l2_missing", "dW", "(λ/m) W missing", "(2)",
            "dW[{l}] misses the L2 term: with L2 regularization, formula (2) is "
            "dW[{l}] = (1/m) dZ[{l}] A[{prev}]ᵀ + (λ/m) W[{l}]",
            lambda layer, dZ: _when(layer.l2 > 0, lambda: dZ @ layer.A_prev.T / layer.m)),
    Mistake("dW_l2_half", "dW", "(λ/(2m)) W for (λ/m) W", "(2)",
            "dW[{l}] has (λ/(2m)) W[{l}], half the L2 term: the cost's (λ/(2m)) ‖W[{l}]‖² has "
            "derivative (λ/m) W[{l}] (the 2 of the square cancels the ½), so formula (2) is "
            "dW[{l}] = (1/m) dZ[{l}] A[{prev}]ᵀ + (λ/m) W[{l}]",
            lambda layer, dZ: _when(layer.l2 > 0, lambda: dZ @ layer.A_prev.T / layer.m
                                    + layer.l2 / (2 * layer.m) * layer.W)),
    Mistake("dW_l2_without_1_over_m", "dW", "λ W for (λ/m) W", "(2)",
            "dW[{l}] has λ W[{l}] without the 1/m: the L2 term of formula (2) is (λ/m) W[{l}] — "
            "dW[{l}] = (1/m) dZ[{l}] A[{prev}]ᵀ + (λ/m) W[{l}]",
            lambda layer, dZ: _when(layer.l2 > 0, lambda: dZ @ layer.A_prev.T / layer.m
                                    + layer.l2 * layer.W), mentions_m=True),
    Mistake("dW_sign", "dW", "sign flipped", "(2)",
            "dW[{l}] has the wrong sign: formula (2) is dW[{l}] = +(1/m) dZ[{l}] A[{prev}]ᵀ "
            "(the update subtracts it)",
            lambda layer, dZ: [-correct("dW", layer, dZ)]),
    Mistake("dW_l2_added", "dW", "(λ/m) W added", "(2)",
            "dW[{l}] has a multiple of W[{l}] added, an L2 term (λ/m) W[{l}] with another λ "
            "than the cost's (a default `lambd=` in the signature?): formula (2) is dW[{l}] = "
            "(1/m) dZ[{l}] A[{prev}]ᵀ, plus (λ/m) W[{l}] only when the cost has "
            "(λ/(2m)) Σ ‖W‖² (`--l2 λ`)",
            lambda layer, dZ: [], fits=_plus_multiple_of_W),
    # -- db[l] (formula (2)) -----------------------------------------------------------------
    Mistake("db_missing_1_over_m", "db", "1/m missing", "(2)",
            "db[{l}] is m times too large: the 1/m of formula (2) is missing — "
            "db[{l}] = (1/m) Σ_i dZ[{l}](i)",
            lambda layer, dZ: [np.sum(dZ, axis=1, keepdims=True)], mentions_m=True),
    Mistake("db_1_over_m_twice", "db", "1/m twice", "(2)",
            "db[{l}] is m times too small: 1/m is applied twice — formula (2) divides by m "
            "once, and dZ (each example's own derivative) carries none",
            lambda layer, dZ: [np.sum(dZ, axis=1, keepdims=True) / layer.m**2], mentions_m=True),
    Mistake("db_without_keepdims", "db", "no keepdims", "(2)",
            "db[{l}] has shape (n_{l},), not (n_{l}, 1): sum with keepdims=True — formula (2), "
            "db[{l}] = (1/m) np.sum(dZ[{l}], axis=1, keepdims=True); a flat db turns "
            "b − α db into an (n, n) matrix",
            lambda layer, dZ: [np.sum(dZ, axis=1) / layer.m]),
    Mistake("db_wrong_axis", "db", "summed over axis 0", "(2)",
            "db[{l}] is summed over axis 0 (the units) instead of axis 1 (the examples): "
            "formula (2), db[{l}] = (1/m) np.sum(dZ[{l}], axis=1, keepdims=True)",
            lambda layer, dZ: [np.sum(dZ, axis=0, keepdims=True) / layer.m,
                               np.sum(dZ, axis=0) / layer.m,
                               np.sum(dZ, axis=0, keepdims=True), np.sum(dZ, axis=0)]),
    Mistake("db_summed_over_everything", "db", "summed over all", "(2)",
            "db[{l}] is summed over every entry of dZ[{l}]: formula (2) sums over the examples "
            "only — db[{l}] = (1/m) np.sum(dZ[{l}], axis=1, keepdims=True)",
            lambda layer, dZ: [np.sum(dZ) / layer.m, np.sum(dZ)]),
    Mistake("db_sign", "db", "sign flipped", "(2)",
            "db[{l}] has the wrong sign: formula (2) is db[{l}] = +(1/m) Σ_i dZ[{l}](i)",
            lambda layer, dZ: [-correct("db", layer, dZ)]),
    # -- dA[l-1] (formula (4)) ---------------------------------------------------------------
    Mistake("dA_from_W_below", "dA", "W[l-1] for W[l]", "(4)",
            "dA[{prev}] = W[{prev}]ᵀ dZ[{l}] uses the wrong layer's weights: formula (4) is "
            "dA[{prev}] = W[{l}]ᵀ dZ[{l}], with the W of layer {l}'s own cache",
            lambda layer, dZ: [] if layer.W_below is None else _dA_values(
                layer, _matmul(layer.W_below.T, dZ))),
    Mistake("dA_without_transpose", "dA", "W for Wᵀ", "(4)",
            "dA[{prev}] = W[{l}] dZ[{l}] misses the transpose: formula (4) is "
            "dA[{prev}] = W[{l}]ᵀ dZ[{l}]",
            lambda layer, dZ: _dA_values(layer, _matmul(layer.W, dZ))),
    Mistake("dA_with_1_over_m", "dA", "1/m in dA", "(4)",
            "dA[{prev}] is m times too small: dA is each example's own derivative — formula (4), "
            "dA[{prev}] = W[{l}]ᵀ dZ[{l}], has no 1/m; it belongs in dW and db only (formula (2))",
            lambda layer, dZ: _dA_values(layer, [layer.W.T @ dZ / layer.m]), mentions_m=True),
    Mistake("dA_sign", "dA", "sign flipped", "(4)",
            "dA[{prev}] has the wrong sign: formula (4) is dA[{prev}] = +W[{l}]ᵀ dZ[{l}]",
            lambda layer, dZ: [-correct("dA", layer, dZ)]),
    # -- dA[l-1] through inverted dropout: dA[l-1] = (W[l]ᵀ dZ[l]) ⊙ D[l-1] / keep_prob ------
    Mistake("dropout_missing", "dA", "no dropout in backward", "(4)",
            "dA[{prev}] has no dropout: the forward pass dropped A[{prev}] with the mask D[{prev}] "
            "and divided by keep_prob, so the backward must do the same — dA[{prev}] = "
            "(W[{l}]ᵀ dZ[{l}]) ⊙ D[{prev}] / keep_prob (formula (4), then the mask)",
            lambda layer, dZ: _with_dropout(layer, lambda: layer.W.T @ dZ)),
    Mistake("dropout_mask_missing", "dA", "mask D not applied", "(4)",
            "dA[{prev}] is divided by keep_prob but not masked: apply the forward pass's own "
            "mask, dA[{prev}] = dA[{prev}] * D[{prev}], so the dropped units get no gradient "
            "(formula (4), then dA[{prev}] ⊙ D[{prev}] / keep_prob)",
            lambda layer, dZ: _with_dropout(layer, lambda: layer.W.T @ dZ / layer.keep_prob)),
    Mistake("dropout_not_scaled", "dA", "not divided by keep_prob", "(4)",
            "dA[{prev}] is masked but not divided by keep_prob: the forward pass scaled the kept "
            "units by 1/keep_prob, so the backward scales dA[{prev}] too — dA[{prev}] = "
            "(W[{l}]ᵀ dZ[{l}]) ⊙ D[{prev}] / keep_prob",
            lambda layer, dZ: _with_dropout(layer, lambda: layer.W.T @ dZ * layer.D_prev)),
    Mistake("dropout_times_keep_prob", "dA", "× keep_prob for ÷", "(4)",
            "dA[{prev}] is multiplied by keep_prob instead of divided: inverted dropout divides "
            "in both passes — dA[{prev}] = (W[{l}]ᵀ dZ[{l}]) ⊙ D[{prev}] / keep_prob",
            lambda layer, dZ: _with_dropout(
                layer, lambda: layer.W.T @ dZ * layer.D_prev * layer.keep_prob)),
)
# fmt: on

_BY_ID = {mistake.id: mistake for mistake in MISTAKES}


def describe(mistake_id: str, l: int | str = "l", m: int | None = None) -> str:
    """A mistake's explanation for layer `l` (or generic, with `[l]` and `[l-1]`)."""
    mistake = _BY_ID[mistake_id]
    prev = l - 1 if isinstance(l, int) else f"{l}-1"
    text = mistake.text.format(l=l, prev=prev)
    if mistake.mentions_m and m is not None:
        text += f" (m = {m})"
    return text


def _matches(user: np.ndarray, candidates: Sequence[np.ndarray]) -> bool:
    return any(
        c.shape == user.shape and relative_difference(user, c) <= MATCH_TOL for c in candidates
    )


class Finding(NamedTuple):
    """The verdict on one returned key.

    `difference`: relative difference to the truth (None when the shapes differ).
    `mistakes`: ids of :data:`MISTAKES` that explain the value (empty when it passes);
    "follows" when it is right for the wrong dA[l] it was computed from, "unknown"
    when nothing known explains it. `text`: the diagnosis, None when it passes.
    `alternatives`: other (mistakes, text) that explain the numbers equally well (on a
    network where, say, every Z[L] > 0, relu'(Z[L]) = 1 and a missing σ' coincide).
    """

    key: str
    layer: int
    shape: tuple[int, ...]
    expected_shape: tuple[int, ...]
    difference: float | None
    passed: bool
    mistakes: tuple[str, ...] = ()
    text: str | None = None
    alternatives: tuple[tuple[tuple[str, ...], str], ...] = ()


class _Explanation(NamedTuple):
    cost: int  # number of the layer's own mistakes (an upstream from a dA mistake counts)
    upstream: str  # "true", "given" (the user's dA[l], wrong), or a dA mistake id
    dz: str | None
    key: str | None


def _dz_options(layer: Layer, dA: np.ndarray) -> list[tuple[str | None, list[np.ndarray]]]:
    right = [correct_dZ(layer, dA)]
    if layer.D is not None and layer.activation == "relu":
        # the course's dZ = dA ⊙ (A > 0) with the dropped A: the same when dA is masked
        right.append(right[0] * layer.D)
    options: list[tuple[str | None, list[np.ndarray]]] = [(None, right)]
    for mistake in MISTAKES:
        if mistake.kind == "dZ":
            values = mistake.values(layer, dA)
            if values:
                options.append((mistake.id, values))
    return options


def _explanations(
    kind: str,
    layer: Layer,
    user: np.ndarray,
    upstreams: Sequence[tuple[str, np.ndarray, int]],
) -> list[_Explanation]:
    """Every way (≤ 2 mistakes) to get `user` as layer l's `kind` key, fewest mistakes first."""
    found = []
    key_mistakes = [m for m in MISTAKES if m.kind == kind]
    for upstream, dA, upstream_cost in upstreams:
        for dz_id, dZs in _dz_options(layer, dA):
            if kind == "dZ":  # the returned dZ[l] itself
                cost = upstream_cost + (dz_id is not None)
                if cost <= 2 and _matches(user, dZs):
                    found.append(_Explanation(cost, upstream, dz_id, None))
                continue
            for dZ in dZs:
                options: list[tuple[str | None, list[np.ndarray]]] = [
                    (None, [correct(kind, layer, dZ)])
                ]
                options += [
                    (m.id, m.fits(layer, dZ, user) if m.fits else m.values(layer, dZ))
                    for m in key_mistakes
                ]
                for key_id, values in options:
                    cost = upstream_cost + (dz_id is not None) + (key_id is not None)
                    if cost <= 2 and _matches(user, values):
                        found.append(_Explanation(cost, upstream, dz_id, key_id))
    return sorted(found, key=lambda e: e.cost)  # stable: the catalogue's order within a cost


def _text(e: _Explanation, layer: Layer) -> str:
    parts = [describe(i, layer.l, layer.m) for i in (e.dz, e.key) if i is not None]
    if e.upstream not in ("true", "given"):  # the core convention: an unseen dA[l] mistake
        parts.insert(0, "consistent with " + describe(e.upstream, layer.l + 1, layer.m))
    if e.upstream == "given":
        follows = (
            f"the dA[{layer.l}] it starts from is wrong (see above)"
            if parts
            else f"follows from dA[{layer.l}], which is wrong: layer {layer.l}'s formulas "
            "(5), (2) and (4), applied to it, give exactly this"
        )
        parts.append(follows)
    return "; and ".join(parts)


def _ids(e: _Explanation) -> tuple[str, ...]:
    ids = [i for i in (e.dz, e.key) if i is not None]
    if e.upstream not in ("true", "given"):
        ids.insert(0, e.upstream)
    if e.upstream == "given" and not ids:
        ids = ["follows"]
    return tuple(ids)


def _unexplained(layer: Layer, user: np.ndarray, truth: np.ndarray, where: str) -> str:
    text = f"no known mistake fits; {where}"
    if user.shape == truth.shape and np.any(truth):
        c = float(np.vdot(user, truth) / np.vdot(truth, truth))
        if c != 0 and relative_difference(user, c * truth) <= MATCH_TOL:
            text = f"it is {c:.6g} × the right value; " + text
    if user.dtype in (np.float32, np.float16):
        text += f" — it has dtype {user.dtype}: compute in float64, as the check does"
    return text


def _where(layer: Layer, kind: str, start: str, agree: Sequence[str] = ()) -> str:
    """Where the bug must be, for a key nothing explains; `start` is how dA[l] stands,
    `agree` the other keys of layer l that pass (then dZ[l] is right)."""
    l = layer.l
    formula = {"dA": "(4)", "dZ": "(5)"}.get(kind, "(2)")
    if start == "right" and agree:
        verb = "agrees" if len(agree) == 1 else "agree"
        return (
            f"{' and '.join(agree)} {verb}, so dZ[{l}] looks right: the mistake is in formula "
            f"{formula} for {kind}[{l - 1 if kind == 'dA' else l}]"
        )
    if start == "right":
        first = "the output layer" if layer.output else f"layer {l}"
        return (
            f"{first} is the first to go wrong (the dA[{l}] it starts from is right), so the "
            f"mistake is in its dZ[{l}] (formula (5)) or in formula {formula}"
        )
    if start == "given":
        return (
            f"the dA[{l}] it starts from is wrong too, but layer {l}'s formulas applied to it do "
            f"not give this either: layer {l} has a mistake of its own"
        )
    return (
        "a layer above already disagrees in a way no known mistake explains, and this may "
        "follow from it"
    )


def _choose(candidates: Mapping[str, list[_Explanation]]) -> dict[str, _Explanation]:
    """One explanation per failing key; one dZ mistake that explains all of them wins."""
    chosen = {kind: found[0] for kind, found in candidates.items() if found}
    if len(candidates) < 2 or not all(candidates.values()):
        return chosen
    layer_wide = [
        {(e.upstream, e.dz) for e in found if e.key is None} for found in candidates.values()
    ]
    common = set.intersection(*layer_wide)
    for e in next(iter(candidates.values())):  # fewest mistakes first
        if e.key is None and (e.upstream, e.dz) in common:
            return {kind: e for kind in candidates}
    return chosen


def _dZ_used(layer: Layer, e: _Explanation | None, dA: np.ndarray) -> np.ndarray:
    """The dZ[l] a user's layer computed from `dA`, under explanation `e`'s dZ mistake."""
    if e is None or e.dz is None:
        return correct_dZ(layer, dA)
    return _BY_ID[e.dz].values(layer, dA)[0]


def diagnose(
    layers: Sequence[Layer],
    returned: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    true_dA: Mapping[int, np.ndarray],
    *,
    tol: float,
) -> list[Finding]:
    """Check and explain every returned key, layer L down to 1.

    `returned` and `truth` map "dW{l}", "db{l}" (and "dA{l-1}" when the user's function
    returns them) to arrays; `true_dA[l]` is the right dA[l] for l = 1 … L (dA[L] is the
    loss's derivative with respect to A[L]). A key passes when its shape is right and its
    relative difference to the truth is ≤ `tol`. Returns one :class:`Finding` per key of
    `returned`, in backprop order (dW[L], db[L], dA[L-1], dW[L-1], …).
    """
    findings: list[Finding] = []
    n_layers = len(layers)
    # what the user's layer l starts from: their own dA[l] when returned (course), else the
    # dA[l] implied by the diagnosis of the layers above, plus its dA mistakes (core)
    implied: np.ndarray | None = true_dA[n_layers]
    unseen: list[tuple[str, np.ndarray, int]] = []
    for layer in reversed(layers):
        l = layer.l
        given = returned.get(f"dA{l}") if l < n_layers else None
        if given is not None and given.shape == true_dA[l].shape:
            start = "given" if relative_difference(given, true_dA[l]) > tol else "right"
            upstreams = [("given" if start == "given" else "true", given, 0)]
        elif implied is not None:
            start = "given" if relative_difference(implied, true_dA[l]) > tol else "right"
            upstreams = [("given" if start == "given" else "true", implied, 0), *unseen]
            start = "unknown" if start == "given" else start  # not the user's own numbers
        else:
            start, upstreams = "unknown", unseen
        rows: dict[str, Finding] = {}
        candidates: dict[str, list[_Explanation]] = {}
        for kind in KINDS:
            key = f"{kind}{l - 1 if kind == 'dA' else l}"
            if key not in returned:
                continue
            user, right = returned[key], truth[key]
            difference = relative_difference(user, right) if user.shape == right.shape else None
            passed = difference is not None and difference <= tol
            rows[kind] = Finding(key, l, user.shape, right.shape, difference, passed)
            if not passed:
                candidates[kind] = _explanations(kind, layer, user, upstreams)
        chosen = _choose(candidates)
        for kind, row in rows.items():
            e = chosen.get(kind)
            if row.passed:
                findings.append(row)
            elif e is None or (e.key == "dW_l2_added" and layer.W.size == 1):
                # a 1×1 W fits any wrong dW as right + c W: only other networks can tell
                user, right = returned[row.key], truth[row.key]
                agree = [r.key for r in rows.values() if r.passed]
                text = _unexplained(layer, user, right, _where(layer, kind, start, agree))
                weak = () if e is None else ((_ids(e), _text(e, layer)),)
                findings.append(row._replace(mistakes=("unknown",), text=text, alternatives=weak))
            else:
                others = tuple(
                    (_ids(x), _text(x, layer))
                    for x in candidates[kind]
                    if x.cost == e.cost and _ids(x) != _ids(e)
                )
                findings.append(
                    row._replace(mistakes=_ids(e), text=_text(e, layer), alternatives=others)
                )
        # dA[l-1] as this layer's diagnosis implies it, for the core convention
        if l == 1 or (candidates and len(chosen) < len(candidates)):
            implied, unseen = None, []  # a key of layer l is not understood
            continue
        e = next(iter(chosen.values()), None)
        dA = {tag: value for tag, value, _ in upstreams}.get(e.upstream) if e else None
        dZ = _dZ_used(layer, e, true_dA[l] if dA is None else dA)
        implied = correct("dA", layer, dZ)
        unseen = [
            (mistake.id, value, 1)
            for mistake in MISTAKES
            if mistake.kind == "dA"
            for value in mistake.values(layer, dZ)
            if value.shape == implied.shape
        ]
    return findings


def harmonize(findings: Sequence[Finding]) -> list[Finding]:
    """Settle ambiguous findings on the explanation the unambiguous ones agree on.

    Over several networks, a mistake that one network pins down (both signs of Z[L])
    is preferred where another network cannot tell it from an equal alternative.
    """
    votes: dict[tuple[str, ...], int] = {}
    for f in findings:
        if not f.passed and not f.alternatives:
            votes[f.mistakes] = votes.get(f.mistakes, 0) + 1
    settled = []
    for f in findings:
        if f.alternatives:
            options = [(f.mistakes, f.text or ""), *f.alternatives]
            ids, text = max(options, key=lambda o: votes.get(o[0], 0))  # ties: the first
            f = f._replace(mistakes=ids, text=text)
        settled.append(f)
    return settled


def summarize(findings: Sequence[Finding]) -> list[tuple[tuple[str, ...], list[str]]]:
    """Distinct diagnoses and the keys they cover: [(mistake ids, [keys]), …], first seen first.

    Keys are listed in backprop order (dW before db before dA, deeper layers first).
    """
    groups: dict[tuple[str, ...], set[str]] = {}
    for finding in findings:
        if not finding.passed:
            groups.setdefault(finding.mistakes, set()).add(finding.key)

    def order(key: str) -> tuple[int, int]:
        return KINDS.index(key[:2]), -int(key[2:])

    return [(ids, sorted(keys, key=order)) for ids, keys in groups.items()]


def label(finding: Finding) -> str:
    """A few words for a table cell: "1/m missing (2)", "follows from dA2", …."""
    words = []
    for i in finding.mistakes:
        if i == "follows":
            words.append(f"follows from dA{finding.layer}")
        elif i == "unknown":
            words.append("no known mistake (see below)")
        else:
            mistake = _BY_ID[i]
            unseen = mistake.kind == "dA" and not finding.key.startswith("dA")
            where = f"dA{finding.layer}: " if unseen else ""
            words.append(f"{where}{mistake.label} {mistake.formula}")
    return " + ".join(words)


def explain_ids(ids: tuple[str, ...]) -> str:
    """A generic explanation of a diagnosis (layer-independent), for a summary line."""
    texts = []
    for i in ids:
        if i == "follows":
            texts.append("they follow from a wrong dA above them (their own formulas are right)")
        elif i == "unknown":
            texts.append("no known mistake fits (each network says where it first goes wrong)")
        else:
            texts.append(describe(i))
    return "; and ".join(texts)
