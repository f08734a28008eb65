"""Trace-time checks shared by every public entry point.

Everything here looks only at static facts (shapes, dtypes, names, tree structure,
and option values when they are concrete Python numbers), so it costs nothing under
`jax.jit`. Each message says what was expected, what arrived and how to fix it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from manualgrad._core.activations import ACTIVATIONS, HIDDEN_ACTIVATIONS, Activation, get_activation
from manualgrad._core.losses import LOSSES, Loss, get_loss
from manualgrad._core.precision import PRECISIONS
from manualgrad._errors import ConfigError, DTypeError, ShapeError, plural

_KEY = re.compile(r"^([Wb])([1-9][0-9]*)$")


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(np.shape(x))


def _dtype(x: Any) -> np.dtype:
    """The dtype JAX will compute in (float64 numpy data is float32 unless x64 is on)."""
    dt = getattr(x, "dtype", None)
    dt = np.asarray(x).dtype if dt is None else dt
    return jax.dtypes.canonicalize_dtype(dt)


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _describe(x: Any) -> str:
    """A short, deterministic description of a bad value (never an object's address)."""
    if isinstance(x, str | int | float | bool | type(None)):
        return repr(x)
    if _is_array(x):
        return f"an array of dtype {x.dtype} and shape {_shape(x)}"
    return f"an object of type {type(x).__name__}"


def as_array(name: str, x: Any) -> jax.Array:
    """`jnp.asarray(x)`, with a clear error when `x` is not numeric data (None, strings, …)."""
    try:
        arr = jnp.asarray(x)
    except (TypeError, ValueError, OverflowError):
        arr = None
    if arr is None or not (
        jnp.issubdtype(arr.dtype, jnp.number) or jnp.issubdtype(arr.dtype, jnp.bool_)
    ):
        raise DTypeError(
            f"expected `{name}` to be a numeric array, got {_describe(x)}: pass a jax or numpy "
            f"array (e.g. jnp.asarray({name}, dtype=jnp.float32))"
        )
    return arr


def as_params(params: Any) -> dict[str, jax.Array]:
    """Check `params` is a mapping and convert its leaves (arrays, nested lists) to jax arrays.

    Keys are checked later by :func:`check_params`; leaves that are not numeric data raise
    :class:`DTypeError` naming the key.
    """
    _check_mapping(params)
    return {k: as_array(f"params[{k!r}]", v) for k, v in params.items()}


def _check_mapping(params: Any) -> None:
    if not isinstance(params, Mapping):
        raise ShapeError(
            f"expected `params` to be a dict {{'W1': W1, 'b1': b1, …}}, got "
            f"{type(params).__name__}: build it with manualgrad.init_params(layer_dims, key)"
        )


def check_params(params: Mapping[str, Any]) -> int:
    """Check that params are {"W1", "b1", …, "WL", "bL"} with chaining shapes; return L."""
    _check_mapping(params)
    bad = sorted((k for k in params if not (isinstance(k, str) and _KEY.match(k))), key=repr)
    if bad:
        raise ShapeError(
            f"`params` has unexpected keys {bad}: expected only 'W1', 'b1', …, 'WL', 'bL' "
            "(layers numbered from 1, no leading zeros) — rename or drop them"
        )
    n_layers = max((int(m.group(2)) for k in params if (m := _KEY.match(k))), default=0)
    if n_layers == 0:
        raise ShapeError(
            "`params` is empty: expected 'W1', 'b1', …, 'WL', 'bL' — build them with "
            "manualgrad.init_params(layer_dims, key)"
        )
    missing = [f"{p}{l}" for l in range(1, n_layers + 1) for p in "Wb" if f"{p}{l}" not in params]
    if missing:
        raise ShapeError(
            f"`params` is missing {missing}: layers must be numbered 1 … L without gaps, "
            f"each with a W and a b (found keys {sorted(params)})"
        )
    dtypes = set()
    for l in range(1, n_layers + 1):
        W, b = params[f"W{l}"], params[f"b{l}"]
        for name, arr in ((f"W{l}", W), (f"b{l}", b)):
            if not _is_array(arr):
                raise DTypeError(
                    f"layer {l}: `{name}` is {_describe(arr)}, expected an array: convert the "
                    "leaves with params = {k: jnp.asarray(v) for k, v in params.items()}"
                )
        w_shape, b_shape = _shape(W), _shape(b)
        if len(w_shape) != 2:
            raise ShapeError(
                f"layer {l}: `W{l}` must be 2-D (n_{l}, n_{l - 1}), got shape {w_shape}"
                + (f" — use W{l}.reshape(1, -1) for one unit" if len(w_shape) == 1 else "")
            )
        if 0 in w_shape:
            raise ShapeError(
                f"layer {l}: `W{l}` has shape {w_shape}, expected (n_{l}, n_{l - 1}) with at "
                "least one unit on each side: drop the empty layer"
            )
        if b_shape != (w_shape[0], 1):
            hint = (
                f" — use b{l}.reshape(-1, 1)"
                if b_shape == (w_shape[0],)
                else f": b[l] has one row per unit of layer {l}, like the rows of `W{l}`"
            )
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
                    f"layer {l}: `{name}` has dtype {dt}, expected a real floating dtype: "
                    f"use {name}.astype(jnp.float32)"
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


def params_dtype_of(params: Mapping[str, Any]) -> np.dtype:
    """The dtype of the params (of their first leaf; :func:`check_param_keys` checks they agree)."""
    return _dtype(next(iter(params.values())))


def check_layer_count(params: Mapping[str, Any], n_layers: int, spec: Any) -> None:
    """Check a dense network's params have one (W, b) per layer, with each layer's units."""
    if n_layers != spec.n_layers:  # the catalogue's message for a count that does not match
        check_activations([getattr(layer, "activation", "?") for layer in spec.layers], n_layers)
    for l, layer in enumerate(spec.layers, start=1):
        units, rows = getattr(layer, "units", None), _shape(params[f"W{l}"])[0]
        if units is not None and units != rows:
            raise ShapeError(
                f"layer {l} is {layer.name} but `W{l}` has shape {_shape(params[f'W{l}'])} "
                f"({rows} units): build the params with net.init for this network"
            )


def check_param_keys(params: Mapping[str, Any], expected: Sequence[str]) -> None:
    """Check params have exactly the keys the network's layers name, floats of one dtype."""
    _check_mapping(params)
    missing = [k for k in expected if k not in params]
    extra = sorted((k for k in params if k not in expected), key=repr)
    if missing or extra:
        raise ShapeError(
            f"`params` do not fit the network's layers: expected the keys {list(expected)}"
            + (f", missing {missing}" if missing else "")
            + (f", unexpected {extra}" if extra else "")
            + " — build them with net.init(input_shape, key)"
        )
    dtypes = set()
    for k in expected:
        arr = params[k]
        if not _is_array(arr):
            raise DTypeError(f"`{k}` is {_describe(arr)}, expected an array")
        dt = _dtype(arr)
        if not jnp.issubdtype(dt, jnp.floating):
            raise DTypeError(
                f"`{k}` has dtype {dt}, expected a real floating dtype: use {k}.astype(jnp.float32)"
            )
        dtypes.add(dt)
    if len(dtypes) > 1:
        raise DTypeError(
            f"params mix dtypes {sorted(str(d) for d in dtypes)}: cast them all to one "
            "(e.g. jax.tree.map(lambda p: p.astype(jnp.float32), params))"
        )


def check_param_shapes(params: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]]) -> None:
    """Check every parameter has the shape its layer's init gives for the input's shape."""
    for k, shape in expected.items():
        got = _shape(params[k])
        if got != tuple(shape):
            raise ShapeError(
                f"`{k}` has shape {got} but the network's layers give {tuple(shape)} for this "
                "input: build the params with net.init(input_shape, key) for X's example shape"
            )


