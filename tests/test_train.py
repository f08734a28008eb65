"""The training loop: same params as a plain jax.grad loop, chunking- and resume-invariant."""

from __future__ import annotations

import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import manualgrad as mg
from helpers import rel_err
from manualgrad.training import (
    Callback,
    Checkpointer,
    Step,
    StopOnSignal,
    TrainingInterrupted,
    epoch_batches,
    minibatch_step,
    steps_per_epoch,
)
from manualgrad.training.checkpoint import load_params

ACTS = ("tanh", "relu", "sigmoid")
NET = mg.network(list(ACTS), "bce")
ADAM = optax.adam(0.01)  # one instance, so tests with the same settings share a compilation
OPTIMIZERS = {
    "sgd": lambda: optax.sgd(0.1),
    "adam": lambda: optax.adam(0.01),
    "chain-clip-adamw": lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(0.01)),
}


def _data(m=37, n_x=3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_x, m)).astype(dtype)
    Y = (X[0:1] * X[1:2] + 0.3 * rng.standard_normal((1, m)) > 0).astype(dtype)
    return X, Y


def _params(dims=(3, 5, 4, 1), seed=0, dtype=jnp.float64):
    return NET.init(list(dims), jax.random.key(seed), method="xavier", dtype=dtype)


def _oracle_full_batch(net, params, X, Y, optimizer, steps):
    """A plain Python loop with jax.grad of the network's cost: the independent reference."""
    grad = jax.jit(jax.grad(net.cost))
    state = optimizer.init(params)
    for _ in range(steps):
        g = grad(params, X, Y)
        with jax.numpy_dtype_promotion("standard"):  # optax is written for standard promotion
            updates, state = optimizer.update(g, state, params)
        params = optax.apply_updates(params, updates)
    return params


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_100_steps_match_a_jax_grad_loop_in_float64(x64, name):
    X, Y = _data()
    params = _params()
    result = mg.train(NET, params, X, Y, OPTIMIZERS[name](), epochs=100, key=jax.random.key(3))
    expected = _oracle_full_batch(
        NET, params, jnp.asarray(X), jnp.asarray(Y), OPTIMIZERS[name](), 100
    )
    assert result.epoch == 100 and result.step == 100 and result.history.shape == (100,)
    assert rel_err(result.params, expected) <= 1e-10


def test_minibatches_with_remainder_dropout_and_l2_match_the_documented_key_contract(x64):
    """Oracle: shuffle by fold_in(k_shuffle, e); batch j masks from fold_in(fold_in(k_d, e), j)."""
    X, Y = _data(m=37)
    net = mg.network(list(ACTS), "bce", l2=0.05, keep_prob=0.8)
    params0 = _params()
    key, B, epochs = jax.random.key(7), 8, 4
    optimizer = optax.adam(0.02)
    result = mg.train(net, params0, X, Y, optimizer, epochs=epochs, batch_size=B, key=key)

    grad = jax.jit(jax.value_and_grad(net.cost))
    params, state, history = params0, optimizer.init(params0), []
    k_shuffle, k_dropout = jax.random.split(key)
    m = X.shape[1]
    for e in range(epochs):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(k_shuffle, e), m))
        total = 0.0
        for j, start in enumerate(range(0, m, B)):
            cols = perm[start : start + B]
            k = jax.random.fold_in(jax.random.fold_in(k_dropout, e), j)
            C, g = grad(params, X[:, cols], Y[:, cols], k)
            total += float(C) * len(cols)
            with jax.numpy_dtype_promotion("standard"):
                updates, state = optimizer.update(g, state, params)
            params = optax.apply_updates(params, updates)
        history.append(total / m)
    assert steps_per_epoch(m, B) == 5 and result.step == 5 * epochs
    assert rel_err(result.params, params) <= 1e-10
    np.testing.assert_allclose(result.history, history, rtol=1e-10)


def test_grouping_epochs_into_calls_never_changes_the_params(x64):
    X, Y = _data(m=29)
    kw = dict(epochs=7, batch_size=6, key=jax.random.key(1))
    reference = mg.train(NET, _params(), X, Y, ADAM, epochs_per_call=7, **kw)
    for per_call in (1, 3):
        other = mg.train(NET, _params(), X, Y, ADAM, epochs_per_call=per_call, **kw)
        for k in reference.params:
            np.testing.assert_array_equal(other.params[k], reference.params[k])
        np.testing.assert_array_equal(other.history, reference.history)


