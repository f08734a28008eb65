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
from manualgrad.per_example import dp_grads
from manualgrad.training._loop import TrainingInterrupted, epoch_batches, steps_per_epoch
from manualgrad.training.checkpoint import load_params

ACTS = ("tanh", "relu", "sigmoid")
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
    return mg.init_params(list(dims), jax.random.key(seed), method="xavier", dtype=dtype)


def _oracle_full_batch(params, X, Y, optimizer, steps, **kw):
    """A plain Python loop with jax.grad of manualgrad.cost: the independent reference."""
    grad = jax.jit(jax.grad(mg.cost), static_argnames=mg.functional.STATIC_ARGNAMES)
    state = optimizer.init(params)
    for _ in range(steps):
        g = grad(params, X, Y, activations=ACTS, **kw)
        with jax.numpy_dtype_promotion("standard"):  # optax is written for standard promotion
            updates, state = optimizer.update(g, state, params)
        params = optax.apply_updates(params, updates)
    return params


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_100_steps_match_a_jax_grad_loop_in_float64(x64, name):
    X, Y = _data()
    params = _params()
    result = mg.train(
        params, X, Y, OPTIMIZERS[name](), activations=ACTS, epochs=100, key=jax.random.key(3)
    )
    expected = _oracle_full_batch(params, jnp.asarray(X), jnp.asarray(Y), OPTIMIZERS[name](), 100)
    assert result.epoch == 100 and result.history.shape == (100,)
    assert rel_err(result.params, expected) <= 1e-10


def test_jax_grad_as_value_and_grad_fn_gives_the_same_params(x64):
    X, Y = _data()
    params = _params()
    kw = dict(activations=ACTS, epochs=100, key=jax.random.key(3), l2=0.1)
    ours = mg.train(params, X, Y, ADAM, **kw)
    theirs = mg.train(params, X, Y, ADAM, value_and_grad_fn=jax.value_and_grad(mg.cost), **kw)
    assert rel_err(ours.params, theirs.params) <= 1e-10
    np.testing.assert_allclose(ours.history, theirs.history, rtol=1e-12)


def test_minibatches_with_remainder_dropout_and_l2_match_the_documented_key_contract(x64):
    """Oracle: shuffle by fold_in(k_shuffle, e); batch j masks from fold_in(fold_in(k_d, e), j)."""
    X, Y = _data(m=37)
    params0 = _params()
    key, B, epochs, kw = jax.random.key(7), 8, 4, dict(l2=0.05, keep_prob=0.8)
    optimizer = optax.adam(0.02)
    result = mg.train(
        params0, X, Y, optimizer, activations=ACTS, epochs=epochs, batch_size=B, key=key, **kw
    )

    grad = jax.jit(jax.value_and_grad(mg.cost), static_argnames=mg.functional.STATIC_ARGNAMES)
    params, state, history = params0, optimizer.init(params0), []
    k_shuffle, k_dropout = jax.random.split(key)
    m = X.shape[1]
    for e in range(epochs):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(k_shuffle, e), m))
        total = 0.0
        for j, start in enumerate(range(0, m, B)):
            cols = perm[start : start + B]
            k = jax.random.fold_in(jax.random.fold_in(k_dropout, e), j)
            C, g = grad(params, X[:, cols], Y[:, cols], activations=ACTS, key=k, **kw)
            total += float(C) * len(cols)
            with jax.numpy_dtype_promotion("standard"):
                updates, state = optimizer.update(g, state, params)
            params = optax.apply_updates(params, updates)
        history.append(total / m)
    assert steps_per_epoch(m, B) == 5
    assert rel_err(result.params, params) <= 1e-10
    np.testing.assert_allclose(result.history, history, rtol=1e-10)


def test_grouping_epochs_into_calls_never_changes_the_params(x64):
    X, Y = _data(m=29)
    kw = dict(activations=ACTS, epochs=7, batch_size=6, key=jax.random.key(1))
    reference = mg.train(_params(), X, Y, ADAM, epochs_per_call=7, **kw)
    for per_call in (1, 3):
        other = mg.train(_params(), X, Y, ADAM, epochs_per_call=per_call, **kw)
        for k in reference.params:
            np.testing.assert_array_equal(other.params[k], reference.params[k])
        np.testing.assert_array_equal(other.history, reference.history)


