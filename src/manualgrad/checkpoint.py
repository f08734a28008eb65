r"""Atomic checkpoints of a training run: params, optimizer state, epoch, step, key, history.

A checkpoint is one file, ``DIR/checkpoint.npz``: the leaves of the pytree
``(params, opt_state)`` as numpy arrays ``leaf_0 … leaf_n`` (via `jax.tree.flatten`),
the key's raw data (`jax.random.key_data`), the per-epoch cost history, and a JSON
string ``meta`` holding the format version, epoch, step, the tree structure and a
*fingerprint*: the configuration that must match for a resume to be exact (layers,
activations, loss, optimizer, batch size, dtype, data, …).

Saving is atomic: the file is written to a temporary file in the same directory,
flushed and fsync'ed, then renamed over the old one with `os.replace` (and the
directory fsync'ed). A process killed at any moment leaves either the previous
checkpoint or the new one, never a torn file.

Loading checks everything it can — that the file parses, the format version, the
fingerprint, the tree structure, and every leaf's shape and dtype against a template
— and raises :class:`manualgrad.CheckpointError` with one line saying what is wrong.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from manualgrad._errors import CheckpointError

__all__ = ["CHECKPOINT_FILE", "Checkpoint", "checkpoint_path", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FILE = "checkpoint.npz"
FORMAT_VERSION = 1


class Checkpoint(NamedTuple):
    """A training run's state at an epoch boundary.

    params, opt_state: pytrees of arrays; epoch: epochs completed; step: optimizer
    steps taken; key: the run's `jax.random.key`; history: (epoch,) per-epoch costs;
    fingerprint: JSON-able dict describing the run's configuration.
    """

    params: Any
    opt_state: Any
    epoch: int
    step: int
    key: jax.Array
    history: np.ndarray
    fingerprint: Mapping[str, Any]


def checkpoint_path(directory: str | os.PathLike) -> str:
    """The checkpoint file inside `directory`."""
    return os.path.join(os.fspath(directory), CHECKPOINT_FILE)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(directory: str | os.PathLike, ckpt: Checkpoint) -> str:
    """Write `ckpt` atomically to ``directory/checkpoint.npz`` (creating `directory`); return it."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    leaves, treedef = jax.tree.flatten((ckpt.params, ckpt.opt_state))
    meta = {
        "format": FORMAT_VERSION,
        "epoch": int(ckpt.epoch),
        "step": int(ckpt.step),
        "treedef": str(treedef),
        "n_leaves": len(leaves),
        "fingerprint": dict(ckpt.fingerprint),
    }
    arrays = {f"leaf_{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    arrays["key_data"] = np.asarray(jax.random.key_data(ckpt.key))
    arrays["history"] = np.asarray(ckpt.history)
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, checkpoint_path(directory))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)
    return checkpoint_path(directory)


def _fingerprint_diff(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(saved) | set(wanted))
    return [
        f"{k}: checkpoint {saved.get(k)!r}, now {wanted.get(k)!r}"
        for k in keys
        if saved.get(k) != wanted.get(k)
    ]


def load_checkpoint(
    directory: str | os.PathLike,
    template: tuple[Any, Any],
    fingerprint: Mapping[str, Any] | None = None,
) -> Checkpoint:
    """Read ``directory/checkpoint.npz`` into the structure of `template` = (params, opt_state).

    Raises FileNotFoundError if there is no checkpoint, and CheckpointError (one line)
    if it is corrupt, of another format, or written for a run whose fingerprint,
    tree structure, shapes or dtypes differ from `fingerprint` and `template`.
    """
    path = checkpoint_path(directory)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "no checkpoint", path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files}
        meta = json.loads(str(arrays.pop("meta")))
        key_data = arrays.pop("key_data")
        history = arrays.pop("history")
    except Exception as err:  # BadZipFile, EOFError, KeyError, JSONDecodeError, ...
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: {err}); "
            "delete it or start without --resume"
        ) from None
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {meta.get('format')!r}, expected {FORMAT_VERSION}"
        )
    if fingerprint is not None:
        diff = _fingerprint_diff(meta.get("fingerprint", {}), dict(fingerprint))
        if diff:
            raise CheckpointError(
                f"checkpoint {path} was written for a different run ({'; '.join(diff)}); "
                "use the same options, or another --checkpoint directory"
            )
    leaves, treedef = jax.tree.flatten(template)
    if meta.get("treedef") != str(treedef) or meta.get("n_leaves") != len(leaves):
        raise CheckpointError(
            f"checkpoint {path} holds a different params/optimizer-state structure "
            f"({meta.get('n_leaves')} leaves, expected {len(leaves)}): was it written with "
            "another network or optimizer?"
        )
    restored = []
    for i, want in enumerate(leaves):
        got = arrays.get(f"leaf_{i}")
        if got is None or got.shape != np.shape(want) or got.dtype != np.asarray(want).dtype:
            what = "missing" if got is None else f"{got.dtype}{list(got.shape)}"
            raise CheckpointError(
                f"checkpoint {path}: leaf {i} is {what}, expected "
                f"{np.asarray(want).dtype}{list(np.shape(want))} (different network or dtype?)"
            )
        restored.append(jnp.asarray(got))
    params, opt_state = jax.tree.unflatten(treedef, restored)
    try:
        key = jax.random.wrap_key_data(jnp.asarray(key_data))
    except Exception as err:
        raise CheckpointError(f"checkpoint {path}: bad key data ({err})") from None
    return Checkpoint(
        params,
        opt_state,
        int(meta["epoch"]),
        int(meta["step"]),
        key,
        history,
        meta.get("fingerprint", {}),
    )