def test_stopping_by_callback_and_resuming_gives_exactly_the_uninterrupted_params(x64):
    X, Y = _data(m=29)
    kw = dict(epochs=9, batch_size=5, key=jax.random.key(2), epochs_per_call=2)
    full = mg.train(NET, _params(), X, Y, ADAM, **kw)
    seen = []

    def stop_after_4(p):
        seen.append(p.epoch)
        return p.epoch >= 4

    part = mg.train(NET, _params(), X, Y, ADAM, callbacks=[stop_after_4], **kw)
    assert part.epoch == 4 and seen == [2, 4]
    rest = mg.train(NET, part.params, X, Y, ADAM, opt_state=part.opt_state, start_epoch=4, **kw)
    assert rest.epoch == 9
    for k in full.params:
        np.testing.assert_array_equal(rest.params[k], full.params[k])
    np.testing.assert_array_equal(np.concatenate([part.history, rest.history]), full.history)


def test_a_step_gets_every_unit_index_once_whatever_the_chunking(x64):
    """The loop's contract with a Step: unit t = start … units − 1, each run exactly once."""
    X, Y = _data(m=29)
    optimizer = optax.sgd(0.0)

    def step(params, opt_state, t, X, Y, key):
        return params, opt_state, t.astype(X.dtype)

    counting = Step(optimizer.init, step)
    for per_call in (1, 4, 10):
        result = mg.train(
            NET, _params(), X, Y, counting, epochs=10, start_epoch=3, epochs_per_call=per_call
        )
        np.testing.assert_array_equal(result.history, np.arange(3, 10))


def test_data_parallel_step_on_one_device_is_the_minibatch_step(x64):
    X, Y = _data(m=29)
    mesh = mg.parallel.data_mesh(1)
    kw = dict(epochs=3, key=jax.random.key(4))
    plain = mg.train(NET, _params(), X, Y, minibatch_step(NET, ADAM, 5), **kw)
    sharded = mg.train(
        NET, _params(), X, Y, mg.training.data_parallel_step(NET, ADAM, mesh, 5), **kw
    )
    assert rel_err(sharded.params, plain.params) <= 1e-12


def test_epoch_batches_partition_the_shuffled_columns_like_the_course():
    X = jnp.arange(2 * 11, dtype=jnp.float32).reshape(2, 11)
    Y = jnp.arange(11, dtype=jnp.float32).reshape(1, 11)
    key = jax.random.key(0)
    Xf, Yf, Xr, Yr = epoch_batches(X, Y, 4, key)
    perm = np.asarray(jax.random.permutation(key, 11))
    assert Xf.shape == (2, 2, 4) and Xr.shape == (2, 3) and Yf.shape == (2, 1, 4)
    np.testing.assert_array_equal(np.asarray(Yf[1, 0]), perm[4:8])
    np.testing.assert_array_equal(np.asarray(Yr[0]), perm[8:])
    np.testing.assert_array_equal(np.asarray(Xf[0]), np.asarray(X)[:, perm[:4]])


def test_float32_training_casts_float64_data_to_the_params_dtype():
    X, Y = _data()  # float64 numpy data, float32 params
    result = mg.train(NET, _params(dtype=jnp.float32), X, Y, optax.adam(0.01), epochs=3)
    assert result.params["W1"].dtype == jnp.float32
    assert np.all(np.isfinite(result.history))


def test_cost_history_decreases_on_flower():
    from manualgrad.data.datasets import flower

    X, Y = flower()
    net = mg.network(["tanh", "sigmoid"])
    params = net.init([2, 8, 1], jax.random.key(0), method="xavier")
    result = mg.train(net, params, X, Y, optax.adam(0.02), epochs=300)
    assert result.history[-1] < 0.6 * result.history[0]


def test_accuracy_counts_correct_sigmoid_and_softmax_predictions():
    X = jnp.array([[1.0, -2.0, 3.0, -0.5], [0.5, 1.0, -1.0, 2.0]])
    sig = {"W1": jnp.array([[1.0, 0.0]]), "b1": jnp.zeros((1, 1))}  # predicts x0 > 0
    Y = np.array([[1, 0, 0, 0]])  # right on examples 0, 1, 3
    assert mg.accuracy(mg.network(["sigmoid"]), sig, X, Y) == 0.75
    soft = {"W1": jnp.eye(2), "b1": jnp.zeros((2, 1))}  # predicts argmax(x)
    Y_onehot = np.array([[1, 0, 1, 1], [0, 1, 0, 0]])  # right on 0, 1, 2
    assert mg.accuracy(mg.network(["softmax"], "ce"), soft, X, Y_onehot) == 0.75


