r"""Matmul precision policies for the forward and backward formulas.

Every matrix product in manualgrad goes through :func:`matmul`, which contracts the
named axes directly with `lax.dot_general` (no transpose is ever materialised: Wᵀ dZ
contracts axis 0 of W with axis 0 of dZ; dZ A_prevᵀ contracts axis 1 with axis 1).

| policy      | operands      | accumulation  | notes                                         |
|-------------|---------------|---------------|-----------------------------------------------|
| `"default"` | params' dtype | params' dtype | backend default (TF32 for float32 on recent   |
|             |               |               | NVIDIA GPUs); honours                         |
|             |               |               | `jax.default_matmul_precision(...)`           |
| `"highest"` | params' dtype | params' dtype | full float32 (or float64) products            |
| `"bf16"`    | bfloat16      | float32       | mixed precision: params and elementwise math  |
|             |               |               | stay float32; needs float32 params            |

Float64 (`jax_enable_x64`) is simply float64 params and data with any of the first two.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

__all__ = [
    "PRECISIONS",
    "matmul",
]

PRECISIONS = ("default", "highest", "bf16")


def matmul(a: Array, b: Array, contract_a: int, contract_b: int, precision: str) -> Array:
    """Σ_k a[..k..] b[..k..] over axis `contract_a` of `a` and `contract_b` of `b`.

    The result's axes are a's free axes followed by b's free axes, as for
    `lax.dot_general`; its dtype is a's dtype whatever the policy.
    """
    dims = (((contract_a,), (contract_b,)), ((), ()))
    if precision == "bf16":
        return lax.dot_general(
            a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), dims, preferred_element_type=a.dtype
        )
    lax_precision = lax.Precision.HIGHEST if precision == "highest" else None
    return lax.dot_general(a, b, dims, precision=lax_precision)
