"""Trace-time checks shared by every public entry point.

Everything here looks only at static facts (shapes, dtypes, names, tree structure,
and option values when they are concrete Python numbers), so it costs nothing under
`jax.jit`. Each message says what was expected, what arrived and how to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from manualgrad._errors import ConfigError, DTypeError, ShapeError
from manualgrad.activations import ACTIVATIONS, Activation, get_activation
from manualgrad.losses import LOSSES, Loss, get_loss
from manualgrad.precision import PRECISIONS

_KEY = re.compile(r"^([Wb])([1-9][0-9]*)$")


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(np.shape(x))


def _dtype(x: Any) -> np.dtype:
    return np.dtype(getattr(x, "dtype", None) or np.asarray(x).dtype)


def check_params(params: Mapping[str, Any]) -> int:
    """Check that params are {"W1", "b1", …, "WL", "bL"} with chaining shapes; return L."""
    if not isinstance(params, Mapping):
        raise ShapeError(
            f"expected `params` to be a dict {{'W1', 'b1', …}}, got {type(params).__name__}"
        )
    bad = sorted(k for k in params if not (isinstance(k, str) and _KEY.match(k)))
    if bad:
        raise ShapeError(
            f"`params` has unexpected keys {bad}: expected only 'W1', 'b1', …, 'WL', 'bL'"
        )
    n_layers = max((int(_KEY.match(k).group(2)) for k in params), default=0)
    if n_layers == 0:
        raise ShapeError("`params` is empty: expected 'W1', 'b1', …, 'WL', 'bL'")
    missing = [f"{p}{l}" for l in range(1, n_layers + 1) for p in "Wb" if f"{p}{l}" not in params]
    if missing:
        raise ShapeError(
            f"`params` is missing {missing}: layers must be numbered 1 … L without gaps, "
            f"each with a W and a b (found keys {sorted(params)})"
        )
    dtypes = set()
    for l in range(1, n_layers + 1):
        W, b = params[f"W{l}"], params[f"b{l}"]
        w_shape, b_shape = _shape(W), _shape(b)
        if len(w_shape) != 2:
            raise ShapeError(f"layer {l}: `W{l}` must be 2-D (n_{l}, n_{l - 1}), got {w_shape}")
        if b_shape != (w_shape[0], 1):
            hint = " — use b.reshape(-1, 1)" if b_shape == (w_shape[0],) else ""
            raise ShapeError(
                f"layer {l}: `b{l}` must have shape (n_{l}, 1) = ({w_shape[0]}, 1) to match "
                f"`W{l}` {w_shape}, got {b_shape}{hint}"
            )
        if l > 1:
            prev_rows = _shape(params[f"W{l - 1}"])[0]
            if w_shape[1] != prev_rows:
                raise ShapeError(
                    f"layer {l}: `W{l}` has shape {w_shape} but A{l - 1} has {prev_rows} rows "
                    f"(`W{l - 1}` is {_shape(params[f'W{l - 1}'])}); W[l] must be (n_l, n_{{l-1}})"
                )
        for name, arr in ((f"W{l}", W), (f"b{l}", b)):
            dt = _dtype(arr)
            if not jnp.issubdtype(dt, jnp.floating):
                raise DTypeError(
                    f"`{name}` has dtype {dt}; params must be floating point — use .astype(float)"
                )
            dtypes.add(dt)
    if len(dtypes) > 1:
        raise DTypeError(
            f"params mix dtypes {sorted(str(d) for d in dtypes)}: cast them all to one "
            "(e.g. jax.tree.map(lambda p: p.astype(jnp.float32), params))"
        )
    return n_layers


def params_dtype(params: Mapping[str, Any]) -> np.dtype:
    return _dtype(params["W1"])


def check_activations(activations: Sequence[str], n_layers: int) -> tuple[Activation, ...]:
    """Check one known activation name per layer, softmax only on the output layer."""
    if isinstance(activations, str) or not isinstance(activations, Sequence):
        raise ConfigError(
            f"`activations` must be a tuple of {n_layers} names, one per layer, got "
            f"{activations!r} — e.g. activations=('relu',) * {n_layers - 1} + ('sigmoid',)"
        )
    if len(activations) != n_layers:
        raise ConfigError(
            f"`activations` has {len(activations)} names but params have {n_layers} layers; "
            f"give one activation per layer (valid names: {sorted(ACTIVATIONS)})"
        )
    acts = tuple(get_activation(a) for a in activations)
    for l, act in enumerate(acts[:-1], start=1):
        if act.derivative is None:
            raise ConfigError(
                f"layer {l}: `softmax` is for the output layer only; "
                "use relu, leaky_relu, tanh, sigmoid or linear on hidden layers"
            )
    return acts


def check_loss(loss: str, output: Activation) -> Loss:
    """Check the loss name and that it fits the output activation."""
    spec = get_loss(loss)
    if spec.output_activations is not None and output.name not in spec.output_activations:
        raise ConfigError(
            f"loss {loss!r} needs a {' or '.join(spec.output_activations)} output layer, got "
            f"{output.name!r}; use "
            + ("'ce' with softmax, or 'mse'" if loss == "bce" else "'bce' with sigmoid, or 'mse'")
            + f" (valid losses: {sorted(LOSSES)})"
        )
    return spec


def check_X(params: Mapping[str, Any], X: Any) -> int:
    """Check X is (n_x, m) with n_x = W1.shape[1] and a float dtype matching params; return m."""
    n_x = _shape(params["W1"])[1]
    shape = _shape(X)
    if len(shape) != 2:
        raise ShapeError(
            f"expected `X` of shape (n_x, m) = ({n_x}, m) with examples as columns, got {shape}"
            + (f" — for one example use X.reshape({n_x}, 1)" if shape == (n_x,) else "")
        )
    if shape[0] != n_x:
        hint = (
            " — examples must be columns: did you pass X transposed? use X.T"
            if shape[1] == n_x
            else ""
        )
        raise ShapeError(
            f"expected `X.shape[0] == W1.shape[1]` (n_x = {n_x}), got X.shape = {shape}{hint}"
        )
    if shape[1] == 0:
        raise ShapeError("`X` has no examples (m = 0): expected at least one column")
    dt = _dtype(X)
    if not jnp.issubdtype(dt, jnp.floating):
        raise DTypeError(
            f"`X` has dtype {dt}; it must be floating point like the params "
            f"({params_dtype(params)}) — use X.astype({params_dtype(params)})"
        )
    if dt != params_dtype(params):
        raise DTypeError(
            f"`X` has dtype {dt} but params have {params_dtype(params)}: cast one to the other "
            f"(e.g. X.astype({params_dtype(params)}))"
        )
    return shape[1]


def check_Y(params: Mapping[str, Any], Y: Any, m: int) -> None:
    """Check Y is (n_L, m): one column per example, one row per output unit."""
    n_L = _shape(params[f"W{len(params) // 2}"])[0]
    shape = _shape(Y)
    if shape == (n_L, m):
        dt = _dtype(Y)
        if not (jnp.issubdtype(dt, jnp.number) or dt == np.bool_):
            raise DTypeError(f"`Y` has dtype {dt}; expected numbers")
        return
    if shape == (m,):
        hint = f" — use Y.reshape(1, {m})" if n_L == 1 else f" — one-hot encode it to ({n_L}, {m})"
    elif (shape == (m, 1) and n_L == 1) or shape == (m, n_L):
        hint = " — use Y.T (examples are columns)"
    elif len(shape) == 2 and shape[1] == m:
        hint = f": the output layer has {n_L} units but Y has {shape[0]} rows"
    else:
        hint = ""
    raise ShapeError(f"expected `Y` of shape (n_L, m) = ({n_L}, {m}), got {shape}{hint}")


def _concrete(x: Any) -> float | None:
    try:
        return float(x)
    except Exception:
        return None


def check_options(
    *,
    l2: Any = 0.0,
    keep_prob: Any = 1.0,
    key: Any = None,
    precision: str = "default",
    dtype: Any = None,
) -> None:
    """Check l2 ≥ 0, keep_prob in (0, 1], a key when dropout is on, and the precision name."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; expected one of {list(PRECISIONS)}")
    if precision == "bf16" and dtype is not None and np.dtype(dtype) != np.float32:
        raise ConfigError(
            f"precision 'bf16' keeps params and accumulation in float32, but params are {dtype}"
        )
    value = _concrete(l2)
    if value is not None and not value >= 0:
        raise ConfigError(f"`l2` must be ≥ 0, got {l2}")
    if not isinstance(keep_prob, int | float):
        raise ConfigError(
            f"`keep_prob` must be a Python float in (0, 1] (static under jit), got {keep_prob!r}"
        )
    if not 0 < keep_prob <= 1:
        raise ConfigError(f"`keep_prob` must be in (0, 1], got {keep_prob}")
    if keep_prob < 1 and key is None:
        raise ConfigError(
            f"dropout is on (keep_prob = {keep_prob}) but no `key` was given: pass "
            "key=jax.random.key(seed) to draw the masks"
        )