def check_X_examples_last(X: Any) -> int:
    """Check X has at least two axes, examples last, and at least one example; return m."""
    shape = _shape(X)
    if len(shape) < 2:
        raise ShapeError(
            f"expected `X` with examples on the last axis, (…, m), got shape {shape} — for one "
            "example add the axis: X[..., None]"
        )
    if shape[-1] == 0:
        raise ShapeError(f"`X` has no examples (m = 0), got X.shape = {shape}")
    return shape[-1]


def check_X_dtype(params: Mapping[str, Any], X: Any) -> None:
    """Check X is floating point with the params' dtype."""
    check_X_float(X, params_dtype_of(params))


def check_X_float(X: Any, want: Any) -> None:
    """Check X is floating point with the dtype `want` (the params')."""
    dt = _dtype(X)
    if not jnp.issubdtype(dt, jnp.floating) or dt != want:
        raise DTypeError(f"`X` has dtype {dt} but params have {want}: use X.astype({want})")


def check_Y_columns(Y: Any, m: int, n_L: int | None) -> None:
    """Check Y is (n_L, m): one column per example (any network)."""
    shape = _shape(Y)
    if len(shape) != 2 or shape[1] != m or (n_L is not None and shape[0] != n_L):
        rows = "n_L" if n_L is None else n_L
        raise ShapeError(
            f"expected `Y` of shape (n_L, m) = ({rows}, {m}), one column per example, got {shape}"
            + (" — use Y.T (examples are columns)" if len(shape) == 2 and shape[0] == m else "")
        )


