"""Training: one compiled loop, its steps and callbacks, checkpoints and the training figure.

| module        | holds                                                               |
|---------------|---------------------------------------------------------------------|
| (this)        | `train`, the steps (`minibatch_step`, `private_step`,               |
|               | `data_parallel_step`), the callbacks (`Checkpointer`,               |
|               | `StopOnSignal`, `Accountant`), `TrainResult`, `Progress`, `accuracy` |
| `checkpoint`  | atomic `.npz` checkpoints with a run fingerprint                    |
| `plot`        | the training figure (matplotlib, an optional extra)                 |
"""

from manualgrad.training import checkpoint
from manualgrad.training._callbacks import (
    Accountant,
    Callback,
    Checkpointer,
    Progress,
    Run,
    StopOnSignal,
    TrainingInterrupted,
    TrainResult,
    run_fingerprint,
)
from manualgrad.training._loop import (
    Step,
    accuracy,
    data_parallel_step,
    epoch_batches,
    minibatch_step,
    private_step,
    steps_per_epoch,
    train,
)

__all__ = [
    "Accountant",
    "Callback",
    "Checkpointer",
    "Progress",
    "Run",
    "Step",
    "StopOnSignal",
    "TrainResult",
    "TrainingInterrupted",
    "accuracy",
    "checkpoint",
    "data_parallel_step",
    "epoch_batches",
    "minibatch_step",
    "private_step",
    "run_fingerprint",
    "steps_per_epoch",
    "train",
]