def test_stopping_by_callback_and_resuming_gives_exactly_the_uninterrupted_params(x64):
    X, Y = _data(m=29)
    kw = dict(activations=ACTS, epochs=9, batch_size=5, key=jax.random.key(2), epochs_per_call=2)
    full = mg.train(_params(), X, Y, ADAM, **kw)
    seen = []

    def stop_after_4(p):
        seen.append(p.epoch)
        return p.epoch >= 4

    part = mg.train(_params(), X, Y, ADAM, callback=stop_after_4, **kw)
    assert part.epoch == 4 and seen == [2, 4]
    rest = mg.train(part.params, X, Y, ADAM, opt_state=part.opt_state, start_epoch=4, **kw)
    assert rest.epoch == 9
    for k in full.params:
        np.testing.assert_array_equal(rest.params[k], full.params[k])
    np.testing.assert_array_equal(np.concatenate([part.history, rest.history]), full.history)


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
    result = mg.train(
        _params(dtype=jnp.float32), X, Y, optax.adam(0.01), activations=ACTS, epochs=3
    )
    assert result.params["W1"].dtype == jnp.float32
    assert np.all(np.isfinite(result.history))


def test_cost_history_decreases_on_flower():
    from manualgrad.data.datasets import flower

    X, Y = flower()
    acts = ("tanh", "sigmoid")
    params = mg.init_params([2, 8, 1], jax.random.key(0), method="xavier")
    result = mg.train(params, X, Y, optax.adam(0.02), activations=acts, epochs=300)
    assert result.history[-1] < 0.6 * result.history[0]


def test_accuracy_counts_correct_sigmoid_and_softmax_predictions():
    X = jnp.array([[1.0, -2.0, 3.0, -0.5], [0.5, 1.0, -1.0, 2.0]])
    sig = {"W1": jnp.array([[1.0, 0.0]]), "b1": jnp.zeros((1, 1))}  # predicts x0 > 0
    Y = np.array([[1, 0, 0, 0]])  # right on examples 0, 1, 3
    assert mg.accuracy(sig, X, Y, activations=("sigmoid",)) == 0.75
    soft = {"W1": jnp.eye(2), "b1": jnp.zeros((2, 1))}  # predicts argmax(x)
    Y_onehot = np.array([[1, 0, 1, 1], [0, 1, 0, 0]])  # right on 0, 1, 2
    assert mg.accuracy(soft, X, Y_onehot, activations=("softmax",)) == 0.75


def test_bad_optimizer_and_shapes_raise_manualgrad_errors():
    X, Y = _data(dtype=np.float32)
    params = _params(dtype=jnp.float32)
    with pytest.raises(mg.errors.ConfigError, match="GradientTransformation"):
        mg.train(params, X, Y, "adam", activations=ACTS, epochs=1)
    with pytest.raises(mg.errors.ShapeError, match="transposed"):
        mg.train(params, X.T, Y, optax.adam(0.1), activations=ACTS, epochs=1)
    with pytest.raises(mg.errors.ConfigError, match="epochs"):
        mg.train(params, X, Y, optax.adam(0.1), activations=ACTS, epochs=-1)


@pytest.mark.parametrize(
    ("typo", "hint"),
    [
        ({"activation": ACTS}, "did you mean `activations`"),
        ({"activations": ACTS, "epoch": 3}, "did you mean `epochs`"),
        ({"activations": ACTS, "keepprob": 0.5}, "did you mean `keep_prob`"),
    ],
    ids=["network-option", "loop-option", "dropout-option"],
)
def test_a_misspelt_option_is_a_config_error_naming_the_option_meant(x64, typo, hint):
    X, Y = _data()
    with pytest.raises(mg.errors.ConfigError, match=f"`train` got an unknown option .*{hint}"):
        mg.train(_params(), X, Y, ADAM, epochs=1, **typo)


def test_train_without_activations_is_a_config_error_asking_for_them(x64):
    X, Y = _data()
    with pytest.raises(mg.errors.ConfigError, match="`train` needs `activations`"):
        mg.train(_params(), X, Y, ADAM, epochs=1)


