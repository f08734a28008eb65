"""manualgrad: hand-derived backward propagation for dense networks, in jax.numpy.

The formulas (examples are columns, m examples, per-example loss L):

    (1) dW[l] = dz[l] a[l-1]ᵀ                          one example
    (2) dW[l] = (1/m) dZ[l] A[l-1]ᵀ, db[l] = (1/m) Σ_i dZ[l](i)
    (3) dZ[l] = W[l+1]ᵀ dZ[l+1] ⊙ g[l]'(Z[l])
    (4) dA[l-1] = W[l]ᵀ dZ[l]
    (5) dZ[l] = dA[l] ⊙ g[l]'(Z[l])
"""

from manualgrad._errors import ConfigError, DTypeError, ManualgradError, ShapeError
from manualgrad.activations import ACTIVATIONS
from manualgrad.bridge import cost_fn  # issue 5: custom_vjp bridge
from manualgrad.losses import LOSSES
from manualgrad.network import (
    INIT_METHODS,
    STATIC_ARGNAMES,
    LayerCache,
    backward,
    cost,
    forward,
    init_params,
    predict,
    value_and_grad,
)
from manualgrad.precision import PRECISIONS

# isort: split
# course-compatible API, gradient checking, data sets (issue 2, parts 6-8)
from manualgrad import course
from manualgrad.datasets import flower
from manualgrad.gradcheck import compare_with_autodiff, finite_difference_grads, relative_difference

# isort: split
# per-example gradients, exact per-example norms, DP clipping (issue 3)
from manualgrad.per_example import (
    clip_factors,
    clipped_grads,
    dp_grads,
    example_grads,
    per_example_grads,
    per_example_norms,
)

# isort: split
# training with optax, data errors, checkpoints (issue 4)
from manualgrad._errors import CheckpointError, DataError
from manualgrad.train import Progress, TrainResult, accuracy, train

# isort: split
# Opt-in value checks (issue 7): NaN/Inf and label ranges, via jax.experimental.checkify.
from manualgrad.value_checks import check_values, checked_value_and_grad

# isort: split
# data parallelism: sharded batches, all-reduced sums of (2), multi-host (issue 6)
from manualgrad.parallel import (
    batch_sharding,
    data_mesh,
    data_parallel_clipped_grads,
    data_parallel_fn,
    data_parallel_per_example_norms,
    data_parallel_step,
    data_parallel_value_and_grad,
    replicate,
    replicated,
    shard_batch,
    shard_batch_from_local,
    shard_map_clipped_grads,
    shard_map_value_and_grad,
)

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "INIT_METHODS",
    "LOSSES",
    "PRECISIONS",
    "STATIC_ARGNAMES",
    "ConfigError",
    "DTypeError",
    "LayerCache",
    "ManualgradError",
    "ShapeError",
    "__version__",
    "backward",
    "check_values",
    "checked_value_and_grad",
    "cost",
    "cost_fn",  # issue 5
    "forward",
    "init_params",
    "predict",
    "value_and_grad",
]

# course-compatible API, gradient checking, data sets (issue 2, parts 6-8)
__all__ += [
    "compare_with_autodiff",
    "course",
    "finite_difference_grads",
    "flower",
    "relative_difference",
]

# per-example gradients, exact per-example norms, DP clipping (issue 3)
__all__ += [
    "clip_factors",
    "clipped_grads",
    "dp_grads",
    "example_grads",
    "per_example_grads",
    "per_example_norms",
]

# training (issue 4)
__all__ += ["CheckpointError", "DataError", "Progress", "TrainResult", "accuracy", "train"]

# data parallelism: sharded batches, all-reduced sums of (2), multi-host (issue 6)
__all__ += [
    "batch_sharding",
    "data_mesh",
    "data_parallel_clipped_grads",
    "data_parallel_fn",
    "data_parallel_per_example_norms",
    "data_parallel_step",
    "data_parallel_value_and_grad",
    "replicate",
    "replicated",
    "shard_batch",
    "shard_batch_from_local",
    "shard_map_clipped_grads",
    "shard_map_value_and_grad",
]
