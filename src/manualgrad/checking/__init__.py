"""Checking gradients: against autodiff and finite differences, and a student's own backward.

| module           | holds                                                             |
|------------------|-------------------------------------------------------------------|
| `gradcheck`      | the course's metric, per-coordinate central differences, a report |
| `backward`       | check *your* backward pass against jax.grad, with a diagnosis     |
| `layer_backward` | the course's conv, pool, RNN and LSTM backward, against jax.vjp   |
| `value_checks`   | opt-in `checkify` checks of values (NaN, label ranges)            |

The pytest fixture `assert_backward_matches` is :mod:`manualgrad.pytest_plugin`'s.
"""

from manualgrad.checking import backward, gradcheck, layer_backward, value_checks
from manualgrad.checking.backward import assert_backward_matches, check_backward
from manualgrad.checking.gradcheck import GradCheckReport, compare_with_autodiff
from manualgrad.checking.layer_backward import check_layer_backward

__all__ = [
    "GradCheckReport",
    "assert_backward_matches",
    "backward",
    "check_backward",
    "check_layer_backward",
    "compare_with_autodiff",
    "gradcheck",
    "layer_backward",
    "value_checks",
]
