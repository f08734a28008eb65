"""Reading compiled HLO text: the all-reduces a data-parallel step performs.

Used by the data-parallel benchmark (bench/parallel.py) and its tests to count what
crosses devices; it parses `compiled.as_text()`, so it depends on XLA's text format,
which is why it lives with the benchmarks and not in the library proper.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import numpy as np

_DTYPE_BYTES = {
    "pred": 1,
    "s8": 1,
    "u8": 1,
    "bf16": 2,
    "f16": 2,
    "s16": 2,
    "u16": 2,
    "f32": 4,
    "s32": 4,
    "u32": 4,
    "f64": 8,
    "s64": 8,
    "u64": 8,
    "c64": 8,
    "c128": 16,
}
_ALL_REDUCE = re.compile(r"=\s*(.*?)\s*all-reduce(?:-start)?\(")
_ARRAY = re.compile(r"\b(pred|[a-z]+\d+)\[([\d,]*)\]")


class AllReduceStats(NamedTuple):
    """The all-reduces of a compiled computation.

    `ops`: all-reduce instructions (XLA may combine several arrays into one tuple
    all-reduce, so this can be less than `arrays`); `arrays`: the arrays they
    reduce; `bytes`: their total size, i.e. what each device contributes per call.
    """

    ops: int
    arrays: int
    bytes: int


def all_reduce_stats(compiled: Any) -> AllReduceStats:
    """Count the all-reduces in `jitted.lower(...).compile()` (or its `.as_text()`).

    Asynchronous pairs (`all-reduce-start` / `all-reduce-done`) count once.

    >>> hlo = "ar = (f32[3,2], f32[]) all-reduce(a, b), replica_groups={{0,1}}"
    >>> all_reduce_stats(hlo)
    AllReduceStats(ops=1, arrays=2, bytes=28)
    """
    text = compiled if isinstance(compiled, str) else compiled.as_text()
    ops = arrays = nbytes = 0
    for line in text.splitlines():
        match = _ALL_REDUCE.search(line)
        if match is None or "all-reduce-done" in line:
            continue
        ops += 1
        for dtype, dims in _ARRAY.findall(match.group(1)):
            arrays += 1
            size = int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
            nbytes += size * _DTYPE_BYTES.get(dtype, 0)
    return AllReduceStats(ops, arrays, nbytes)