# --- checkpoints, signals and resuming, in the library ----------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_a_checkpoint_and_resuming_ends_with_the_uninterrupted_params(
    x64, tmp_path, sig
):
    X, Y = _data(m=29)
    kw = dict(
        activations=ACTS,
        epochs=9,
        batch_size=5,
        key=jax.random.key(2),
        epochs_per_call=2,
        l2=0.01,
        keep_prob=0.9,
    )
    full = mg.train(_params(), X, Y, ADAM, **kw)

    def signal_at_4(p):
        if p.epoch == 4:
            os.kill(os.getpid(), sig)

    def not_caught(signum, frame):
        raise AssertionError(f"{signal.Signals(signum).name} reached the caller: train missed it")

    previous = signal.signal(sig, not_caught)
    try:
        with pytest.raises(TrainingInterrupted) as stop:
            mg.train(_params(), X, Y, ADAM, callback=signal_at_4, checkpoint_dir=tmp_path, **kw)
        assert signal.getsignal(sig) is not_caught  # the caller's handler is back
    finally:
        signal.signal(sig, previous)
    assert stop.value.signal == sig.name and stop.value.result.epoch == 4

    resumed = mg.train(_params(), X, Y, ADAM, checkpoint_dir=tmp_path, resume=True, **kw)
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

    mg.train(
        _params(),
        X,
        Y,
        ADAM,
        activations=ACTS,
        epochs=7,
        batch_size=5,
        callback=look,
        checkpoint_dir=tmp_path,
        checkpoint_every=10,
    )
    assert seen == [None, None, 2, 2, 4, 4, 6]  # the callback runs before each save
    meta = json.loads(str(np.load(path)["meta"]))
    assert (meta["epoch"], meta["step"]) == (7, 42)  # and a last one at the end


def test_dp_grads_train_with_a_fresh_noise_key_every_step_without_dropout(x64):
    """Oracle: a Python loop drawing each step's key from the documented contract."""
    X, Y = _data(m=29)
    key, B, epochs, optimizer = jax.random.key(5), 8, 3, optax.sgd(0.1)
    dp = dict(clip_norm=0.5, noise_multiplier=1.1)

    def dp_value_and_grad(params, X, Y, *, key, **options):
        return jnp.zeros(()), dp_grads(params, X, Y, noise_key=key, **dp, **options)

    result = mg.train(
        _params(),
        X,
        Y,
        optimizer,
        activations=ACTS,
        epochs=epochs,
        batch_size=B,
        key=key,
        value_and_grad_fn=dp_value_and_grad,
    )

    # dp_grads draws its noise for the params in dict order, which jax's trees sort
    params = dict(sorted(_params().items()))
    state, oracle_dp = optimizer.init(params), jax.jit(dp_grads, static_argnames="activations")
    k_shuffle, k_dropout = jax.random.split(key)
    for e in range(epochs):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(k_shuffle, e), 29))
        for j, start in enumerate(range(0, 29, B)):
            cols = perm[start : start + B]
            k = jax.random.fold_in(jax.random.fold_in(k_dropout, e), j)
            g = oracle_dp(params, X[:, cols], Y[:, cols], noise_key=k, activations=ACTS, **dp)
            updates, state = optimizer.update(g, state, params)
            params = optax.apply_updates(params, updates)
    assert rel_err(result.params, params) <= 1e-10


def test_a_gradient_function_that_declares_step_gets_the_optimizer_step(x64):
    X, Y = _data(m=29)  # batches of 8: 3 full and one of 5, so 4 steps per epoch

    def step_as_cost(params, X, Y, *, step, **options):
        C, grads = mg.value_and_grad(params, X, Y, **options)
        return step.astype(C.dtype), grads

    result = mg.train(
        _params(),
        X,
        Y,
        ADAM,
        activations=ACTS,
        epochs=3,
        batch_size=8,
        value_and_grad_fn=step_as_cost,
    )
    # an epoch's cost is Σ_j m_j C_j / m, here with C_j = t = 4 e + j
    expected = [(8 * sum(4 * e + j for j in range(3)) + 5 * (4 * e + 3)) / 29 for e in range(3)]
    np.testing.assert_allclose(result.history, expected, rtol=1e-12)