def check_activations(activations: Sequence[str], n_layers: int) -> tuple[Activation, ...]:
    """Check one known activation name per layer, softmax only on the output layer.

    Any sequence of names is accepted (a list works eagerly), but under `jax.jit` the
    static `activations` must be hashable: pass a tuple.
    """
    example = f"activations={('relu',) * (n_layers - 1) + ('sigmoid',)}"
    if isinstance(activations, str) or not isinstance(activations, Sequence):
        raise ConfigError(
            f"expected `activations` to be a tuple of {n_layers} names, one per layer, got "
            f"{_describe(activations)} — e.g. {example}"
        )
    if len(activations) != n_layers:
        raise ConfigError(
            f"`activations` has {plural(len(activations), 'name')} but params have "
            f"{plural(n_layers, 'layer')}: "
            f"give one activation per layer, e.g. {example} (valid names: {sorted(ACTIVATIONS)})"
        )
    acts = []
    for l, name in enumerate(activations, start=1):
        if not isinstance(name, str) or name not in ACTIVATIONS:
            raise ConfigError(
                f"layer {l}: unknown activation {_describe(name)}; expected one of "
                f"{sorted(ACTIVATIONS)}"
            )
        acts.append(get_activation(name))
    for l, act in enumerate(acts[:-1], start=1):
        check_hidden_activation(l, act.name)
    return tuple(acts)


def check_hidden_activation(l: int, name: str) -> None:
    """Check that hidden layer l's activation is elementwise (softmax is for the output only)."""
    if name not in HIDDEN_ACTIVATIONS:
        raise ConfigError(
            f"layer {l}: `{name}` is for the output layer only; use "
            f"{', '.join(HIDDEN_ACTIVATIONS[:-1])} or {HIDDEN_ACTIVATIONS[-1]} on hidden layers"
        )


