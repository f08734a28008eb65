r"""What runs between the loop's compiled calls: checkpoints, signals, the accountant.

A callback is a :class:`Callback` (override the hooks you need) or a plain function
`f(progress) -> stop?`, which is its `after` hook. The loop calls, in this order:

| hook           | when                                          | e.g.                       |
|----------------|-----------------------------------------------|----------------------------|
| `start(run)`   | before the first chunk; returns the run       | resume, cap the chunk size |
| `metrics(p)`   | after each chunk; a dict added to p.metrics   | ε spent                    |
| `after(p)`     | after each chunk; True stops the run          | save every N steps, signal |
| `end(result)`  | at the end (all of them, even if one raises)  | save; raise on a signal    |
| `close()`      | always, last                                  | restore signal handlers    |

Callbacks are called in the order given; the accountant that `train(..., dp=...)`
adds comes first, so every other callback sees ε.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import numpy as np

from manualgrad._errors import ConfigError
from manualgrad.training.checkpoint import (
    Checkpoint,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)

if TYPE_CHECKING:
    from manualgrad._network import Network
    from manualgrad.privacy import DPPlan
    from manualgrad.training._loop import Step

Array = jax.Array

__all__ = [
    "Accountant",
    "Callback",
    "Checkpointer",
    "Progress",
    "Run",
    "StopOnSignal",
    "TrainResult",
    "TrainingInterrupted",
    "run_fingerprint",
]


class Run(NamedTuple):
    """A run as the loop starts it: what `Callback.start` may read and replace.

    `units`: the units to train up to (epochs, or DP-SGD steps); `start`: the unit it
    begins at; `per_call`: units per compiled call; `history`: the costs of the units
    before `start` (a resumed run's).
    """

    net: Network
    params: Mapping[str, Array]
    opt_state: Any
    X: Array
    Y: Array
    key: Array
    step: Step
    epochs: int
    units: int
    start: int
    per_call: int
    history: np.ndarray


class Progress(NamedTuple):
    """What the callbacks get after each compiled call.

    epoch: epochs completed (⌊step · q⌋ for DP-SGD); epochs: the total asked for;
    step: optimizer steps taken; cost: the last unit's cost; history: every unit's
    cost so far (one per epoch, or per DP-SGD step); metrics: what callbacks added
    (the accountant's "epsilon"); run: the :class:`Run`.
    """

    epoch: int
    epochs: int
    step: int
    cost: float
    params: Mapping[str, Array]
    opt_state: Any
    history: np.ndarray
    metrics: dict[str, Any]
    run: Run


class TrainResult(NamedTuple):
    """What `train` returns.

    params, opt_state: after the last step; history: the cost of every unit from epoch
    0 when resumed from a checkpoint (which keeps the earlier costs), else from
    `start_epoch`; epoch: epochs completed (fewer than asked if a callback stopped the
    run); start_epoch: where this call began; step: optimizer steps taken (start_step
    of them before this call); metrics:
    the callbacks' metrics at the end (with DP, "epsilon": the ε spent).
    """

    params: Mapping[str, Array]
    opt_state: Any
    history: np.ndarray
    epoch: int
    start_epoch: int
    step: int
    start_step: int
    metrics: Mapping[str, Any]


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by `train` (its :class:`StopOnSignal`) after SIGINT or SIGTERM.

    `signal`: "SIGINT" or "SIGTERM"; `result`: the :class:`TrainResult` where it stopped,
    which a :class:`Checkpointer` has saved by then. A KeyboardInterrupt, so a script
    that does not catch it stops as it would on Ctrl-C.
    """

    def __init__(self, signal_name: str, result: TrainResult):
        super().__init__(
            f"training stopped by {signal_name} at epoch {result.epoch} (step {result.step}); "
            "a Checkpointer has saved it, resume with its `resume=True`"
        )
        self.signal = signal_name
        self.result = result


class Callback:
    """The hooks of the loop, each a no-op here: override the ones you need."""

    def start(self, run: Run) -> Run:
        return run

    def metrics(self, progress: Progress) -> Mapping[str, Any]:
        return {}

    def after(self, progress: Progress) -> bool | None:
        return None

    def end(self, result: TrainResult) -> None:
        return None

    def close(self) -> None:
        return None


class _Function(Callback):
    def __init__(self, fn: Callable[[Progress], Any]):
        self.fn = fn

    def after(self, progress: Progress) -> bool | None:
        return self.fn(progress)


def as_callback(callback: Any) -> Callback:
    """A :class:`Callback` as it is, a plain function as its `after` hook."""
    if isinstance(callback, Callback):
        return callback
    if callable(callback):
        return _Function(callback)
    raise ConfigError(
        f"expected each of `callbacks` to be a Callback or a function of a Progress, got "
        f"{type(callback).__name__}"
    )


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


def _digest(*arrays: Any) -> str:
    """A short hash of arrays' dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def run_fingerprint(run: Run, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What must match for a resumed run to continue exactly: the JSON dict a checkpoint keeps.

    The network (its layers, loss and options), the step's facts (batch size, privacy
    plan), the params' shapes and dtype, and short hashes of the data, of the initial
    params and of the key; `extra` adds facts `train` cannot see (e.g. the learning rate).
    """
    net, params = run.net, run.params
    fingerprint = {
        **(extra or {}),
        **dict(run.step.facts),
        "layers": [repr(layer) for layer in net.layers],
        "shapes": {k: list(np.shape(v)) for k, v in params.items()},
        "loss": net.loss,
        "l2": float(net.l2),
        "keep_prob": float(net.keep_prob),
        "precision": net.precision,
        "dtype": str(np.asarray(next(iter(params.values()))).dtype),
        "data": _digest(run.X, run.Y),
        "initial_params": _digest(*(params[k] for k in sorted(params))),
        "key": _digest(jax.random.key_data(run.key)),
    }
    return json.loads(json.dumps(fingerprint))  # as it reads back from a checkpoint


class Checkpointer(Callback):
    """Save the run atomically in `directory` every `every` optimizer steps and at the end.

    `every` is rounded up to whole units (epochs; DP-SGD steps), and the loop's calls
    are cut so that a save falls on it. `resume=True` continues from the checkpoint in
    `directory` if there is one: the same `train` call then ends with exactly the params
    of an uninterrupted run. A checkpoint of another run (other data, network, options,
    initial params, key or `fingerprint`, a JSON dict of facts `train` cannot see such
    as the learning rate) raises :class:`manualgrad.CheckpointError` naming what differs.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        every: int | None = None,
        *,
        resume: bool = False,
        fingerprint: Mapping[str, Any] | None = None,
    ):
        if not isinstance(directory, str | os.PathLike):
            raise ConfigError(f"`directory` must be a path, got {type(directory).__name__}")
        if every is not None and (
            isinstance(every, bool) or not isinstance(every, int) or every < 1
        ):
            raise ConfigError(
                f"`every` must be a positive int or None (optimizer steps), got {every!r}"
            )
        if fingerprint is not None:
            try:
                json.dumps(dict(fingerprint))
            except (TypeError, ValueError):
                raise ConfigError(
                    "`fingerprint` must be a dict of JSON values (str, numbers, lists, None), "
                    f"got {fingerprint!r}"
                ) from None
        self.directory = os.fspath(directory)
        self.every, self.resume, self.extra = every, resume, fingerprint

    def start(self, run: Run) -> Run:
        self._run = run
        self._fingerprint = run_fingerprint(run, self.extra)
        self._per_unit = run.step.optimizer_steps(run.X.shape[-1])
        self._every = None if self.every is None else math.ceil(self.every / self._per_unit)
        if self.resume and os.path.exists(checkpoint_path(self.directory)):
            if run.start:
                raise ConfigError(
                    "`Checkpointer(resume=True)` takes the epoch and the optimizer state from "
                    "the checkpoint: do not pass `start_epoch` with it"
                )
            ckpt = load_checkpoint(self.directory, (run.params, run.opt_state), self._fingerprint)
            start = ckpt.step // self._per_unit
            if start > run.units:
                raise ConfigError(
                    f"the checkpoint in {self.directory} is at epoch {ckpt.epoch}, past `epochs` "
                    f"= {run.epochs}: ask for at least {ckpt.epoch} epochs"
                )
            run = run._replace(
                params=dict(ckpt.params),
                opt_state=ckpt.opt_state,
                start=start,
                history=np.asarray(ckpt.history),
            )
        self._last = run.start
        if self._every is not None:
            run = run._replace(per_call=min(run.per_call, self._every))
        return run

    def _save(self, params, opt_state, epoch: int, step: int, history: np.ndarray) -> None:
        ckpt = Checkpoint(params, opt_state, epoch, step, self._run.key, history, self._fingerprint)
        save_checkpoint(self.directory, ckpt)

    def after(self, progress: Progress) -> None:
        units = progress.step // self._per_unit
        if (
            self._every is not None
            and units - self._last >= self._every
            and units < self._run.units
        ):
            self._save(
                progress.params, progress.opt_state, progress.epoch, progress.step, progress.history
            )
            self._last = units

    def end(self, result: TrainResult) -> None:
        self._save(result.params, result.opt_state, result.epoch, result.step, result.history)


# --------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------


class StopOnSignal(Callback):
    """Turn the first SIGINT or SIGTERM into a stop after the current compiled call.

    The run then ends normally (a :class:`Checkpointer` saves it) and `train` raises
    :class:`TrainingInterrupted`. A second signal acts as it would without us
    (KeyboardInterrupt, or termination). Signal handlers can only be set from the main
    thread; elsewhere this callback does nothing.
    """

    def __init__(self) -> None:
        self.received: list[str] = []
        self._previous: dict[Any, Any] = {}

    def start(self, run: Run) -> Run:
        self.received = []
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
            for s in self._previous:
                signal.signal(s, self._on_signal)
        return run

    def _on_signal(self, signum, frame) -> None:
        self.received.append(signal.Signals(signum).name)
        self.close()

    def after(self, progress: Progress) -> bool:
        return bool(self.received)

    def end(self, result: TrainResult) -> None:
        if self.received:
            raise TrainingInterrupted(self.received[0], result)

    def close(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        self._previous = {}


# --------------------------------------------------------------------------------------
# The privacy accountant
# --------------------------------------------------------------------------------------


class Accountant(Callback):
    """Add the ε spent so far to the metrics ("epsilon"), for a :func:`private_step` run.

    ε after t steps is a function of (σ, q, t, δ) alone (:func:`manualgrad.privacy.epsilon`),
    so a resumed run reports the same ε as an uninterrupted one. A run longer than the
    plan's T steps is refused: it would spend more than the planned ε.
    """

    def __init__(self, plan: DPPlan):
        self.plan = plan

    def start(self, run: Run) -> Run:
        if run.units > self.plan.steps:
            raise ConfigError(
                f"the run has {run.units} steps, past the {self.plan.steps} steps the privacy "
                "budget was planned for: training further would spend more than the planned ε"
            )
        return run

    def metrics(self, progress: Progress) -> Mapping[str, Any]:
        from manualgrad import privacy

        t = progress.step
        if t == self.plan.steps:
            return {"epsilon": self.plan.epsilon}
        plan = self.plan
        eps = privacy.epsilon(
            noise_multiplier=plan.noise_multiplier,
            sampling_rate=plan.sampling_rate,
            steps=t,
            delta=plan.delta,
            accountant=plan.accountant,
        )
        return {"epsilon": eps}
