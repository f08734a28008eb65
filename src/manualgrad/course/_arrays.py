"""Input conversion shared by the course modules: NumPy or JAX arrays in, JAX floats out."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from manualgrad._core import validation as check
from manualgrad._errors import DTypeError

__all__ = ["as_float"]


def as_float(x: Any, name: str = "array") -> jax.Array:
    """A JAX float array from a NumPy/JAX array or list (integer labels become floats)."""
    x = check.as_array(name, x)  # a DTypeError, not a raw JAX error, for None, strings, …
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise DTypeError(f"`{name}` has dtype {x.dtype}; expected real numbers — use jnp.real")
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))