def check_loss(loss: Any, output: Activation | None) -> Loss:
    """Check the loss name and, when `output` is given, that it fits the output activation."""
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ConfigError(f"unknown loss {_describe(loss)}; expected one of {sorted(LOSSES)}")
    spec = get_loss(loss)
    if output is None:
        return spec
    if spec.output_activations is not None and output.name not in spec.output_activations:
        fits = [
            name
            for name, other in LOSSES.items()
            if other.output_activations is not None and output.name in other.output_activations
        ]
        instead = " or ".join(repr(name) for name in fits) + (" or " if fits else "")
        raise ConfigError(
            f"loss {loss!r} needs a {' or '.join(spec.output_activations)} output layer, got "
            f"{output.name!r}; use {instead}'mse' with a {output.name} output, or a "
            f"{' or '.join(spec.output_activations)} output with {loss!r} "
            f"(valid losses: {sorted(LOSSES)})"
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
            + (" — flatten each example to a column: X.reshape(-1, m)" if len(shape) > 2 else "")
        )
    if shape[0] != n_x:
        hint = (
            " — examples must be columns: did you pass X transposed? use X.T"
            if shape[1] == n_x
            else f": `W1` {_shape(params['W1'])} expects {n_x} input features"
        )
        raise ShapeError(
            f"expected `X.shape[0] == W1.shape[1]` (n_x = {n_x}), got X.shape = {shape}{hint}"
        )
    if shape[1] == 0:
        raise ShapeError(
            f"`X` has no examples (m = 0), got X.shape = {shape}: expected at least one column"
        )
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
    """Check Y is (n_L, m) for a dense network's params: n_L is the last W's rows."""
    check_labels(Y, m, _shape(params[f"W{len(params) // 2}"])[0])


def check_labels(Y: Any, m: int, n_L: int | None) -> None:
    """Check Y is (n_L, m): one column per example, one row per output unit; real numbers.

    `n_L` None: the number of output units is not known here, so only the columns count.
    """
    if n_L is None:
        check_Y_columns(Y, m, None)
        return
    shape = _shape(Y)
    if shape == (n_L, m):
        dt = _dtype(Y)
        if not (
            jnp.issubdtype(dt, jnp.integer) or jnp.issubdtype(dt, jnp.floating) or dt == np.bool_
        ):
            raise DTypeError(
                f"`Y` has dtype {dt}; expected real labels (bool, int or float) — "
                "use Y.astype(X.dtype)"
            )
        return
    if shape == (m,):
        hint = (
            f" — use Y.reshape(1, {m})"
            if n_L == 1
            else f" — class labels? one-hot encode them to ({n_L}, {m}): jax.nn.one_hot(Y, {n_L}).T"
        )
    elif shape == (1, m) and n_L > 1:
        hint = (
            f" — class labels? one-hot encode them to ({n_L}, {m}): jax.nn.one_hot(Y[0], {n_L}).T"
        )
    elif (shape == (m, 1) and n_L == 1) or shape == (m, n_L):
        hint = " — use Y.T (examples are columns)"
    elif len(shape) == 2 and shape[1] == m:
        hint = f": the output layer has {n_L} units but Y has {shape[0]} rows"
    else:
        hint = f": Y needs one column per example of X (m = {m}) and one row per output unit"
    raise ShapeError(f"expected `Y` of shape (n_L, m) = ({n_L}, {m}), got {shape}{hint}")


def check_sequence_labels(Y: Any, m: int, out_shape: tuple[int, ...]) -> None:
    """Check Y is (n_L, T, m) for a network whose output is a sequence (n_L, T) per example."""
    want = (*out_shape, m)
    shape = _shape(Y)
    if shape == want:
        return
    if shape == (m, *out_shape[::-1]):
        hint = " — labels examples first (m, T, n_L)? use jnp.transpose(Y, (2, 1, 0))"
    elif len(shape) == 2 and shape == (out_shape[0], m):
        hint = (
            ": one label per example, but the network outputs one per time step — give "
            "labels (n_L, T, m), or end the recurrent layer with return_sequences=False"
        )
    else:
        hint = ": one label vector per time step of each example, examples last"
    raise ShapeError(
        f"expected `Y` of shape (n_L, T, m) = {want} for the network's sequence output, "
        f"got {shape}{hint}"
    )


