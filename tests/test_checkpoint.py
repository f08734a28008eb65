"""Checkpoints: exact round trip, atomic replace, and one-line errors for bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import manualgrad as mg
from manualgrad.errors import CheckpointError
from manualgrad.training.checkpoint import (
    Checkpoint,
    checkpoint_path,
    load_checkpoint,
    load_params,
    save_checkpoint,
)

FINGERPRINT = {"layers": [3, 4, 1], "optimizer": "adam", "lr": 0.01}


def _state(dims=(3, 4, 1), optimizer=None, seed=0):
    net = mg.network(["relu"] * (len(dims) - 2) + ["sigmoid"])
    params = net.init(list(dims), jax.random.key(seed))
    optimizer = optimizer or optax.adam(0.01)
    opt_state = optimizer.init(params)
    # take one step so that the optimizer state holds non-trivial values
    grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.5, params)
    with jax.numpy_dtype_promotion("standard"):  # optax is written for standard promotion
        updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def _checkpoint(epoch=3, **kw):
    params, opt_state = _state(**kw)
    return Checkpoint(
        params,
        opt_state,
        epoch,
        5 * epoch,
        jax.random.key(42),
        np.arange(epoch) / 7.0,
        FINGERPRINT,
    )


def test_round_trip_restores_every_leaf_key_and_history_exactly(tmp_path):
    ckpt = _checkpoint()
    save_checkpoint(tmp_path, ckpt)
    got = load_checkpoint(tmp_path, (ckpt.params, ckpt.opt_state), FINGERPRINT)
    want_leaves = jax.tree.leaves((ckpt.params, ckpt.opt_state))
    got_leaves = jax.tree.leaves((got.params, got.opt_state))
    assert jax.tree.structure((got.params, got.opt_state)) == jax.tree.structure(
        (ckpt.params, ckpt.opt_state)
    )
    for a, b in zip(got_leaves, want_leaves, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert (got.epoch, got.step) == (3, 15)
    np.testing.assert_array_equal(jax.random.key_data(got.key), jax.random.key_data(ckpt.key))
    np.testing.assert_array_equal(got.history, ckpt.history)


def test_a_failed_write_leaves_the_previous_checkpoint_valid_and_no_temp_file(
    tmp_path, monkeypatch
):
    first = _checkpoint(epoch=2)
    save_checkpoint(tmp_path, first)

    def crash(*args, **kwargs):
        raise OSError("disk died during rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk died"):
        save_checkpoint(tmp_path, _checkpoint(epoch=9))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["checkpoint.npz"]
    assert load_checkpoint(tmp_path, (first.params, first.opt_state)).epoch == 2


def test_missing_checkpoint_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path, _state())


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_corrupt_checkpoint_gives_a_one_line_error(tmp_path, how):
    ckpt = _checkpoint()
    path = save_checkpoint(tmp_path, ckpt)
    data = Path(path).read_bytes()
    Path(path).write_bytes(b"\x00garbage" if how == "garbage" else data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        load_checkpoint(tmp_path, (ckpt.params, ckpt.opt_state))
    assert "\n" not in str(info.value)


def test_fingerprint_mismatch_names_the_differing_option(tmp_path):
    ckpt = _checkpoint()
    save_checkpoint(tmp_path, ckpt)
    with pytest.raises(CheckpointError, match=r"lr: checkpoint 0\.01, now 0\.1"):
        load_checkpoint(tmp_path, (ckpt.params, ckpt.opt_state), {**FINGERPRINT, "lr": 0.1})


def test_other_optimizer_or_network_is_a_structure_mismatch(tmp_path):
    save_checkpoint(tmp_path, _checkpoint())
    with pytest.raises(CheckpointError, match="structure"):
        load_checkpoint(tmp_path, _state(optimizer=optax.sgd(0.1, momentum=0.9)))
    with pytest.raises(
        CheckpointError, match=r"`params/W1` is float32\[4, 3\], expected float32\[6, 3\]"
    ):
        load_checkpoint(tmp_path, _state(dims=(3, 6, 1)))


def test_checkpoint_path_is_inside_the_directory(tmp_path):
    assert checkpoint_path(tmp_path) == os.path.join(str(tmp_path), "checkpoint.npz")


def test_params_are_stored_under_their_names_and_load_without_a_template(tmp_path):
    ckpt = _checkpoint()
    path = save_checkpoint(tmp_path, ckpt)
    with np.load(path) as f:
        assert {n for n in f.files if n.startswith("params/")} == {
            f"params/{k}" for k in ckpt.params
        }
        assert "opt_state[0].mu['W1']" in f.files  # adam's first moment of W1, by its path
    params = load_params(tmp_path)
    assert list(params) == list(ckpt.params)
    for k, v in ckpt.params.items():
        assert params[k].dtype == v.dtype
        np.testing.assert_array_equal(params[k], v)


def test_a_checkpoint_of_another_format_says_which_version_to_use(tmp_path):
    path = save_checkpoint(tmp_path, _checkpoint())
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    arrays["meta"] = np.array(json.dumps({**meta, "format": 1}))
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="has format 1, this manualgrad reads format 2"):
        load_params(tmp_path)
