"""manualgrad: hand-derived backward propagation for dense networks, in jax.numpy.

The formulas (examples are columns, m examples, per-example loss L):

    (1) dW[l] = dz[l] a[l-1]ᵀ                          one example
    (2) dW[l] = (1/m) dZ[l] A[l-1]ᵀ, db[l] = (1/m) Σ_i dZ[l](i)
    (3) dZ[l] = W[l+1]ᵀ dZ[l+1] ⊙ g[l]'(Z[l])
    (4) dA[l-1] = W[l]ᵀ dZ[l]
    (5) dZ[l] = dA[l] ⊙ g[l]'(Z[l])

The top level holds the core: :func:`network` (bind the options once, get jit-ready
functions), the functional primitives it binds, per-example gradients and clipping,
and training. Everything else lives in sub-namespaces: `mg.per_example`,
`mg.parallel`, `mg.privacy`, `mg.curvature`, `mg.course`, `mg.gradcheck`, `mg.datasets`,
`mg.bridge`, `mg.errors`, and the building blocks `mg.dense`, `mg.activations`, `mg.losses`.
"""

from manualgrad import activations as activations
from manualgrad import bridge as bridge
from manualgrad import checkpoint as checkpoint
from manualgrad import course as course
from manualgrad import curvature as curvature
from manualgrad import datasets as datasets
from manualgrad import dense as dense
from manualgrad import errors as errors
from manualgrad import functional as functional
from manualgrad import gradcheck as gradcheck
from manualgrad import losses as losses
from manualgrad import parallel as parallel
from manualgrad import per_example as per_example
from manualgrad import precision as precision
from manualgrad import privacy as privacy
from manualgrad import regularization as regularization
from manualgrad import value_checks as value_checks
from manualgrad._errors import ManualgradError
from manualgrad._network import Network, network
from manualgrad.functional import backward, cost, forward, init_params, predict, value_and_grad
from manualgrad.per_example import clipped_grads, dp_grads, per_example_grads, per_example_norms
from manualgrad.train import TrainResult, accuracy, train

__version__ = "0.2.0"  # the one source of the version (pyproject reads it)

__all__ = [
    "ManualgradError",
    "Network",
    "TrainResult",
    "__version__",
    "accuracy",
    "backward",
    "clipped_grads",
    "cost",
    "dp_grads",
    "forward",
    "init_params",
    "network",
    "per_example_grads",
    "per_example_norms",
    "predict",
    "train",
    "value_and_grad",
]
