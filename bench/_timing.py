"""Small timing helpers shared by the benchmarks: AOT compile, median wall time, XLA temp bytes.

Every benchmark compiles ahead of time (`jax.jit(f).lower(...).compile()`), warms up,
blocks on the result (`jax.block_until_ready`) and reports the median of several runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax


def aot_compile(fn: Callable, *args: Any, static_argnames: Sequence[str] = (), **kwargs: Any):
    """`jax.jit(fn).lower(*args, **kwargs).compile()`: the compiled executable, called as
    `compiled(*args, **non_static_kwargs)`."""
    return jax.jit(fn, static_argnames=tuple(static_argnames)).lower(*args, **kwargs).compile()


def median_time(call: Callable[[], Any], *, repeat: int = 10, warmup: int = 2) -> float:
    """Median wall time in seconds of `call()` (blocked until ready) after `warmup` calls."""
    for _ in range(warmup):
        jax.block_until_ready(call())
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def temp_bytes(compiled) -> int | None:
    """XLA's temporary-buffer size of a compiled executable, or None if the backend has none."""
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # not implemented on some backends
        return None
    if analysis is None:
        return None
    value = getattr(analysis, "temp_size_in_bytes", None)
    return int(value) if value is not None else None


def device_memory_bytes() -> int | None:
    """The default device's memory limit in bytes (None on CPU or when unknown)."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:
        return None
    return None if not stats else stats.get("bytes_limit")