def test_bad_optimizer_and_shapes_raise_manualgrad_errors():
    X, Y = _data(dtype=np.float32)
    params = _params(dtype=jnp.float32)
    with pytest.raises(mg.errors.ConfigError, match="GradientTransformation"):
        mg.train(NET, params, X, Y, "adam", epochs=1)
    with pytest.raises(mg.errors.ShapeError, match="transposed"):
        mg.train(NET, params, X.T, Y, optax.adam(0.1), epochs=1)
    with pytest.raises(mg.errors.ConfigError, match="epochs"):
        mg.train(NET, params, X, Y, optax.adam(0.1), epochs=-1)
    with pytest.raises(mg.errors.ConfigError, match="already fixes its batches"):
        mg.train(NET, params, X, Y, minibatch_step(NET, ADAM, 4), epochs=1, batch_size=4)


# --- checkpoints, signals and resuming, in the library ----------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_a_checkpoint_and_resuming_ends_with_the_uninterrupted_params(
    x64, tmp_path, sig
):
    X, Y = _data(m=29)
    net = mg.network(list(ACTS), l2=0.01, keep_prob=0.9)
    kw = dict(epochs=9, batch_size=5, key=jax.random.key(2), epochs_per_call=2)
    full = mg.train(net, _params(), X, Y, ADAM, **kw)

    def signal_at_4(p):
        if p.epoch == 4:
            os.kill(os.getpid(), sig)

    def not_caught(signum, frame):
        raise AssertionError(f"{signal.Signals(signum).name} reached the caller: train missed it")

    previous = signal.signal(sig, not_caught)
    try:
        with pytest.raises(TrainingInterrupted) as stop:
            callbacks = [signal_at_4, Checkpointer(tmp_path), StopOnSignal()]
            mg.train(net, _params(), X, Y, ADAM, callbacks=callbacks, **kw)
        assert signal.getsignal(sig) is not_caught  # the caller's handler is back
    finally:
        signal.signal(sig, previous)
    assert stop.value.signal == sig.name and stop.value.result.epoch == 4

    resume = [Checkpointer(tmp_path, resume=True)]
    resumed = mg.train(net, _params(), X, Y, ADAM, callbacks=resume, **kw)
    assert (resumed.start_epoch, resumed.epoch) == (4, 9)
    for k in full.params:
        np.testing.assert_array_equal(resumed.params[k], full.params[k])
    np.testing.assert_array_equal(resumed.history, full.history)  # from epoch 0, as if one run
    saved = load_params(tmp_path)
    assert sorted(saved) == sorted(full.params)
    for k in full.params:
        np.testing.assert_array_equal(saved[k], full.params[k])


def test_checkpoints_are_written_every_n_steps_rounded_up_to_whole_epochs(x64, tmp_path):
    X, Y = _data(m=29)  # batches of 5: 6 steps per epoch, so 10 steps round up to 2 epochs
    path = tmp_path / "checkpoint.npz"
    seen = []

    def look(p):
        seen.append(json.loads(str(np.load(path)["meta"]))["epoch"] if path.exists() else None)

    callbacks = [look, Checkpointer(tmp_path, every=10)]
    mg.train(NET, _params(), X, Y, ADAM, epochs=7, batch_size=5, callbacks=callbacks)
    assert seen == [None, None, 2, 2, 4, 4, 6]  # `look` runs before the save
    meta = json.loads(str(np.load(path)["meta"]))
    assert (meta["epoch"], meta["step"]) == (7, 42)  # and a last one at the end


class _Ends(Callback):
    def __init__(self, log, fail=False):
        self.log, self.fail = log, fail

    def end(self, result):
        self.log.append(result.epoch)
        if self.fail:
            raise RuntimeError("end failed")

    def close(self):
        self.log.append("closed")


def test_every_end_hook_runs_even_when_an_earlier_one_raises(x64):
    X, Y = _data(m=29)
    log = []
    with pytest.raises(RuntimeError, match="end failed"):
        mg.train(NET, _params(), X, Y, ADAM, epochs=2, callbacks=[_Ends(log, True), _Ends(log)])
    assert log == [2, 2, "closed", "closed"]
