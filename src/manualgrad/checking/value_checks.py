r"""Opt-in value checks: NaN/Inf in X, Y and params, and label ranges, usable inside `jit`.

The validation layer checks static facts only (shapes, dtypes, names), so it costs
nothing under `jax.jit`. Values — a NaN in the data, a label 2 for `bce`, a column of Y
that is not one-hot for `ce` — can only be checked when the arrays exist, which under
`jit` means at run time. These checks use `jax.experimental.checkify`: they are
functionalised into the compiled program and return an error value instead of raising
from inside XLA.

| check                         | when                          | message starts with              |
|-------------------------------|-------------------------------|----------------------------------|
| every entry of X is finite    | always                        | `X` has … non-finite entries     |
| every entry of W[l], b[l] too | always                        | `W2` has … non-finite entries    |
| every entry of Y is finite    | Y given                       | `Y` has … non-finite entries     |
| Y ∈ {0, 1}  ([0, 1] if soft)  | loss = "bce"                  | `Y` has … labels outside …       |
| columns of Y one-hot          | loss = "ce"                   | `Y` has … columns that are not … |
| (non-negative, sum 1 if soft) |                               |                                  |

Two ways to use them. Directly, in any function you wrap with `checkify.checkify`:

>>> import jax, jax.numpy as jnp, manualgrad as mg
>>> from jax.experimental import checkify
>>> from manualgrad.checking.value_checks import check_values
>>> params = mg.init_params([2, 3, 1], jax.random.key(0))
>>> X = jnp.array([[0.5, jnp.nan], [1.0, 2.0]]); Y = jnp.array([[1.0, 0.0]])
>>> def step(params, X, Y):
...     check_values(params, X, Y, loss="bce")
...     return mg.value_and_grad(params, X, Y, activations=["relu", "sigmoid"])
>>> err, (C, grads) = jax.jit(checkify.checkify(step))(params, X, Y)
>>> print(err.get()[:40])
`X` has 1 non-finite entry (NaN or ±Inf)

`err.throw()` raises it as a `checkify.JaxRuntimeError` (a no-op when all checks passed).
Or wrap a network: :func:`checked_value_and_grad` (`checked_value_and_grad(net)`) is
`net.value_and_grad` with the checks, returning `(err, (C, grads))`; jit it directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import checkify

from manualgrad._core.engine import check
from manualgrad._core.losses import get_loss
from manualgrad._network import Network

__all__ = [
    "check_values",
    "checked_value_and_grad",
]

Array = jax.Array


def _check_none(bad: Array, one: str, many: str) -> None:
    """checkify.check that the count `bad` is 0; the message says `one` for 1, `many` (with
    `{bad}`) for more, so it reads "1 entry", "3 entries"."""
    checkify.check(bad != 1, one)
    checkify.check(bad <= 1, many, bad=bad)


def _check_finite(name: str, x: Array) -> None:
    fix = (
        "clean or impute the data before training"
        if name in ("X", "Y")
        else "the parameters diverged — lower the learning rate or clip the gradients"
    )
    rest = f" (NaN or ±Inf): {fix}"
    bad = jnp.sum(~jnp.isfinite(x))
    _check_none(
        bad,
        f"`{name}` has 1 non-finite entry{rest}",
        f"`{name}` has {{bad}} non-finite entries{rest}",
    )


def _check_labels(Y: Array, loss: str, soft_labels: bool) -> None:
    """The loss's traced label rule (its record's `label_check`), if it has one."""
    rule = get_loss(loss).label_check
    if rule is not None:
        bad, one, many = rule(Y, soft_labels)
        _check_none(bad, one, many)


def check_values(
    params: Mapping[str, Array],
    X: Array,
    Y: Array | None = None,
    *,
    loss: str | None = None,
    soft_labels: bool = False,
) -> None:
    """Add run-time checks of the values of X, Y and params to the enclosing checkify'd function.

    X: (n_x, m), Y: (n_L, m) or None, params as for :func:`manualgrad.value_and_grad`.
    Shapes and names are validated first, at trace time, as every entry point does.
    `loss` selects the label check, its record's `label_check` ("bce": Y ∈ {0, 1};
    "ce": one-hot columns; "mse" or None: none); `soft_labels=True` relaxes them to
    Y ∈ [0, 1] and probability columns.
    Outside `checkify.checkify` the checks raise eagerly on concrete values and cannot
    be used under `jit`; inside, they cost one reduction per array.
    """
    params = check.as_params(params)
    check.check_params(params)
    X = check.as_array("X", X)
    m = check.check_X(params, X)
    if loss is not None:
        check.check_loss(loss, None)  # an unknown name raises the catalogue's error
    _check_finite("X", X)
    for name, p in params.items():
        _check_finite(name, p)
    if Y is not None:
        Y = check.as_array("Y", Y)
        check.check_Y(params, Y, m)
        _check_finite("Y", Y)
        if loss is not None:
            _check_labels(Y, loss, soft_labels)


def checked_value_and_grad(
    net: Network, *, soft_labels: bool = False
) -> Callable[..., tuple[checkify.Error, tuple[Array, dict[str, Array]]]]:
    """`net.value_and_grad` with :func:`check_values`, as `(params, X, Y, key=None) -> (err, out)`.

    `out` is `(C, grads)`.

    The label check follows `net.loss`. Jit the returned function directly; call
    `err.throw()` (or inspect `err.get()`, None when every check passed) afterwards.
    """

    def checked(params: Any, X: Any, Y: Any, key: Any = None):
        check_values(params, X, Y, loss=net.loss, soft_labels=soft_labels)
        return net.value_and_grad(params, X, Y, key)

    return checkify.checkify(checked)
