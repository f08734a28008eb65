"""DP-SGD: Poisson sampling, the private gradient, the accountant, private training.

See :mod:`manualgrad.privacy._dpsgd` for the derivations; every name is re-exported here.
"""

from manualgrad.privacy._dpsgd import (
    ACCOUNTANTS,
    DPConfig,
    DPPlan,
    PoissonBatch,
    PrivateProgress,
    PrivateTrainResult,
    batch_capacity,
    check_delta_for_dataset,
    dpsgd_event,
    epsilon,
    masked_dp_grads,
    noise_multiplier,
    overflow_probability,
    plan,
    poisson_batch,
    train_private,
)

__all__ = [
    "ACCOUNTANTS",
    "DPConfig",
    "DPPlan",
    "PoissonBatch",
    "PrivateProgress",
    "PrivateTrainResult",
    "batch_capacity",
    "check_delta_for_dataset",
    "dpsgd_event",
    "epsilon",
    "masked_dp_grads",
    "noise_multiplier",
    "overflow_probability",
    "plan",
    "poisson_batch",
    "train_private",
]
