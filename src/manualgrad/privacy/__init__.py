"""DP-SGD: Poisson sampling, the private gradient, the accountant (train with `mg.train(dp=...)`).

See :mod:`manualgrad.privacy._dpsgd` for the derivations; every name is re-exported here.
"""

from manualgrad.privacy._dpsgd import (
    ACCOUNTANTS,
    RNG_IMPLS,
    DPConfig,
    DPPlan,
    PoissonBatch,
    add_noise,
    batch_capacity,
    check_delta_for_dataset,
    dpsgd_event,
    epsilon,
    examples_first,
    gather_batch,
    key_for_noise,
    masked_dp_grads,
    masked_dp_value_and_grad,
    masked_products,
    noise_multiplier,
    overflow_probability,
    plan,
    poisson_batch,
)

__all__ = [
    "ACCOUNTANTS",
    "RNG_IMPLS",
    "DPConfig",
    "DPPlan",
    "PoissonBatch",
    "add_noise",
    "batch_capacity",
    "check_delta_for_dataset",
    "dpsgd_event",
    "epsilon",
    "examples_first",
    "gather_batch",
    "key_for_noise",
    "masked_dp_grads",
    "masked_dp_value_and_grad",
    "masked_products",
    "noise_multiplier",
    "overflow_probability",
    "plan",
    "poisson_batch",
]
