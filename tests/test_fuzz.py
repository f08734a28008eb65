"""Fuzzing the public entry points with malformed inputs.

Hypothesis draws random architectures and then breaks them: wrong ranks and shapes,
integer/bool/complex/half dtypes, non-arrays, missing/extra/renamed keys, unknown or
misplaced activation and loss names, out-of-range options. Every call must either
return finite results or raise a `manualgrad.ManualgradError` — never a raw XLA error,
`TypeError`, `IndexError`, … from deep inside JAX, and never a NaN.

The entry points: `mg.network` itself (layers, loss and options broken), the network's
`forward`, `cost`, `value_and_grad`, `backward` and `predict`; the per-example module's
`per_example_grads`, `per_example_norms`, `clipped_grads`, `dp_grads` and
`one_example_grads` (`f(net, …)`); `accuracy` of the network (the functional shims are
one-line calls of these, so they are not fuzzed again); the course module's `L_model_forward`,
`compute_cost` and `L_model_backward`; `train` with its own options broken too; and the
built-in data sets' generators.

Health checks: the problems are built from a few small draws, but every example runs
a dozen jax entry points (some compile), so hypothesis's `too_slow` check would fire;
it is the only one suppressed.
"""

from __future__ import annotations

import inspect
import math
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import manualgrad as mg
from manualgrad import course, per_example
from manualgrad.data.datasets import DATASETS

N_EXAMPLES = 60  # per run; derandomized in CI, so every CI run tries the same 60


def _settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples, suppress_health_check=[HealthCheck.too_slow], deadline=None
    )


NAMES = [*mg.activations.ACTIVATIONS, "gelu", "Relu", "", None, 3]
LOSS_NAMES = ["bce", "ce", "mse", "xent", None, 1]
DTYPES = [jnp.float32, jnp.float16, jnp.int32, jnp.bool_, jnp.complex64, jnp.uint8]
BAD_OBJECTS = [None, "abc", object, 1.5]
PER_EXAMPLE = {
    name: getattr(per_example, name)
    for name in (
        "per_example_grads",
        "per_example_norms",
        "clipped_grads",
        "dp_grads",
        "one_example_grads",
    )
}


def _array(draw, shape, dtype):
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    return jnp.asarray(rng.uniform(-1, 1, shape)).astype(dtype)


PARTS = ("params", "X", "Y", "activations", "loss", "options")