def check_caches(caches: Any, n_layers: int) -> None:
    """Check `caches` is forward's `Caches(layers, masks)`, one cache and mask per layer."""
    layers, masks = getattr(caches, "layers", None), getattr(caches, "masks", None)
    if (
        not isinstance(layers, tuple)
        or not isinstance(masks, tuple)
        or len(layers) != n_layers
        or len(masks) != n_layers
    ):
        got = f"{len(caches)} items" if isinstance(caches, tuple) else _describe(caches)
        raise ShapeError(
            f"expected `caches` to be forward's Caches(layers, masks) for {n_layers} layers, "
            f"got {got}: pass the second output of manualgrad.forward (or net.forward)"
        )


def check_input_shape(input_shape: Any, key: Any, dtype: Any) -> tuple[int, ...]:
    """Check `net.init`'s one-example input shape (positive ints, features first), key and dtype."""
    shape = list(input_shape) if isinstance(input_shape, Sequence) else None
    if (
        shape is None
        or not shape
        or any(isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1 for n in shape)
    ):
        raise ShapeError(
            f"`input_shape` must be one example's shape, positive ints with features first, "
            f"got {shape if shape is not None else _describe(input_shape)}: e.g. (n_x,) for "
            "vectors, (H, W, C) for images"
        )
    check_init([1, 1], key, dtype)  # the key and dtype checks
    return tuple(int(n) for n in shape)


def _concrete(x: Any) -> float | None:
    try:
        return float(x)
    except Exception:
        return None


def _check_real_scalar(name: str, x: Any, example: str) -> float | None:
    """Check `x` is a real scalar (Python number or 0-d array); return its value when concrete."""
    if isinstance(x, bool) or not (
        isinstance(x, int | float) or (_is_array(x) and _shape(x) == ())
    ):
        raise ConfigError(
            f"expected `{name}` to be a real scalar, got {_describe(x)}: e.g. {name}={example}"
        )
    dt = _dtype(x)
    if _is_array(x) and not (jnp.issubdtype(dt, jnp.floating) or jnp.issubdtype(dt, jnp.integer)):
        raise ConfigError(f"expected `{name}` to be a real scalar, got dtype {dt}")
    return _concrete(x)


def check_layer_int(layer: str, name: str, value: Any, *, minimum: int = 1) -> None:
    """Raise a ConfigError unless a layer's option `name` is an int ≥ `minimum` (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"`{layer}({name}=...)` must be an int ≥ {minimum}, got {value!r}: e.g. "
            f"{layer}(..., {name}={max(minimum, 1)})"
        )


def check_key(key: Any) -> None:
    """Check `key` is a PRNG key: `jax.random.key(seed)` (or a legacy uint32 (2,) key)."""
    ok = _is_array(key) and (
        (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and _shape(key) == ())
        or (key.dtype == np.uint32 and _shape(key) == (2,))
    )
    if not ok:
        got = f"dtype {key.dtype} and shape {_shape(key)}" if _is_array(key) else _describe(key)
        raise ConfigError(
            f"expected `key` to be one PRNG key, got {got}: use key=jax.random.key(seed)"
        )


def check_static_options(*, keep_prob: Any = 1.0, precision: Any = "default") -> None:
    """Check keep_prob in (0, 1] (a Python float, static under jit) and the precision name."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ConfigError(
            f"unknown precision {_describe(precision)}; expected one of {list(PRECISIONS)}"
        )
    if isinstance(keep_prob, bool) or not isinstance(keep_prob, int | float):
        raise ConfigError(
            f"`keep_prob` must be a Python float in (0, 1] (static under jit), got "
            f"{_describe(keep_prob)}: e.g. keep_prob=0.8, or 1.0 for no dropout"
        )
    if not 0 < keep_prob <= 1:
        raise ConfigError(
            f"`keep_prob` must be in (0, 1], got {keep_prob}: it is the probability of keeping "
            "a unit (1.0 turns dropout off)"
        )


