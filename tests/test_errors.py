"""The error catalogue: one bad input per case, its error type and message.

`CASES` is the single source of docs/errors.md. Each case drives one
`pytest.raises(..., match=...)` test, and `test_catalogue_is_up_to_date` checks that
the committed docs/errors.md equals the file rendered from `CASES` and the messages
the library actually raises, so the catalogue cannot drift. Regenerate it with

    PYTHONPATH=src python tests/test_errors.py
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental import checkify

import manualgrad as mg
from manualgrad import course
from manualgrad.checking.backward import check_backward, default_cases, load_function
from manualgrad.checking.layer_backward import check_layer_backward
from manualgrad.checking.value_checks import checked_value_and_grad
from manualgrad.data.datasets import spiral
from manualgrad.data.files import load
from manualgrad.errors import CheckpointError, ConfigError, DataError, DTypeError, ShapeError

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
ACTS2 = ("relu", "softmax")  # the two-layer classifier used by most cases


@dataclass(frozen=True)
class Case:
    id: str
    section: str
    situation: str
    call: Callable[[], object]
    error: type[Exception]
    match: str
    fix: str
    from_jax: bool = False  # raised by JAX itself: the catalogue shows `match`, not the text


def _cnn(first):
    """A small CNN starting with the layer `first`, for the conv catalogue cases."""
    return mg.network([first, mg.layers.Flatten(), mg.layers.Dense(1, activation="sigmoid")])


def _rnn(many=False):
    """An RNN(4) network on sequences of n_x = 3 features, for the sequence catalogue cases."""
    return mg.network(
        [mg.layers.RNN(4, return_sequences=many), mg.layers.Dense(1, activation="sigmoid")]
    )


def _rnn_vg(X, Y, many=False):
    """value_and_grad of :func:`_rnn` with params for sequences (n_x, T) = (3, 4)."""
    net = _rnn(many)
    return lambda: net.value_and_grad(net.init((3, 4), jax.random.key(0)), X, Y)


def _params(dims=(3, 4, 2), dtype=jnp.float32):
    return mg.init_params(list(dims), jax.random.key(0), dtype=dtype)


def _X(n_x=3, m=5, dtype=jnp.float32):
    return jnp.linspace(-1.0, 1.0, n_x * m, dtype=dtype).reshape(n_x, m)


def _Y(n_L=2, m=5):
    return jax.nn.one_hot(jnp.arange(m) % n_L, n_L, axis=0)


def vg(**changes) -> Callable[[], object]:
    """value_and_grad on the (3, 4, 2) relu/softmax/ce net, with some arguments replaced."""
    kw = dict(params=_params(), X=_X(), Y=_Y(), activations=ACTS2, loss="ce")

    def call():
        args = {k: v() if callable(v) else v for k, v in {**kw, **changes}.items()}
        return mg.value_and_grad(**args)

    return call


def bce(**changes) -> Callable[[], object]:
    """value_and_grad on a (3, 4, 1) relu/sigmoid/bce net, with some arguments replaced."""
    base = dict(
        params=lambda: _params((3, 4, 1)),
        Y=jnp.ones((1, 5)),
        activations=("relu", "sigmoid"),
        loss="bce",
    )
    return vg(**{**base, **changes})


def with_params(**leaves) -> Callable[[], dict]:
    """The (3, 4, 2) params with some leaves replaced (value None: key removed)."""

    def build():
        p = dict(_params())
        for k, v in leaves.items():
            if v is None:
                p.pop(k, None)
            else:
                p[k] = v
        return p

    return build


def _jit_functional():
    return jax.jit(mg.value_and_grad)(_params(), _X(), _Y(), activations=ACTS2, loss="ce")


def checked(activations=ACTS2, loss="ce", **changes) -> Callable[[], object]:
    """checked_value_and_grad on the (3, 4, 2) softmax/ce net, then `err.throw()`."""
    kw = dict(params=_params(), X=_X(), Y=_Y())

    def call():
        err, _ = checked_value_and_grad(mg.network(activations, loss))(**{**kw, **changes})
        err.throw()

    return call


def clip(**changes) -> Callable[[], object]:
    """clipped_grads (or dp_grads, with `noise_multiplier`) on the (3, 4, 2) relu/softmax/ce net."""
    kw = dict(params=_params(), X=_X(), Y=_Y(), activations=ACTS2, loss="ce", clip_norm=1.0)

    def call():
        kwargs = {**kw, **changes}
        if "noise_multiplier" in kwargs:
            return mg.dp_grads(noise_key=jax.random.key(0), **kwargs)
        return mg.clipped_grads(**kwargs)

    return call


def fit(l2: float = 0.0, optimizer=None, **changes) -> Callable[[], object]:
    """train the (3, 4, 2) relu/softmax/ce net on 5 examples, with some arguments replaced."""

    def call():
        net = mg.network(ACTS2, "ce", l2=l2)
        opt = optax.sgd(0.1) if optimizer is None else optimizer
        return mg.train(net, _params(), _X(), _Y(), opt, **{"epochs": 2, **changes})

    return call


def _eps(**changes) -> Callable[[], object]:
    """privacy.epsilon of 100 DP-SGD steps (σ = 1, q = 0.01, δ = 1e-5), some arguments replaced."""
    kw = dict(noise_multiplier=1.0, sampling_rate=0.01, steps=100, delta=1e-5)
    return lambda: mg.privacy.epsilon(**{**kw, **changes})


def _plan(n=1000, steps=100, **changes) -> Callable[[], object]:
    """privacy.plan for N = n examples, with a DPConfig (q = 0.01, σ = 1, rdp) changed."""
    kw = dict(sampling_rate=0.01, noise_multiplier=1.0, delta=1e-5, accountant="rdp")
    return lambda: mg.privacy.plan(mg.privacy.DPConfig(**{**kw, **changes}), n=n, steps=steps)


def _without(*modules: str, call: Callable[[], object]) -> Callable[[], object]:
    """Run `call` as if `modules` were not installed."""

    def run():
        with mock.patch.dict(sys.modules, dict.fromkeys(modules)):
            return call()

    return run


def curv(fn: str = "diag_ggn", **changes) -> Callable[[], object]:
    """A `manualgrad.curvature` function of the (3, 4, 2) relu/softmax/ce net."""
    kw = dict(params=_params(), X=_X(), Y=_Y(), activations=ACTS2, loss="ce")

    def call():
        args = {k: v() if callable(v) else v for k, v in {**kw, **changes}.items()}
        net = mg.network(args.pop("activations"), args.pop("loss"))
        return getattr(mg.curvature, fn)(
            net, args.pop("params"), args.pop("X"), args.pop("Y"), **args
        )

    return call


@dataclass(frozen=True)
class _Scale(mg.layers.Layer):
    """A parameter-free layer, A = 2 A_prev: it takes part in the chain only."""

    def init(self, key, in_shape, dtype):
        return {}, tuple(in_shape)

    def forward(self, params, A_prev, precision):
        return 2 * A_prev, None

    def backward(self, params, cache, dA, precision, need_dA_prev=True):
        return 2 * dA, ()


def _scaled(keep_prob=1.0):
    """Dense(4, relu), a parameter-free layer, Dense(2, softmax), for 3 features, ce."""
    layers = [mg.layers.Dense(4), _Scale(), mg.layers.Dense(2, activation="softmax")]
    return mg.network(layers, "ce", keep_prob=keep_prob)


def layered(call: Callable[[mg.Network], object], **options) -> Callable[[], object]:
    """`call(net)` for the (3, 4, 2) relu/softmax/ce network of mg.layers.Dense."""
    layers = [mg.layers.Dense(4), mg.layers.Dense(2, activation="softmax")]
    return lambda: call(mg.network(layers, "ce", **options))


def _tokens_net(*first):
    """Embedding(7, 4) → Flatten → Dense(2, softmax), or `first` layers before the head."""
    layers = list(first) or [mg.layers.Embedding(7, 4)]
    return mg.network(
        [*layers, mg.layers.Flatten(), mg.layers.Dense(2, activation="softmax")], "ce"
    )


def tokens(X) -> Callable[[], object]:
    """value_and_grad of the token net (T = 3) on the ids `X` (T, m = 5 when well formed)."""
    net = _tokens_net()
    return lambda: net.value_and_grad(net.init((3,), jax.random.key(0)), X, _Y())


def in_tmp(call: Callable[[], object]) -> Callable[[], object]:
    """Run `call` inside a fresh temporary directory, so file names in messages are short."""

    def run():
        with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
            return call()

    return run


def write(name: str, content: str | np.ndarray) -> str:
    """Write a text file, or save an array with np.save (a .npy, whatever the name); return name."""
    if isinstance(content, str):
        Path(name).write_text(content)
    else:
        with open(name, "wb") as f:
            np.save(f, content)
    return name


def resume_with_start_epoch():
    fit(callbacks=[mg.training.Checkpointer("ckpt")])()
    fit(callbacks=[mg.training.Checkpointer("ckpt", resume=True)], start_epoch=1)()


def resume_other_run():
    fit(callbacks=[mg.training.Checkpointer("ckpt")])()
    fit(callbacks=[mg.training.Checkpointer("ckpt", resume=True)], l2=0.1)()


def _v(**leaves) -> Callable[[], object]:
    """A direction shaped like the (3, 4, 2) params, with some leaves replaced or removed."""
    return lambda: {
        k: leaves.get(k, jnp.ones_like(p))
        for k, p in _params().items()
        if leaves.get(k, 0) is not None
    }


def _backward_bad_caches():
    return mg.backward(_params(), None, _Y(), activations=ACTS2, loss="ce")


def student_file(source: str, spec: str = "student_backward.py") -> Callable[[], object]:
    """load_function on a file with `source`, in a fresh temporary folder."""

    def call():
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "student_backward.py"
            path.write_text(source, encoding="utf-8")
            return load_function(str(Path(folder) / spec))

    return call


def my_backward(AL, Y, caches):
    """A correct course-convention backward pass (manualgrad's own), for `returning`."""
    return course.L_model_backward(AL, Y, caches)


def flat_backward(X, Y, cache, keep_prob):
    """A function of the regularization assignment's signature (never run: refused first)."""
    raise AssertionError("not called")


def returning(change: Callable[[dict], object], **options) -> Callable[[], object]:
    """check_backward of a function that returns `change(correct grads)`, on one network."""

    def call():
        def my_backward(AL, Y, caches):
            return change(dict(course.L_model_backward(AL, Y, caches)))

        return check_backward(my_backward, cases=default_cases()[:1], **options)

    return call


LY = "Layers (`mg.layers`, `mg.network`)"
T, D = "Training (`train`, `accuracy`)", "Data sets and data files (`manualgrad.data.files`)"
P, A, L, XS, YS, O, B, I, PE, J = (
    "Parameters",
    "Activations",
    "Losses",
    "Inputs X",
    "Labels Y",
    "Options",
    "backward",
    "init_params",
    "Per-example clipping and noise",
    "Under jax.jit",
)
V = "Value checks (opt-in, `manualgrad.checking.value_checks`)"
DP = "Private training (`manualgrad.privacy`)"
CB = (
    "Checking your own backward pass (`manualgrad.checking.backward`, `manualgrad check --against`)"
)
CV = "Curvature (`manualgrad.curvature`)"
RUNTIME = checkify.JaxRuntimeError

# fmt: off
CASES: list[Case] = [
    # -- params ---------------------------------------------------------------------------
    Case("params-not-dict", P, "`params` is not a mapping (a list of arrays, None, …)",
         vg(params=[jnp.ones((4, 3))]), ShapeError, r"expected `params` to be a dict",
         "pass the dict returned by `init_params`"),
    Case("params-empty", P, "`params` is an empty dict", vg(params={}), ShapeError,
         r"`params` is empty", "give at least `W1` and `b1`"),
    Case("params-extra-key", P, "`params` holds a key other than W<l>/b<l> (e.g. `gamma`)",
         vg(params=with_params(gamma=jnp.ones((4, 1)))), ShapeError,
         r"unexpected keys \['gamma'\]", "remove the key, or keep extra state elsewhere"),
    Case("params-leading-zero", P, "layer numbers written with a leading zero (`W01`)",
         vg(params=with_params(W1=None, W01=jnp.ones((4, 3)))), ShapeError,
         r"unexpected keys \['W01'\]", "number layers 1 … L without padding"),
    Case("params-missing-bias", P, "a layer has a `W` but no `b`",
         vg(params=with_params(b2=None)), ShapeError, r"missing \['b2'\]",
         "add the bias `b<l>` of shape (n_l, 1)"),
    Case("params-non-consecutive", P, "layers skip a number (`W1`, `W3` without `W2`)",
         vg(params=with_params(W2=None, b2=None, W3=jnp.ones((2, 4)), b3=jnp.ones((2, 1)))),
         ShapeError, r"missing \['W2', 'b2'\]", "renumber the layers 1 … L"),
    Case("params-leaf-not-numeric", P, "a leaf is not numeric data (None, a string, …)",
         vg(params=with_params(W1="abc")), DTypeError,
         r"expected `params\['W1'\]` to be a numeric array", "store arrays in `params`"),
    Case("W-not-2d", P, "a weight matrix is 1-D or 3-D", vg(params=with_params(W1=jnp.ones(3))),
         ShapeError, r"layer 1: `W1` must be 2-D", "W[l] must be (n_l, n_{l-1})"),
    Case("W-empty-layer", P, "a layer has zero units", vg(params=with_params(
         W1=jnp.ones((0, 3)), b1=jnp.ones((0, 1)), W2=jnp.ones((2, 0)))), ShapeError,
         r"layer 1: `W1` has shape \(0, 3\)", "drop the empty layer"),
    Case("b-flat", P, "a bias has shape (n_l,) instead of (n_l, 1)",
         vg(params=with_params(b1=jnp.zeros(4))), ShapeError, r"b1\.reshape\(-1, 1\)",
         "`b.reshape(-1, 1)`"),
    Case("b-disagrees-with-W", P, "`b[l]` has a different number of rows than `W[l]`",
         vg(params=with_params(b1=jnp.zeros((3, 1)))), ShapeError,
         r"layer 1: `b1` must have shape \(n_1, 1\) = \(4, 1\)", "give b[l] n_l rows"),
    Case("W-chain-broken", P, "`W[l]`'s columns differ from `W[l-1]`'s rows (e.g. W transposed)",
         vg(params=with_params(W2=jnp.ones((2, 5)))), ShapeError,
         r"layer 2: `W2` has shape \(2, 5\) but A1 has 4 rows", "W[l] must be (n_l, n_{l-1})"),
    Case("params-integer", P, "a parameter has an integer dtype",
         vg(params=with_params(W1=jnp.ones((4, 3), jnp.int32))), DTypeError,
         r"layer 1: `W1` has dtype int32", "`.astype(jnp.float32)`"),
    Case("params-complex", P, "a parameter is complex",
         vg(params=with_params(W1=jnp.ones((4, 3), jnp.complex64))), DTypeError,
         r"`W1` has dtype complex64, expected a real floating dtype", "use real floats"),
    Case("params-mixed-dtypes", P, "parameters have different float widths",
         vg(params=with_params(W1=jnp.ones((4, 3), jnp.float16))), DTypeError,
         r"params mix dtypes \['float16', 'float32'\]", "cast all leaves to one dtype"),
    # -- activations ----------------------------------------------------------------------
    Case("activations-string", A, "`activations` is one string instead of one name per layer",
         vg(activations="relu"), ConfigError, r"expected `layers` to be a sequence of layers",
         "`activations=('relu', 'softmax')`"),
    Case("activations-wrong-length", A, "fewer or more names than layers",
         vg(activations=("relu", "relu", "softmax")), ConfigError,
         r"`activations` has 3 names but params have 2 layers", "one name per layer"),
    Case("activation-unknown", A, "a name that is not an activation",
         vg(activations=("gelu", "softmax")), ConfigError,
         r"layer 1: unknown activation 'gelu'; expected one of \['leaky_relu', 'linear'",
         "pick one of `manualgrad.ACTIVATIONS`"),
    Case("softmax-hidden", A, "softmax on a hidden layer", vg(activations=("softmax", "softmax")),
         ConfigError, r"layer 1: `softmax` is for the output layer only",
         "use relu, tanh, … on hidden layers"),
    # -- losses ---------------------------------------------------------------------------
    Case("loss-unknown", L, "a name that is not a loss", vg(loss="cross_entropy"),
         ConfigError, r"unknown loss 'cross_entropy'; expected one of \['bce', 'ce', 'mse'\]",
         "pick one of `manualgrad.LOSSES`"),
    Case("softmax-with-bce", L, "`bce` after a softmax output", vg(loss="bce"), ConfigError,
         r"loss 'bce' needs a sigmoid output layer, got 'softmax'", "use `ce` with softmax"),
    Case("sigmoid-with-ce", L, "`ce` after a sigmoid output", bce(loss="ce"), ConfigError,
         r"loss 'ce' needs a softmax output layer, got 'sigmoid'", "use `bce` with sigmoid"),
    # -- layers ---------------------------------------------------------------------------
    Case("dense-units-not-positive", LY, "`Dense` with 0 (or a non-int number of) units",
         lambda: mg.layers.Dense(0), ConfigError, r"`Dense\(units\)` must be a positive int",
         "`mg.layers.Dense(20)`"),
    Case("dense-activation-unknown", LY, "`Dense` with an activation that does not exist",
         lambda: mg.layers.Dense(4, activation="swish"), ConfigError,
         r"got unknown activation 'swish'", "one of `mg.activations.ACTIVATIONS`"),
    Case("dense-init-unknown", LY, "`Dense` with an unknown init method",
         lambda: mg.layers.Dense(4, init_method="glorot"), ConfigError,
         r"`Dense\(init_method=...\)` got 'glorot'", "`he`, `xavier`, `random` or `zeros`"),
    Case("layers-not-a-sequence", LY, "one layer instead of a list of layers",
         lambda: mg.network(mg.layers.Dense(1, activation="sigmoid")), ConfigError,
         r"expected `layers` to be a sequence of layers", "`mg.network([layer, …])`"),
    Case("layer-not-a-layer", LY, "something that is neither a layer nor an activation name",
         lambda: mg.network([mg.layers.Dense(4), 3]), ConfigError,
         r"layer 2: expected a layer", "`mg.layers.Dense(…)` or a name"),
    Case("output-layer-without-activation", LY, "a last layer the loss cannot act on "
         "(no activation, e.g. a parameter-free layer)",
         lambda: mg.network([mg.layers.Dense(4), _Scale()]), ConfigError,
         r"cannot be a network's output layer", "end with `mg.layers.Dense(n_L, activation=…)`"),
    Case("dense-without-units", LY, "`net.init(input_shape)` where a `Dense` has no units",
         lambda: mg.network([mg.layers.Dense(activation="relu"),
                             mg.layers.Dense(1, activation="sigmoid")]).init((3,),
                                                                           jax.random.key(0)),
         ConfigError, r"has no `units`", "`Dense(units, …)`, or the shorthand with layer_dims"),
    Case("dense-input-not-a-vector", LY, "a `Dense` layer given images (one example not a vector)",
         layered(lambda net: net.init((8, 8, 3), jax.random.key(0))), ShapeError,
         r"takes vectors, one example of shape", "flatten each example first"),
    Case("input-shape-invalid", LY, "`net.init` given something other than one example's shape",
         layered(lambda net: net.init(3, jax.random.key(0))), ShapeError,
         r"`input_shape` must be one example's shape", "`net.init((n_x,), key)`"),
    Case("params-do-not-fit-layers", LY, "params that lack a key the network's layers name",
         lambda: _scaled().value_and_grad({"W1": jnp.ones((4, 3)), "b1": jnp.zeros((4, 1))},
                                          _X(), _Y()), ShapeError,
         r"`params` do not fit the network's layers", "`net.init(input_shape, key)`"),
    Case("params-shape-do-not-fit-layers", LY, "a parameter whose shape its layer does not give "
         "for X's examples",
         lambda: _scaled().value_and_grad(
             {**_scaled().init((3,), jax.random.key(0)), "W2": jnp.ones((2, 5))}, _X(), _Y()),
         ShapeError, r"`W2` has shape \(2, 5\) but the network's layers give \(2, 4\)",
         "params from `net.init` for X's example shape"),
    Case("conv-kernel-larger-than-image", LY, "a conv kernel (or pool window) larger than the "
         "padded image it meets",
         lambda: _cnn(mg.layers.Conv2D(4, 5)).init((4, 4, 1), jax.random.key(0)), ShapeError,
         r"the window is 5 pixels but the image is 4 along H",
         "a smaller kernel, more `pad`, or fewer pooling layers before it"),
    Case("conv-stride-zero", LY, "a conv or pool stride of 0 (or a size, channel count below 1)",
         lambda: mg.layers.Conv2D(4, 3, stride=0), ConfigError,
         r"`Conv2D\(stride=...\)` must be an int ≥ 1, got 0", "`stride=1` or more"),
    Case("conv-softmax", LY, "softmax on a conv layer", lambda: mg.layers.Conv2D(4, 3,
         activation="softmax"), ConfigError, r"a conv layer needs an elementwise activation",
         "an elementwise activation; softmax on the `Dense` output layer"),
    Case("conv-channels-do-not-match", LY, "images whose channels are not the filters' C_prev",
         lambda: _cnn(mg.layers.Conv2D(4, 3)).value_and_grad(
             _cnn(mg.layers.Conv2D(4, 3)).init((6, 6, 3), jax.random.key(0)),
             jnp.ones((6, 6, 1, 5)), jnp.ones((1, 5))), ShapeError,
         r"`W1` has shape \(4, 3, 3, 3\) but the network's layers give \(4, 3, 3, 1\)",
         "params from `net.init((H, W, C), key)` for X's images"),
    Case("conv-images-examples-first", LY, "images given examples first, (m, H, W, C)",
         lambda: _cnn(mg.layers.Conv2D(4, 3)).value_and_grad(
             _cnn(mg.layers.Conv2D(4, 3)).init((6, 6, 3), jax.random.key(0)),
             jnp.ones((5, 6, 6, 3)), jnp.ones((1, 5))), ShapeError,
         r"are the examples first\? examples are the last axis, X = jnp.moveaxis\(X, 0, -1\)",
         "`jnp.moveaxis(X, 0, -1)`: images are (H, W, C, m)"),
    Case("conv-input-not-images", LY, "a conv layer given vectors (a flat input shape)",
         lambda: _cnn(mg.layers.Conv2D(4, 3)).init((36,), jax.random.key(0)), ShapeError,
         r"takes images \(H, W, C\), got shape \(36,\)", "`net.init((H, W, C), key)`"),
    Case("rnn-input-not-sequences", LY, "a recurrent layer given vectors (a flat input shape)",
         lambda: _rnn().init((12,), jax.random.key(0)), ShapeError,
         r"takes sequences, one example of shape \(n_x, T\), but its input has shape \(12,\)",
         "`net.init((n_x, T), key)`, X as (n_x, T, m)"),
    Case("rnn-no-time-steps", LY, "sequences of T = 0 time steps",
         _rnn_vg(jnp.ones((3, 0, 5)), jnp.ones((1, 5))), ShapeError,
         r"got sequences of T = 0 time steps .* a recurrent layer needs T ≥ 1",
         "drop empty sequences, or pad them to one step"),
    Case("rnn-sequences-examples-first", LY, "sequences given examples first, (m, T, n_x) "
         "(Keras's and PyTorch's batch_first layout)",
         _rnn_vg(jnp.ones((5, 4, 3)), jnp.ones((1, 5))), ShapeError,
         r"are the examples first\? examples are the last axis, X = jnp.transpose\(X, "
         r"\(2, 1, 0\)\)", "`jnp.transpose(X, (2, 1, 0))`: sequences are (n_x, T, m)"),
    Case("rnn-wrong-n_x", LY, "sequences with another number of features n_x than the params",
         _rnn_vg(jnp.ones((2, 4, 5)), jnp.ones((1, 5))), ShapeError,
         r"`Wax1` has shape \(4, 3\) but the network's layers give \(4, 2\)",
         "params from `net.init((n_x, T), key)` for X's sequences"),
    Case("rnn-labels-not-per-step", LY, "one label per example for a network that outputs one "
         "per time step (many-to-many)",
         _rnn_vg(jnp.ones((3, 4, 5)), jnp.ones((1, 5)), many=True), ShapeError,
         r"expected `Y` of shape \(n_L, T, m\) = \(1, 4, 5\) .* one label per example",
         "labels (n_L, T, m), or `return_sequences=False`"),
    Case("tokens-out-of-range", LY, "a token id ≥ the embedding's `vocab_size`",
         tokens(jnp.array([[0, 1, 2, 3, 7]] * 3)), DataError,
         r"got token id 7, but the table has ids 0 … 6",
         "a larger `vocab_size`, or an 'unknown' id for rare tokens"),
    Case("tokens-negative", LY, "a negative token id", tokens(jnp.array([[0, 1, 2, 3, -1]] * 3)),
         DataError, r"got a negative token id, -1", "ids ≥ 0; a reserved id for padding"),
    Case("tokens-float", LY, "float token ids (or one-hot vectors of the right shape)",
         tokens(jnp.ones((3, 5))), DTypeError, r"takes integer token ids, got `X` of dtype float",
         "`X.astype(jnp.int32)`"),
    Case("tokens-examples-first", LY, "token ids given examples first, (m, T)",
         tokens(jnp.zeros((5, 3), jnp.int32)), ShapeError,
         r"are the examples first\? examples are the last axis", "`X.T`: ids are (T, m)"),
    Case("tokens-T-zero", LY, "sequences of length T = 0: ids of shape (0, m)",
         tokens(jnp.zeros((0, 5), jnp.int32)), ShapeError,
         r"got sequences of length T = 0", "pad to a common T ≥ 1"),
    Case("embedding-not-first", LY, "an embedding after another layer",
         lambda: _tokens_net(mg.layers.Dense(3), mg.layers.Embedding(7, 4)), ConfigError,
         r"takes integer token ids, which only the network's input is", "the embedding first"),
    Case("embedding-one-hot", LY, "an embedding given one-hot vectors (V, T, m), not ids",
         lambda: _tokens_net().init((7, 3), jax.random.key(0)), ShapeError,
         r"takes integer token ids, one example of shape \(T,\), but its input has shape "
         r"\(7, 3\)", "integer ids X (T, m), `net.init((T,), key)`"),
    Case("layernorm-one-feature", LY, "`LayerNorm` over a single feature",
         lambda: _tokens_net(mg.layers.LayerNorm()).init((1,), jax.random.key(0)), ConfigError,
         r"over d = 1 feature normalises every value to x̂ = 0",
         "normalise 2 or more units, or leave `LayerNorm` out"),
    Case("layernorm-images", LY, "`LayerNorm` on images (H, W, C)",
         lambda: _tokens_net(mg.layers.LayerNorm()).init((4, 4, 3), jax.random.key(0)),
         ShapeError, r"one example of shape \(d,\) or \(d, T\)", "`Flatten()` first"),
    Case("layernorm-eps", LY, "`LayerNorm(eps)` ≤ 0", lambda: mg.layers.LayerNorm(eps=0.0),
         ConfigError, r"`LayerNorm\(eps=...\)` must be a finite number > 0", "e.g. `eps=1e-5`"),
    # -- X --------------------------------------------------------------------------------
    Case("X-not-numeric", XS, "X is None, a string or other non-numeric object", vg(X=None),
         DTypeError, r"expected `X` to be a numeric array, got None", "pass an array"),
    Case("X-transposed", XS, "X given as (m, n_x): examples as rows", vg(X=_X().T),
         ShapeError, r"did you pass X transposed\? use X\.T", "`X.T`"),
    Case("X-wrong-features", XS, "X has a different number of features than W1 expects",
         vg(X=_X(n_x=2)), ShapeError, r"expected `X.shape\[0\] == W1.shape\[1\]` \(n_x = 3\)",
         "match W1's columns to the features"),
    Case("X-one-example-flat", XS, "one example passed as a vector (n_x,)", vg(X=jnp.ones(3)),
         ShapeError, r"X\.reshape\(3, 1\)", "`X.reshape(n_x, 1)`"),
    Case("X-3d", XS, "images or batches passed without flattening (rank 3+)",
         vg(X=jnp.ones((3, 5, 1))), ShapeError, r"flatten each example to a column",
         "`X.reshape(-1, m)`"),
    Case("m-zero", XS, "X has no examples", vg(X=jnp.ones((3, 0)), Y=jnp.ones((2, 0))),
         ShapeError, r"no examples \(m = 0\)", "pass at least one column"),
    Case("X-integer", XS, "integer X (e.g. raw pixel values)", vg(X=jnp.ones((3, 5), jnp.int32)),
         DTypeError, r"`X` has dtype int32; it must be floating point", "`X.astype(...)`"),
    Case("X-boolean", XS, "boolean X", vg(X=jnp.ones((3, 5), bool)), DTypeError,
         r"`X` has dtype bool", "`X.astype(...)`"),
    Case("X-complex", XS, "complex X", vg(X=jnp.ones((3, 5), jnp.complex64)), DTypeError,
         r"`X` has dtype complex64", "use real floats"),
    Case("X-dtype-differs", XS, "X and params have different float dtypes",
         vg(X=_X(dtype=jnp.float16)), DTypeError,
         r"`X` has dtype float16 but params have float32", "cast one to the other"),
    # -- Y --------------------------------------------------------------------------------
    Case("Y-flat-binary", YS, "binary labels as a vector (m,)", bce(Y=jnp.ones(5)),
         ShapeError, r"use Y\.reshape\(1, 5\)", "`Y.reshape(1, m)`"),
    Case("Y-flat-classes", YS, "class indices as a vector (m,) for a softmax output",
         vg(Y=jnp.arange(5) % 2), ShapeError, r"jax\.nn\.one_hot\(Y, 2\)\.T",
         "`jax.nn.one_hot(y, n_L, axis=0)`"),
    Case("Y-column", YS, "binary labels as a column (m, 1)", bce(Y=jnp.ones((5, 1))),
         ShapeError, r"got \(5, 1\) — use Y\.T", "`Y.T`"),
    Case("Y-transposed", YS, "one-hot labels as rows (m, n_L)", vg(Y=_Y().T), ShapeError,
         r"got \(5, 2\) — use Y\.T", "`Y.T`"),
    Case("Y-wrong-rows", YS, "Y has a different number of rows than the output layer",
         vg(Y=jnp.ones((3, 5))), ShapeError, r"the output layer has 2 units but Y has 3 rows",
         "one row per output unit"),
    Case("Y-wrong-examples", YS, "Y has a different number of examples than X",
         vg(Y=jnp.ones((2, 4))), ShapeError, r"one column per example of X \(m = 5\)",
         "one column per example"),
    Case("Y-complex", YS, "complex labels", vg(Y=jnp.ones((2, 5), jnp.complex64)),
         DTypeError, r"`Y` has dtype complex64; expected real labels", "use real labels"),
    Case("Y-not-numeric", YS, "labels as strings", vg(Y=np.array([["a"] * 5] * 2)),
         DTypeError, r"expected `Y` to be a numeric array", "encode labels as numbers"),
    # -- options --------------------------------------------------------------------------
    Case("precision-unknown", O, "an unknown precision policy", vg(precision="fp8"),
         ConfigError, r"unknown precision 'fp8'; expected one of", "see `mg.precision.PRECISIONS`"),
    Case("bf16-needs-float32", O, "precision 'bf16' with non-float32 params",
         vg(params=lambda: _params(dtype=jnp.float16), X=_X(dtype=jnp.float16),
            precision="bf16"), ConfigError, r"precision 'bf16' keeps params",
         "float32 params, or another policy"),
    Case("l2-negative", O, "a negative L2 strength", vg(l2=-0.1), ConfigError,
         r"`l2` \(λ\) must be finite and ≥ 0, got -0.1", "`l2 >= 0`"),
    Case("l2-nan", O, "a NaN L2 strength", vg(l2=float("nan")), ConfigError,
         r"must be finite and ≥ 0, got nan", "a finite `l2 >= 0`"),
    Case("l2-inf", O, "an infinite L2 strength (or one that overflows the params' dtype)",
         vg(l2=1e39), ConfigError, r"must be finite and ≥ 0, got 1e\+39", "a finite `l2`"),
    Case("l2-not-scalar", O, "`l2` given as a vector or non-number", vg(l2=jnp.ones(3)),
         ConfigError, r"expected `l2` to be a real scalar, got an array", "a scalar `l2`"),
    Case("keep-prob-zero", O, "keep_prob = 0 (drops everything)", vg(keep_prob=0.0),
         ConfigError, r"`keep_prob` must be in \(0, 1\], got 0.0", "0 < keep_prob <= 1"),
    Case("keep-prob-above-one", O, "keep_prob > 1", vg(keep_prob=1.5), ConfigError,
         r"`keep_prob` must be in \(0, 1\], got 1.5", "0 < keep_prob <= 1"),
    Case("keep-prob-not-float", O, "keep_prob as an array or bool (it is static under jit)",
         vg(keep_prob=jnp.array(0.5)), ConfigError, r"`keep_prob` must be a Python float",
         "a Python float"),
    Case("dropout-without-key", O, "keep_prob < 1 without `key`", vg(keep_prob=0.8),
         ConfigError, r"dropout is on \(keep_prob = 0.8\) but no `key`",
         "`key=jax.random.key(seed)`"),
    Case("key-invalid", O, "`key` is an int or an array that is not a PRNG key",
         vg(keep_prob=0.8, key=0), ConfigError, r"expected `key` to be one PRNG key, got 0",
         "`key=jax.random.key(seed)`"),
    # -- backward -------------------------------------------------------------------------
    Case("caches-invalid", B, "`backward` given something other than forward's caches",
         _backward_bad_caches, ShapeError,
         r"expected `caches` to be forward's Caches\(layers, masks\)",
         "pass `forward(...)[1]`"),
    # -- init -----------------------------------------------------------------------------
    Case("init-layer-dims", I, "fewer than two layer sizes, or sizes that are not ints",
         lambda: mg.init_params([3], jax.random.key(0)), ShapeError,
         r"`layer_dims` must be \[n_x, n_1, …, n_L\]", "e.g. `[2, 4, 1]`"),
    Case("init-layer-zero", I, "a layer of size 0 (e.g. `--layers 2,0,1`)",
         lambda: mg.init_params([2, 0, 1], jax.random.key(0)), ShapeError,
         r"`layer_dims\[1\]` \(the size of hidden layer 1\) is 0",
         "give every layer at least one unit"),
    Case("init-key", I, "an int seed instead of a PRNG key", lambda: mg.init_params([3, 1], 0),
         ConfigError, r"expected `key` to be one PRNG key", "`jax.random.key(seed)`"),
    Case("init-dtype", I, "an integer dtype", lambda: mg.init_params(
         [3, 1], jax.random.key(0), dtype=jnp.int32), DTypeError,
         r"`dtype` must be a floating dtype, got int32", "`dtype=jnp.float32`"),
    Case("init-method", I, "an unknown init method", lambda: mg.init_params(
         [3, 1], jax.random.key(0), method="glorot"), ConfigError,
         r"unknown init method 'glorot'", "see `mg.functional.INIT_METHODS`"),
    # -- train and accuracy ---------------------------------------------------------------
    Case("train-optimizer-invalid", T, "`optimizer` that is neither an optax transformation nor "
         "a step", fit(optimizer="adam"), ConfigError,
         r"`optimizer` must be an optax.GradientTransformation", "`optax.adam(1e-3)`"),
    Case("train-callback-invalid", T, "a callback that is neither a `Callback` nor a function",
         fit(callbacks=[3]), ConfigError,
         r"expected each of `callbacks` to be a Callback or a function of a Progress",
         "`mg.training.Checkpointer(dir)`, or `lambda progress: …`"),
    Case("train-epochs-zero", T, "`epochs` = 0 (nothing to train) or not a positive int",
         fit(epochs=0), ConfigError, r"`epochs` must be a positive int, got 0",
         "`epochs >= 1`"),
    Case("train-batch-larger-than-m", T, "`batch_size` larger than the training set",
         fit(batch_size=100), ConfigError,
         r"`batch_size` = 100 is larger than the m = 5 training examples",
         "`batch_size <= m`, or None for full batch"),
    Case("checkpoint-every-invalid", T, "`Checkpointer(every=…)` not a positive int",
         lambda: mg.training.Checkpointer("ckpt", every=0), ConfigError,
         r"`every` must be a positive int or None", "`every=100` optimizer steps, or None"),
    Case("train-resume-with-start-epoch", T, "`Checkpointer(resume=True)` together with "
         "`opt_state` or `start_epoch`",
         in_tmp(resume_with_start_epoch),
         ConfigError, r"takes the epoch and the optimizer state from the checkpoint",
         "drop `opt_state`/`start_epoch`"),
    Case("train-resume-other-run", T, "resuming a checkpoint written by a run with other "
         "options, data, initial params or key", in_tmp(resume_other_run), CheckpointError,
         r"was written for a different run \(l2: checkpoint 0\.0, now 0\.1\)",
         "the same arguments, or another `checkpoint_dir`"),
    Case("accuracy-flat-labels", T, "`accuracy` given labels as a vector (m,)",
         lambda: mg.accuracy(mg.network(["relu", "sigmoid"]), _params((3, 4, 1)), _X(),
                             jnp.ones(5)), ShapeError, r"use Y\.reshape\(1, 5\)",
         "`Y.reshape(1, m)`"),
    Case("accuracy-class-labels", T, "`accuracy` (or `value_and_grad` with `ce`) given one "
         "row of class indices for a softmax output", lambda: mg.accuracy(
         mg.network(ACTS2, "ce"), _params(), _X(), jnp.array([[0, 1, 1, 0, 1]])), ShapeError,
         r"one-hot encode them to \(2, 5\): jax\.nn\.one_hot\(Y\[0\], 2\)\.T",
         "`jax.nn.one_hot(y, n_L).T`"),
    # -- data sets and data files ----------------------------------------------------------
    Case("dataset-unknown", D, "a built-in data set name with a typo (`flowr`, `Spiral`)",
         lambda: load("Spiral"), ConfigError,
         r"unknown data set 'Spiral' \(did you mean 'spiral'\?\): the built-in sets are "
         r"flower, moons, circles, spiral", "the right name, or a .npz/.csv file"),
    Case("dataset-m-too-small", D, "`m` smaller than the number of classes",
         lambda: spiral(m=2), ConfigError, r"`m` must be an int ≥ 3",
         "at least one example per class"),
    Case("data-m-with-file", D, "`m` given for a data file", in_tmp(lambda: load(
         write("d.npz", np.zeros(1)), m=10)), ConfigError,
         r"`m` sets the size of a built-in data set", "leave `m` out"),
    Case("csv-text-labels", D, "class names as text in the label column",
         in_tmp(lambda: load(write("pets.csv", "x1,x2,y\n1,2,cat\n3,4,dog\n"))), DataError,
         r"'cat' is not a number: encode the classes as integers 0 … K-1",
         "encode classes as 0 … K-1"),
    Case("csv-rows-read-as-columns", D, "a CSV with one example per line read with "
         "`examples='columns'` (`--examples columns`)", in_tmp(lambda: load(write(
         "d.csv", "x1,x2,y\n1,2,0\n3,4,1\n5,6,0\n"), examples="columns")), DataError,
         r"the lines start with numbers, so the file probably holds one example per line",
         "leave out `--examples columns`"),
    Case("npz-not-zip", D, "a file named .npz that is not a zip archive (e.g. a .npy)",
         in_tmp(lambda: load(write("d.npz", np.zeros(3)))), DataError,
         r"not a \.npz file .* a \.npy file \(one array\)", "`np.savez(path, X=X, Y=Y)`"),
    # -- per-example ----------------------------------------------------------------------
    Case("clip-norm-negative", PE, "a negative clipping norm", clip(clip_norm=-1.0),
         ConfigError, r"`clip_norm` must be finite and > 0, got -1.0", "`clip_norm > 0`"),
    Case("clip-norm-zero", PE, "clipping norm 0", clip(clip_norm=0.0),
         ConfigError, r"`clip_norm` must be finite and > 0, got 0.0", "`clip_norm > 0`"),
    Case("clip-norm-nan", PE, "a NaN clipping norm",
         clip(clip_norm=float("nan")), ConfigError,
         r"`clip_norm` must be finite and > 0, got nan", "a finite `clip_norm > 0`"),
    Case("noise-multiplier-negative", PE, "a negative noise multiplier",
         clip(noise_multiplier=-0.5), ConfigError,
         r"`noise_multiplier` must be finite and ≥ 0, got -0.5", "`noise_multiplier >= 0`"),
    Case("course-complex", "Course-compatible API", "complex data passed to the course API",
         lambda: mg.course.L_model_forward(jnp.ones((3, 5), jnp.complex64), _params()),
         DTypeError, r"`X` has dtype complex64; expected real numbers", "`jnp.real(X)`"),
    Case("course-conv-hparameters", "Course-compatible API",
         "`conv_forward` without a pad (or stride) in `hparameters`",
         lambda: mg.course.conv_forward(np.ones((1, 4, 4, 1)), np.ones((2, 2, 1, 1)),
                                        np.ones((1, 1, 1, 1)), {"stride": 1}),
         ConfigError, r"`conv_forward` needs `hparameters` with keys \['stride', 'pad'\]",
         "`{'stride': 1, 'pad': 0}`"),
    Case("course-conv-channels", "Course-compatible API",
         "course filters whose n_C_prev is not A_prev's channel count",
         lambda: mg.course.conv_forward(np.ones((1, 4, 4, 3)), np.ones((2, 2, 1, 5)),
                                        np.ones((1, 1, 1, 5)), {"stride": 1, "pad": 0}),
         ShapeError, r"expected W \(f, f, n_C_prev, n_C\) with n_C_prev = A_prev.shape\[3\] = 3",
         "W (f, f, n_C_prev, n_C), examples first in A_prev"),
    Case("course-pool-mode", "Course-compatible API", "a pooling mode other than max or average",
         lambda: mg.course.pool_forward(np.ones((1, 4, 4, 1)), {"f": 2, "stride": 2}, mode="avg"),
         ConfigError, r"`mode` must be 'max' or 'average', got 'avg'", "`mode=\"average\"`"),
    # -- privacy --------------------------------------------------------------------------
    Case("dp-noise-multiplier-not-positive", DP, "a noise multiplier σ ≤ 0 for the accountant",
         _eps(noise_multiplier=0.0), ConfigError,
         r"`noise_multiplier` \(σ\) must be finite and > 0", "σ > 0, or give a target ε"),
    Case("dp-sampling-rate-out-of-range", DP, "a sampling rate q outside (0, 1]",
         _eps(sampling_rate=1.5), ConfigError,
         r"`sampling_rate` \(q\) must be in \(0, 1\], got 1.5", "0 < q ≤ 1 (q·N examples a batch)"),
    Case("dp-delta-out-of-range", DP, "δ outside (0, 1)", _eps(delta=0.0), ConfigError,
         r"`delta` \(δ\) must be in \(0, 1\), got 0.0", "δ ≪ 1/N, e.g. 1e-5"),
    Case("dp-delta-not-below-1-over-n", DP, "δ ≥ 1/N for the N training examples",
         _plan(n=1000, delta=0.002), ConfigError,
         r"`delta` = 0.002 is ≥ 1/N = 0.001 for N = 1000", "δ ≪ 1/N, e.g. 1e-5"),
    Case("dp-target-epsilon-not-positive", DP, "a target ε ≤ 0",
         lambda: mg.privacy.noise_multiplier(target_epsilon=0.0, delta=1e-5, sampling_rate=0.01,
                                             steps=100), ConfigError,
         r"`target_epsilon` must be finite and > 0, got 0.0", "a budget ε > 0, e.g. 3.0"),
    Case("dp-config-without-noise", DP, "a DPConfig with neither σ nor a target ε",
         _plan(noise_multiplier=None), ConfigError,
         r"DPConfig needs `noise_multiplier` \(σ\) or `target_epsilon`", "give one of them"),
    Case("dp-budget-exhausted", DP, "σ and a budget ε given, but the requested steps spend more",
         _plan(steps=20000, noise_multiplier=1.0, target_epsilon=1.0), ConfigError,
         r"the privacy budget ε = 1 is exhausted before the requested 20000 steps",
         "fewer steps, more noise, a lower q, or calibrate σ to the budget"),
    Case("dp-accounting-missing", DP, "the accountant without the `dp-accounting` package",
         _without("dp_accounting", call=_eps()), ConfigError,
         r'pip install "manualgrad\[dp\]"', '`pip install "manualgrad[dp]"`'),
    Case("names-needs-faker", "Data sets", "the names data set without faker",
         _without("faker", call=lambda: mg.data.names.names()), mg.errors.MissingDependencyError,
         r'pip install "manualgrad\[names\]"', '`pip install "manualgrad[names]"`'),
    Case("digits-needs-scikit-learn", "Data sets", "the digits data set without scikit-learn",
         _without("sklearn", "sklearn.datasets", call=lambda: mg.data.datasets.digits()),
         ConfigError, r'pip install "manualgrad\[digits\]"',
         '`pip install "manualgrad[digits]"`'),
    # -- curvature ------------------------------------------------------------------------
    Case("mc-samples-zero", CV, "`mc_samples` ≤ 0", curv(mc_samples=0, key=jax.random.key(0)),
         ConfigError, r"`mc_samples` must be ≥ 1, got 0", "`mc_samples=1` or more"),
    Case("mc-samples-not-int", CV, "`mc_samples` is not a Python int (a float, an array)",
         curv(mc_samples=2.5, key=jax.random.key(0)), ConfigError,
         r"`mc_samples` must be a Python int ≥ 1", "a Python int (static under jit)"),
    Case("mc-samples-without-key", CV, "`mc_samples` given without `key`",
         curv("kfac_factors", mc_samples=2), ConfigError,
         r"`mc_samples` = 2 asks for sampled labels but no `key`", "`key=jax.random.key(seed)`"),
    Case("key-without-mc-samples", CV, "a `key` given but `mc_samples` left at None (exact)",
         curv(key=jax.random.key(0)), ConfigError,
         r"a `key` was given but `mc_samples` is None", "`mc_samples=1`, or drop the key"),
    Case("v-not-dict", CV, "the direction `v` is not a dict", curv(
         "ggn_vector_product", v=[jnp.ones((4, 3))]), ShapeError,
         r"expected `v` to be a dict shaped like params", "`jax.tree.map(jnp.ones_like, params)`"),
    Case("v-missing-key", CV, "`v` lacks a parameter (or has an extra one)",
         curv("hessian_vector_product", v=_v(b2=None)), ShapeError,
         r"`v` must have the params' keys .*; missing \['b2'\]", "one leaf per parameter"),
    Case("v-wrong-shape", CV, "a leaf of `v` has another shape than its parameter",
         curv("ggn_vector_product", v=_v(W1=jnp.ones((3, 4)))), ShapeError,
         r"`v\['W1'\]` has shape \(3, 4\), expected \(4, 3\)", "shape `v` like params"),
    Case("noise-scale-one-example", CV, "the gradient noise scale on one example",
         curv("gradient_noise_scale", X=_X(m=1), Y=_Y(m=1)), ShapeError,
         r"needs m ≥ 2, got X with m = 1", "a batch of several examples"),
    Case("diag-hessian-softmax-mse", CV, "`diag_hessian` of a softmax output with `mse`",
         curv("diag_hessian", loss="mse"), ConfigError,
         r"`diag_hessian` needs the output activation's g'' elementwise",
         "`ce` with softmax, or `hessian_vector_product`"),
    Case("curvature-with-dropout", CV, "a curvature function of a network with dropout",
         layered(lambda net: mg.curvature.diag_ggn(net, _params(), _X(), _Y()), keep_prob=0.5),
         ConfigError, r"is the curvature of the deterministic network",
         "`dataclasses.replace(net, keep_prob=1.0)`"),
    Case("diag-hessian-not-dense", CV, "`diag_hessian` of a network with a layer that is not "
         "dense", lambda: mg.curvature.diag_hessian(
             _scaled(), _scaled().init((3,), jax.random.key(0)), _X(), _Y()), ConfigError,
         r"`diag_hessian` needs each layer's Z, A and g''",
         "`diag_ggn` or `hessian_vector_product`"),
    Case("kfac-layernorm", CV, "`kfac_factors` of a network with a `LayerNorm`",
         lambda: mg.curvature.kfac_factors(
             _tokens_net(mg.layers.Dense(4), mg.layers.LayerNorm()),
             _tokens_net(mg.layers.Dense(4), mg.layers.LayerNorm()).init(
                 (3,), jax.random.key(0)), _X(), _Y()), ConfigError,
         r"are a LayerNorm's scale and shift .* which has no Kronecker factors", "`diag_ggn`"),
    # -- jit ------------------------------------------------------------------------------
    Case("jit-functional-names", J, "a functional shim (`mg.value_and_grad`) under `jax.jit`: "
         "its activation names are not arrays", _jit_functional, TypeError,
         r"Error interpreting argument to .* as an abstract array", "jit a network's function: "
         "`jax.jit(mg.network(activations, loss).value_and_grad)`", from_jax=True),
    # -- value checks ---------------------------------------------------------------------
    Case("values-X-not-finite", V, "X contains NaN or ±Inf", checked(X=_X().at[0, 1].set(jnp.nan)),
         RUNTIME, r"`X` has 1 non-finite entry ", "clean or impute the data"),
    Case("values-params-not-finite", V, "a parameter contains NaN or ±Inf (training diverged)",
         checked(params=with_params(W2=jnp.full((2, 4), jnp.inf))()), RUNTIME,
         r"`W2` has 8 non-finite entries", "lower the learning rate, clip gradients"),
    Case("values-Y-not-finite", V, "Y contains NaN or ±Inf",
         checked(Y=_Y().at[0, 0].set(jnp.nan)), RUNTIME, r"`Y` has 1 non-finite entry ",
         "clean the labels"),
    Case("values-bce-labels", V, "a `bce` label other than 0 or 1 (e.g. class index 2)",
         checked(params=_params((3, 4, 1)), Y=jnp.array([[0.0, 1.0, 2.0, 1.0, 0.0]]),
                 activations=("relu", "sigmoid"), loss="bce"), RUNTIME,
         r"`Y` has 1 label outside \{0, 1\}", "0/1 labels, or `soft_labels=True`"),
    Case("values-ce-not-one-hot", V, "a `ce` label column that is not one-hot",
         checked(Y=_Y().at[:, 0].set(0.5)), RUNTIME, r"`Y` has 1 column that is not one-hot",
         "`jax.nn.one_hot(y, n_L, axis=0)`"),
    # -- checking your own backward pass --------------------------------------------------
    Case("against-no-file", CB, "`--against` names a file that does not exist",
         lambda: load_function("missing_backward.py:L_model_backward"), ConfigError,
         r"no such file 'missing_backward.py'", "check the path (relative to where you run)"),
    Case("against-not-python", CB, "`--against` names something other than a .py file",
         lambda: load_function("backward.ipynb"), ConfigError,
         r"expected FILE.py or FILE.py:FUNCTION, got 'backward.ipynb'",
         "export the notebook's functions to a .py file"),
    Case("against-does-not-load", CB, "the file raises while it is loaded (top-level code runs)",
         student_file("import numpy as np\nraise RuntimeError('no data here')\n"),
         ConfigError, r"'student_backward.py' does not load: RuntimeError: no data here "
         r"\(line 2\)", "move top-level work under `if __name__ == \"__main__\":`"),
    Case("against-no-function", CB, "the file has no function of that name",
         student_file("def helper():\n    pass\n"), ConfigError,
         r"'student_backward.py' defines no function 'L_model_backward' \(it has helper\)",
         "name it: `FILE.py:FUNCTION`"),
    Case("against-no-attribute", CB, "a dotted FUNCTION (a method of a class) that is not there",
         student_file("class NN:\n    pass\n", "student_backward.py:NN.L_model_backward"),
         ConfigError, r"'NN' in 'student_backward.py' has no attribute 'L_model_backward'",
         "name it: `FILE.py:CLASS.FUNCTION`"),
    Case("against-signature", CB, "the function cannot take the arguments it is given "
         "(`lambd` without `--l2`, or `--l2` without `lambd`)",
         lambda: check_backward(my_backward, l2=0.7), ConfigError,
         r"`my_backward\(AL, Y, caches\)` cannot be called as my_backward\(AL, Y, caches, "
         r"lambd\)", "add `lambd` to the function, or leave `--l2` out"),
    Case("against-convention", CB, "an unknown `convention`",
         lambda: check_backward(my_backward, convention="torch"), ConfigError,
         r"unknown convention 'torch'; expected one of \['course', 'core', 'flat'\]",
         "'course' for (AL, Y, caches), 'core' for (params, X, Y), 'flat' for (X, Y, cache)"),
    Case("against-keep-prob-course", CB, "`keep_prob` for a function whose caches hold no masks",
         lambda: check_backward(my_backward, keep_prob=0.8), ConfigError,
         r"`keep_prob` checks the regularization assignment's backward_propagation_with_dropout",
         "check `backward_propagation_with_dropout(X, Y, cache, keep_prob)`"),
    Case("against-l2-and-keep-prob", CB, "`l2` and `keep_prob` together",
         lambda: check_backward(flat_backward, l2=0.7, keep_prob=0.8), ConfigError,
         r"`l2` and `keep_prob` together: the assignment's backward functions take one of",
         "check each on its own"),
    Case("against-flat-depth", CB, "cases of another depth for the 3-layer flat cache",
         lambda: check_backward(flat_backward, cases=default_cases()[1:2]), ConfigError,
         r"the flat convention's cache is that of a 3-layer network",
         "`flat_cases()`"),
    Case("layer-backward-unknown", CB, "`check_layer_backward` of a function of no known layer",
         lambda: check_layer_backward(my_backward), ConfigError,
         r"`my_backward` is not one of the course's layer backward functions",
         "name the kind: `--convention conv|pool|rnn|lstm`"),
    Case("layer-backward-signature", CB, "a layer backward that cannot take the course's arguments",
         lambda: check_layer_backward(lambda dZ: dZ, kind="conv"), ConfigError,
         r"cannot be called as <lambda>\(dZ, cache\)", "`conv_backward(dZ, cache)`"),
    Case("layer-backward-conv-not-a-tuple", CB,
         "a conv_backward that returns something other than the course's tuple",
         lambda: check_layer_backward(lambda dZ, cache: dZ, kind="conv"),
         ConfigError, r"returned ndarray; expected the course's \(dA_prev, dW, db\)",
         "`return dA_prev, dW, db`"),
    Case("against-loss", CB, "a loss the course's sigmoid network cannot have",
         lambda: check_backward(my_backward, loss="ce"), ConfigError,
         r"loss 'ce' cannot be checked here", "`bce` or `mse`"),
    Case("backward-not-a-dict", CB, "the function returns something other than a dict",
         returning(lambda g: list(g.values())), ShapeError,
         r"`my_backward` returned list on the network 'course'", "return the grads dict"),
    Case("backward-not-numeric", CB, "a returned value is not an array",
         returning(lambda g: {**g, "db1": None}), DTypeError,
         r"`my_backward` returned 'db1' = NoneType", "return arrays"),
    Case("backward-wrong-shape", CB, "a returned array has a shape no known mistake explains",
         returning(lambda g: {**g, "dW2": g["dW2"][:, :1]}), ShapeError,
         r"`my_backward` returned 'dW2' with shape \(3, 1\)", "dW[l] has W[l]'s shape"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_raises_documented_error(case: Case):
    with pytest.raises(case.error, match=case.match) as info:
        case.call()
    assert case.from_jax or case.error is RUNTIME or isinstance(info.value, mg.ManualgradError)


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


def _message(case: Case) -> str:
    if case.from_jax:
        return f"{case.error.__name__} matching /{case.match}/ (text set by JAX)"
    try:
        case.call()
    except case.error as err:
        return str(err).split(" (`check` failed")[0]  # checkify appends where it failed
    raise AssertionError(f"{case.id}: no error raised")


def render_catalogue() -> str:
    """docs/errors.md, from CASES and the messages the library raises for them."""
    lines = [
        "# Error catalogue",
        "",
        "<!-- Generated by `PYTHONPATH=src python tests/test_errors.py`; do not edit by hand."
        " tests/test_errors.py checks this file against the library. -->",
        "",
        "Every public entry point checks its inputs at trace time (so it costs nothing "
        "under `jax.jit`) and raises a subclass of `manualgrad.ManualgradError`: "
        "`ShapeError` and `ConfigError` (also `ValueError`s) or `DTypeError` (also a "
        "`TypeError`); data files and checkpoints, read at the boundary, raise `DataError` "
        "and `CheckpointError` (a missing file, `FileNotFoundError`). Each entry below "
        "shows the situation, the error type, the exact "
        "message for the example input of the test case with the same id in "
        "`tests/test_errors.py` (the numbers follow your shapes), and the fix.",
        "",
        "Values (NaN/Inf, label ranges) are not checked by default: they are opt-in "
        "through `manualgrad.checking.value_checks` (last section), whose errors are "
        "`jax.experimental.checkify.JaxRuntimeError`s raised by `err.throw()`.",
        "",
    ]
    section = None
    for case in CASES:
        if case.section != section:
            section = case.section
            lines += [f"## {section}", ""]
        lines += [
            f"### `{case.id}`",
            "",
            f"- **Situation:** {case.situation}.",
            f"- **Raises:** `{case.error.__name__}`",
            f"- **Fix:** {case.fix}.",
            "",
            "```text",
            _message(case),
            "```",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def test_catalogue_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == render_catalogue(), (
        "docs/errors.md is stale: run `PYTHONPATH=src python tests/test_errors.py`"
    )


if __name__ == "__main__":
    jax.config.update("jax_numpy_rank_promotion", "raise")
    DOC.write_text(render_catalogue(), encoding="utf-8")
    print(f"wrote {DOC} ({len(CASES)} cases)", file=sys.stderr)