@st.composite
def bad_array(draw, good_shape):
    """A non-array, a nested list, or an array with a random shape and/or a bad dtype."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.sampled_from(BAD_OBJECTS))
    shape = good_shape if kind == 1 else tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    dtype = draw(st.sampled_from(DTYPES))
    arr = _array(draw, shape, dtype)
    return np.asarray(arr).tolist() if draw(st.integers(0, 5)) == 0 else arr


@st.composite
def malformed(draw):
    """A valid problem with one to two of its parts broken (sometimes none)."""
    broken = draw(st.sets(st.sampled_from(PARTS), min_size=1, max_size=2))
    broken = set() if draw(st.integers(0, 7)) == 0 else broken
    dims = draw(st.lists(st.integers(1, 3), min_size=2, max_size=3))  # small: few compiles
    L, m = len(dims) - 1, draw(st.integers(1, 3))
    output, loss = draw(st.sampled_from([("sigmoid", "bce"), ("softmax", "ce"),
                                         ("linear", "mse"), ("tanh", "mse")]))  # fmt: skip
    params = {}
    for l in range(1, L + 1):
        params[f"W{l}"] = _array(draw, (dims[l], dims[l - 1]), jnp.float32)
        params[f"b{l}"] = _array(draw, (dims[l], 1), jnp.float32)
    X = _array(draw, (dims[0], m), jnp.float32)
    classes = jnp.asarray(draw(st.lists(st.integers(0, dims[-1] - 1), min_size=m, max_size=m)))
    Y = jax.nn.one_hot(classes, dims[-1], axis=0) if loss == "ce" else (X[:1] > 0).astype(X.dtype)
    Y = Y if loss == "ce" else jnp.broadcast_to(Y, (dims[-1], m)).astype(jnp.float32)
    acts = (*[draw(st.sampled_from(NAMES[:5])) for _ in dims[2:]], output)
    kwargs = {
        "l2": draw(st.sampled_from([0.0, 0.1, jnp.array(0.01)])),
        "keep_prob": draw(st.sampled_from([1.0, 0.5])),
        "key": jax.random.key(draw(st.integers(0, 9))),
        "precision": draw(st.sampled_from(["default", "highest", "bf16"])),
    }
    dp = {
        "clip_norm": draw(st.sampled_from([1.0, 0.1])),
        "noise_multiplier": 1.1,
        "noise_key": jax.random.key(7),
    }

    if "params" in broken:
        for _ in range(draw(st.integers(1, 2))):
            op = draw(st.integers(0, 4))
            name = draw(st.sampled_from(sorted(params, key=str))) if params else "W1"
            if op == 0:
                params.pop(name, None)
            elif op == 1:
                new = draw(st.sampled_from(["W0", "W01", "gamma", f"W{L + 2}", 1]))
                params[new] = jnp.ones((1, 1))
            elif op == 2 and hasattr(params.get(name), "T"):
                params[name] = params[name].T
            else:
                params[name] = draw(bad_array(np.shape(params.get(name, 0))))
        if draw(st.integers(0, 5)) == 0:
            params = draw(st.sampled_from([list(params.values()), None, (1, 2)]))
    if "X" in broken:
        X = draw(st.sampled_from([X.T, X[:, :0], X[..., None], X[0]]) | bad_array(X.shape))
    if "Y" in broken:
        Y = draw(st.sampled_from([Y.T, Y[0], Y[:, :-1], Y[..., None]]) | bad_array(Y.shape))
    if "activations" in broken:
        acts = draw(st.sampled_from([
            list(acts), acts[:-1], (*acts, "relu"), "relu", None,
            (*acts[:-1], draw(st.sampled_from(NAMES))),
            (draw(st.sampled_from(NAMES)), *acts[1:]),
        ]))  # fmt: skip
    if "loss" in broken:
        loss = draw(st.sampled_from(LOSS_NAMES))
    if "options" in broken:
        option = draw(st.sampled_from([*sorted(kwargs), *dp]))
        (dp if option in dp else kwargs)[option] = draw(st.sampled_from({
            "l2": [-1.0, float("nan"), float("inf"), None, "a", jnp.ones(2), 1e39, 1j],
            "keep_prob": [0.0, 1.5, float("nan"), True, None, jnp.array(0.5), -0.5],
            "key": [None, 0, jnp.ones(3), "key"],
            "precision": ["fp8", None, 3, "HIGHEST"],
            "clip_norm": [-1.0, 0.0, float("nan"), float("inf"), None, "a", jnp.ones(2)],
            "noise_multiplier": [-0.5, float("nan"), None, jnp.ones(2)],
            "noise_key": [None, 0, jnp.ones(3), "key"],
        }[option]))  # fmt: skip
        if option == "key":
            kwargs["keep_prob"] = 0.5
    return params, X, Y, acts, loss, kwargs, dp


def _finite(out) -> bool:
    leaves = [x for x in jax.tree.leaves(out) if hasattr(x, "dtype") or isinstance(x, float)]
    return all(
        np.all(np.isfinite(np.asarray(x, np.float64)))
        for x in leaves
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)
    )


def _call(seen: Counter, name, fn, **kwargs):
    """Run one entry point: ManualgradError is fine, a result must be finite."""
    try:
        out = fn(**kwargs)
    except mg.ManualgradError:
        seen["raised"] += 1
        return None
    assert _finite(out), f"{name} returned non-finite values: {out}"
    seen["returned"] += 1
    return out


def _accepted(fn, kwargs):
    params = inspect.signature(fn).parameters
    return {k: v for k, v in kwargs.items() if k in params}


@pytest.mark.filterwarnings("error:Casting from complex")  # will become a raw ValueError in JAX
def test_malformed_inputs_raise_manualgrad_errors_or_give_finite_results():
    seen: Counter[str] = Counter()

    @_settings(N_EXAMPLES)
    @given(malformed())
    def fuzz(case):
        params, X, Y, acts, loss, kw, dp = case
        fwd = _call(seen, "course.L_model_forward", course.L_model_forward, X=X, parameters=params)
        if fwd is not None:
            AL, caches = fwd
            _call(seen, "course.compute_cost", course.compute_cost, AL=AL, Y=Y)
            _call(
                seen, "course.L_model_backward", course.L_model_backward, AL=AL, Y=Y, caches=caches
            )

        options = {k: kw[k] for k in ("l2", "keep_prob", "precision")}
        net = _call(seen, "network", mg.network, layers=acts, loss=loss, **options)
        if net is None:
            return
        key = kw["key"]
        out = _call(seen, "net.forward", net.forward, params=params, X=X, key=key)
        _call(seen, "net.value_and_grad", net.value_and_grad, params=params, X=X, Y=Y, key=key)
        _call(seen, "net.cost", net.cost, params=params, X=X, Y=Y, key=key)
        _call(seen, "net.predict", net.predict, params=params, X=X)
        _call(seen, "accuracy", mg.accuracy, net=net, params=params, X=X, Y=Y)
        if out is not None:
            _call(seen, "net.backward", net.backward, params=params, caches=out[1], Y=Y)
        extra = dict(net=net, params=params, X=X, Y=Y, key=key, **dp)
        one = lambda A: A[:, 0] if getattr(A, "ndim", 0) == 2 and A.shape[1] > 0 else A  # noqa: E731
        extra.update(x=one(X), y=one(Y))  # one_example_grads takes one example
        for name, fn in PER_EXAMPLE.items():
            _call(seen, name, fn, **_accepted(fn, extra))

    fuzz()
    assert seen["raised"] > 0 and seen["returned"] > 0  # both outcomes were exercised


SGD = optax.sgd(0.1)  # one instance: train's compiled steps are cached per optimizer
TRAIN_OPTIONS = {
    "epochs": [0, -1, 1.5, None, "3", True],
    "batch_size": [0, -2, 4, 1.5, "a", True],  # 4 > m (at most 3)
    "key": [0, "key", jnp.ones(2)],
    "start_epoch": [-1, 5, 1.5],
    "epochs_per_call": [0, -1, 1.5],
    "callbacks": [["x"], [3], 3],
    "optimizer": ["adam", None],
}


@pytest.mark.filterwarnings("error:Casting from complex")
def test_train_with_malformed_inputs_or_options_raises_manualgrad_errors_or_trains():
    seen: Counter[str] = Counter()

    @_settings(N_EXAMPLES // 4)  # a valid case compiles a training step
    @given(malformed(), st.data())
    def fuzz(case, data):
        params, X, Y, acts, loss, kw, _ = case
        options = dict(optimizer=SGD, epochs=1, batch_size=None, key=kw["key"])
        if data.draw(st.booleans()):
            name = data.draw(st.sampled_from(sorted(TRAIN_OPTIONS)))
            options[name] = data.draw(st.sampled_from(TRAIN_OPTIONS[name]))
        net_options = {k: kw[k] for k in ("l2", "keep_prob", "precision")}
        net = _call(seen, "network", mg.network, layers=acts, loss=loss, **net_options)
        if net is None:
            return
        out = _call(seen, "train", mg.train, net=net, params=params, X=X, Y=Y, **options)
        if out is not None:
            assert out.epoch == options["epochs"] and len(out.history) == out.epoch

    fuzz()
    assert seen["raised"] > 0 and seen["returned"] > 0


DATASET_ARGS = {
    "m": [-1, 0, 1, 2, 3, 5, 1.5, None, "a", True, np.int64(4)],
    "seed": [0, 1, -1, 1.5, None, "x", 2**40],
    "noise": [0.0, 0.1, -0.1, math.nan, math.inf, None, "a"],
    "factor": [0.3, 0.0, -1.0, math.nan, None],
    "n_classes": [1, 2, 3, 0, 2.5, None],
}


@_settings(N_EXAMPLES)
@given(st.sampled_from(sorted(set(DATASETS) - {"digits", "names"})), st.data())  # generated sets
def test_data_sets_give_exactly_m_examples_of_every_class_or_a_manualgrad_error(name, data):
    generator = DATASETS[name]
    accepted = [a for a in DATASET_ARGS if a in inspect.signature(generator).parameters]
    kwargs = {
        a: data.draw(st.sampled_from(DATASET_ARGS[a])) for a in accepted if data.draw(st.booleans())
    }
    try:
        X, Y = generator(**kwargs)
    except mg.ManualgradError:
        return
    defaults = {k: p.default for k, p in inspect.signature(generator).parameters.items()}
    m, K = kwargs.get("m", defaults["m"]), kwargs.get("n_classes", defaults.get("n_classes", 2))
    assert X.shape == (2, m) and X.dtype == np.float64 and np.all(np.isfinite(X))
    one_hot = name == "spiral"
    labels = np.argmax(Y, axis=0) if one_hot else Y[0]
    assert Y.shape == (K if one_hot else 1, m)
    assert set(labels.tolist()) == set(range(K))  # every class has at least one example
    assert max(np.bincount(labels.astype(int))) - min(np.bincount(labels.astype(int))) <= 1