def check_dtype_options(*, precision: str, dtype: Any) -> None:
    """Check that the precision policy suits the params' dtype (bf16 needs float32 params)."""
    if precision == "bf16" and np.dtype(dtype) != np.float32:
        raise ConfigError(
            f"precision 'bf16' keeps params and accumulation in float32, but params are {dtype}: "
            "cast params and X to float32 or use precision='highest'"
        )


def check_l2(l2: Any, *, dtype: Any = None) -> None:
    """Check 0 ≤ λ < ∞ when λ is concrete (a traced λ passes)."""
    value = _check_real_scalar("l2", l2, "0.01")
    if value is not None:
        limit = float(jnp.finfo(dtype).max) if dtype is not None else math.inf
        if not 0 <= value < limit:
            raise ConfigError(
                f"`l2` (λ) must be finite and ≥ 0, got {l2}: use l2=0.0 for no regularisation"
            )


def check_dropout_key(keep_prob: float, key: Any) -> None:
    """With dropout on (keep_prob < 1), check that a valid key draws the masks."""
    if keep_prob < 1:
        if key is None:
            raise ConfigError(
                f"dropout is on (keep_prob = {keep_prob}) but no `key` was given: pass "
                "key=jax.random.key(seed) to draw the masks"
            )
        check_key(key)


def check_clip_norm(clip_norm: Any) -> float | None:
    """Check the per-example clipping norm C is a finite real scalar > 0; return it if concrete."""
    value = _check_real_scalar("clip_norm", clip_norm, "1.0")
    if value is not None and not 0 < value < math.inf:
        raise ConfigError(
            f"`clip_norm` must be finite and > 0, got {clip_norm}: each example's gradient is "
            "scaled to norm ≤ clip_norm (e.g. clip_norm=1.0)"
        )
    return value


def check_noise_multiplier(noise_multiplier: Any) -> float | None:
    """Check the DP-SGD noise multiplier σ is a finite real scalar ≥ 0; return it if concrete."""
    value = _check_real_scalar("noise_multiplier", noise_multiplier, "1.1")
    if value is not None and not 0 <= value < math.inf:
        raise ConfigError(
            f"`noise_multiplier` must be finite and ≥ 0, got {noise_multiplier}: the noise std "
            "is noise_multiplier · clip_norm (0.0 for no noise)"
        )
    return value


def check_init(layer_dims: Any, key: Any, dtype: Any) -> list[int]:
    """Check init_params' arguments: ≥ 2 positive int sizes, a PRNG key, a float dtype."""
    dims = list(layer_dims) if isinstance(layer_dims, Sequence) else None
    if dims is not None and len(dims) >= 2 and all(isinstance(n, int | np.integer) for n in dims):
        for l, n in enumerate(dims):
            if n < 1:
                what = {0: "n_x, the input size", len(dims) - 1: "n_L, the output size"}.get(
                    l, f"the size of hidden layer {l}"
                )
                raise ShapeError(
                    f"`layer_dims[{l}]` ({what}) is {n}: every layer needs at least one unit, "
                    f"got {dims}"
                )
    if (
        dims is None
        or len(dims) < 2
        or any(isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1 for n in dims)
    ):
        raise ShapeError(
            f"`layer_dims` must be [n_x, n_1, …, n_L] with at least two positive ints, got "
            f"{dims if dims is not None else _describe(layer_dims)}: e.g. layer_dims=[2, 4, 1]"
        )
    check_key(key)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or not jnp.issubdtype(dt, jnp.floating):
        raise DTypeError(
            f"`dtype` must be a floating dtype, got {_describe(dtype) if dt is None else dt}: "
            "use dtype=jnp.float32 (or jnp.float64 with x64 enabled)"
        )
    return [int(n) for n in dims]
