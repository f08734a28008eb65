"""Training: the compiled loop, checkpoints and the training figure.

| module       | holds                                                            |
|--------------|------------------------------------------------------------------|
| (this)       | `train`, `TrainResult`, `Progress`, `accuracy`, the minibatching |
| `checkpoint` | atomic `.npz` checkpoints with a run fingerprint                 |
| `plot`       | the training figure (matplotlib, an optional extra)              |
"""

from manualgrad.training import checkpoint
from manualgrad.training._loop import (
    Progress,
    TrainingInterrupted,
    TrainResult,
    accuracy,
    epoch_batches,
    steps_per_epoch,
    train,
)

__all__ = [
    "Progress",
    "TrainResult",
    "TrainingInterrupted",
    "accuracy",
    "checkpoint",
    "epoch_batches",
    "steps_per_epoch",
    "train",
]
