"""manualgrad: hand-derived backward propagation in jax.numpy, layer by layer.

The formulas (examples are columns, m examples, per-example loss L):

    (1) dW[l] = dz[l] a[l-1]ᵀ                          one example
    (2) dW[l] = (1/m) dZ[l] A[l-1]ᵀ, db[l] = (1/m) Σ_i dZ[l](i)
    (3) dZ[l] = W[l+1]ᵀ dZ[l+1] ⊙ g[l]'(Z[l])
    (4) dA[l-1] = W[l]ᵀ dZ[l]
    (5) dZ[l] = dA[l] ⊙ g[l]'(Z[l])

The top level holds the core: :func:`network` (a sequence of layers and a loss, bound
once, with jit-ready functions), `mg.layers`, the functional shims it binds, per-example
gradients and clipping, and training. Everything else lives in sub-namespaces:

| namespace        | what it holds                                                   |
|------------------|-----------------------------------------------------------------|
| `mg.layers`      | the layer kinds (`Dense`, …) and the `Layer` protocol          |
| `mg.per_example` | per-example gradients, norms, clipping, DP noise                 |
| `mg.curvature`   | gradient statistics, GGN/Hessian products and diagonals, KFAC    |
| `mg.privacy`     | DP-SGD: Poisson sampling, accounting, the private step          |
| `mg.threefry`    | jax.random's Threefry draws with the hash unrolled (same numbers) |
| `mg.training`    | the training loop, its callbacks, checkpoints, the figure        |
| `mg.parallel`    | data parallelism over a device mesh                              |
| `mg.checking`    | gradcheck, check-your-backward, value checks                     |
| `mg.data`        | loaders and the built-in data sets                               |
| `mg.course`      | the course's functions, names and layouts                        |
| `mg.activations`, `mg.losses`, `mg.dense`, `mg.precision`, `mg.regularization` | the formulas |
| `mg.errors`      | the exception types                                              |

Every sub-namespace and every core name is loaded on first use (PEP 562), so
`import manualgrad` imports neither jax nor optax until something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"  # the one source of the version (pyproject reads it)

#: public name -> the module that defines it
_NAMES = {
    "ManualgradError": "manualgrad._errors",
    "Network": "manualgrad._network",
    "network": "manualgrad._network",
    "backward": "manualgrad.functional",
    "cost": "manualgrad.functional",
    "forward": "manualgrad.functional",
    "init_params": "manualgrad.functional",
    "predict": "manualgrad.functional",
    "value_and_grad": "manualgrad.functional",
    "clipped_grads": "manualgrad.functional",
    "dp_grads": "manualgrad.functional",
    "per_example_grads": "manualgrad.functional",
    "per_example_norms": "manualgrad.functional",
    "TrainResult": "manualgrad.training",
    "accuracy": "manualgrad.training",
    "train": "manualgrad.training",
}

#: sub-namespace -> its module
_NAMESPACES = {
    "layers": "manualgrad.layers",
    "per_example": "manualgrad.per_example",
    "curvature": "manualgrad.curvature",
    "privacy": "manualgrad.privacy",
    "training": "manualgrad.training",
    "parallel": "manualgrad.parallel",
    "checking": "manualgrad.checking",
    "data": "manualgrad.data",
    "course": "manualgrad.course",
    "functional": "manualgrad.functional",
    "errors": "manualgrad.errors",
    "benchmark": "manualgrad.benchmark",
    "activations": "manualgrad._core.activations",
    "losses": "manualgrad._core.losses",
    "dense": "manualgrad._core.dense",
    "precision": "manualgrad._core.precision",
    "regularization": "manualgrad._core.regularization",
    "threefry": "manualgrad._core.threefry",
}

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


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    elif name in _NAMESPACES:
        value = importlib.import_module(_NAMESPACES[name])
    else:
        raise AttributeError(f"module 'manualgrad' has no attribute {name!r}")
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES, *_NAMESPACES})


if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from manualgrad import (
        checking,
        course,
        curvature,
        data,
        errors,
        functional,
        layers,
        parallel,
        per_example,
        privacy,
        training,
    )
    from manualgrad._core import activations, dense, losses, precision, regularization, threefry
    from manualgrad._errors import ManualgradError
    from manualgrad._network import Network, network
    from manualgrad.functional import (
        backward,
        clipped_grads,
        cost,
        dp_grads,
        forward,
        init_params,
        per_example_grads,
        per_example_norms,
        predict,
        value_and_grad,
    )
    from manualgrad.training import TrainResult, accuracy, train
