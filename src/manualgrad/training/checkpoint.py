r"""Atomic checkpoints of a training run: params, optimizer state, epoch, step, key, history.

A checkpoint is one file, ``DIR/checkpoint.npz``, whose arrays are named for what
they hold, so it can be read with nothing but numpy:

| array                      | contents                                                  |
|----------------------------|-----------------------------------------------------------|
| ``params/W1`` … ``params/bL`` | the params, one array per name                         |
| ``opt_state[0].mu['W1']`` … | the optimizer state's leaves, named by their path         |
|                            | (`jax.tree_util.keystr`)                                  |
| ``key_data``               | the run's key (`jax.random.key_data`)                     |
| ``history``                | (epoch,) the cost of every epoch so far                   |
| ``meta``                   | JSON: format version, epoch, step, tree structure and a   |
|                            | *fingerprint* of the run (see :func:`manualgrad.training._loop`)   |

:func:`load_params` reads the params back without any template;
:func:`load_checkpoint` restores the whole state into the structure of a template
(params, opt_state), which is how :func:`manualgrad.training._loop` resumes a run.

Saving is atomic: the file is written to a temporary file in the same directory,
flushed and fsync'ed, then renamed over the old one with `os.replace` (and the
directory fsync'ed). A process killed at any moment leaves either the previous
checkpoint or the new one, never a torn file.

Loading checks everything it can — that the file parses, the format version, the
fingerprint, the tree structure, and every array's name, shape and dtype against the
template — and raises :class:`manualgrad.CheckpointError` with one line saying what
is wrong.
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

__all__ = [
    "CHECKPOINT_FILE",
    "Checkpoint",
    "checkpoint_path",
    "load_checkpoint",
    "load_params",
    "save_checkpoint",
]

CHECKPOINT_FILE = "checkpoint.npz"
FORMAT_VERSION = 2
_PARAMS = "params/"
_OPT_STATE = "opt_state"


class Checkpoint(NamedTuple):
    """A training run's state at an epoch boundary.

    params: dict name -> array ("W1", "b1", …); opt_state: the optimizer state (a
    pytree of arrays); epoch: epochs completed; step: optimizer steps taken; key: the
    run's `jax.random.key`; history: (epoch,) per-epoch costs; fingerprint: JSON-able
    dict describing the run's configuration.
    """

    params: Mapping[str, Any]
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


def _opt_state_arrays(opt_state: Any) -> dict[str, Any]:
    """The optimizer state's leaves, keyed "opt_state" + their path, in flattening order."""
    leaves = jax.tree_util.tree_flatten_with_path(opt_state)[0]
    return {_OPT_STATE + jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def save_checkpoint(directory: str | os.PathLike, ckpt: Checkpoint) -> str:
    """Write `ckpt` atomically to ``directory/checkpoint.npz`` (creating `directory`); return it."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    meta = {
        "format": FORMAT_VERSION,
        "epoch": int(ckpt.epoch),
        "step": int(ckpt.step),
        "params": list(ckpt.params),
        "treedef": str(jax.tree.structure((dict(ckpt.params), ckpt.opt_state))),
        "fingerprint": dict(ckpt.fingerprint),
    }
    arrays: dict[str, Any] = {_PARAMS + name: np.asarray(v) for name, v in ckpt.params.items()}
    arrays.update({k: np.asarray(v) for k, v in _opt_state_arrays(ckpt.opt_state).items()})
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


def _read(directory: str | os.PathLike) -> tuple[str, dict[str, np.ndarray], dict[str, Any]]:
    """(path, arrays, meta) of the checkpoint in `directory`, its format checked."""
    path = checkpoint_path(directory)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "no checkpoint", path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files}
        meta = json.loads(str(arrays.pop("meta")))
    except Exception as err:  # BadZipFile, EOFError, KeyError, JSONDecodeError, ...
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: {err}); "
            "delete it or start without resuming"
        ) from None
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {meta.get('format')!r}, this manualgrad reads format "
            f"{FORMAT_VERSION}: finish that run with the manualgrad version that wrote it, or "
            "start a new one in another directory"
        )
    return path, arrays, meta


def _fingerprint_diff(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(saved) | set(wanted))
    return [
        f"{k}: checkpoint {saved.get(k)!r}, now {wanted.get(k)!r}"
        for k in keys
        if saved.get(k) != wanted.get(k)
    ]


def _restore(path: str, arrays: Mapping[str, np.ndarray], name: str, want: Any) -> jax.Array:
    got = arrays.get(name)
    if got is None or got.shape != np.shape(want) or got.dtype != np.asarray(want).dtype:
        what = "missing" if got is None else f"{got.dtype}{list(got.shape)}"
        raise CheckpointError(
            f"checkpoint {path}: `{name}` is {what}, expected "
            f"{np.asarray(want).dtype}{list(np.shape(want))} (different network or dtype?)"
        )
    return jnp.asarray(got)


def load_params(directory: str | os.PathLike) -> dict[str, jax.Array]:
    """The params saved in ``directory/checkpoint.npz``, as a dict "W1", "b1", … -> array.

    Needs no template: the params are stored under their names (float64 params come
    back as float64 only with `jax_enable_x64` on). Raises
    FileNotFoundError if there is no checkpoint and CheckpointError if it is corrupt
    or of another format.
    """
    path, arrays, meta = _read(directory)
    names = meta.get("params")
    if not isinstance(names, list) or not names:
        raise CheckpointError(f"checkpoint {path} lists no params in its metadata (corrupt?)")
    missing = [name for name in names if _PARAMS + name not in arrays]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the params {missing} (corrupt?)")
    return {name: jnp.asarray(arrays[_PARAMS + name]) for name in names}


def load_checkpoint(
    directory: str | os.PathLike,
    template: tuple[Mapping[str, Any], Any],
    fingerprint: Mapping[str, Any] | None = None,
) -> Checkpoint:
    """Read ``directory/checkpoint.npz`` into the structure of `template` = (params, opt_state).

    Raises FileNotFoundError if there is no checkpoint, and CheckpointError (one line)
    if it is corrupt, of another format, or written for a run whose fingerprint,
    tree structure, shapes or dtypes differ from `fingerprint` and `template`.
    """
    path, arrays, meta = _read(directory)
    if fingerprint is not None:
        diff = _fingerprint_diff(meta.get("fingerprint", {}), dict(fingerprint))
        if diff:
            raise CheckpointError(
                f"checkpoint {path} was written for a different run ({'; '.join(diff)}); "
                "use the same options, or another checkpoint directory"
            )
    template_params, template_state = template
    if meta.get("treedef") != str(jax.tree.structure((dict(template_params), template_state))):
        saved = sorted(k for k in arrays if k.startswith(_OPT_STATE))
        wanted = sorted(_opt_state_arrays(template_state))
        raise CheckpointError(
            f"checkpoint {path} holds a different params/optimizer-state structure "
            f"(params {meta.get('params')}, {len(saved)} optimizer-state arrays; expected "
            f"params {list(template_params)}, {len(wanted)} optimizer-state arrays): was it "
            "written with another network or optimizer?"
        )
    params = {
        name: _restore(path, arrays, _PARAMS + name, want) for name, want in template_params.items()
    }
    leaves = [
        _restore(path, arrays, name, want)
        for name, want in _opt_state_arrays(template_state).items()
    ]
    opt_state = jax.tree.unflatten(jax.tree.structure(template_state), leaves)
    try:
        key = jax.random.wrap_key_data(jnp.asarray(arrays["key_data"]))
        history = arrays["history"]
    except Exception as err:
        raise CheckpointError(f"checkpoint {path}: bad key data or history ({err})") from None
    return Checkpoint(
        params,
        opt_state,
        int(meta["epoch"]),
        int(meta["step"]),
        key,
        history,
        meta.get("fingerprint", {}),
    )
