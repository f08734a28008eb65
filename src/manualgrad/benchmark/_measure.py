r"""How every manualgrad benchmark measures: paired, interleaved rounds and a bootstrap interval.

A comparison of a variant v with a baseline b runs R *rounds*. In each round both run
k calls back to back (each call ended by `jax.block_until_ready`), in the order
(v, b) on even rounds and (b, v) on odd ones, so that drift, load from other jobs and
"what ran just before" hit both alike. Round r gives t_v(r) and t_b(r), seconds per
call, and the per-round ratio

    ρ_r = t_v(r) / t_b(r),    ρ̂ = median_r ρ_r.

The 95 % interval of ρ̂ is a percentile bootstrap over the R per-round ratios
(`scipy.stats.bootstrap`, 2000 resamples, fixed seed). A point whose interval
contains 1.00 is a *tie*; below 1.00 the variant is *faster*, above it *slower*.

Only the variant and its baseline share a rotation: timings on a CPU depend on what ran
just before (caches, the thread pool waking up), so a third variant in the same rounds
would bias the pair.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

Array = jax.Array


class Timings(NamedTuple):
    """Seconds per call of each thunk, one entry per round.

    `seconds[name][r]` is the mean over the `calls` calls of round r.
    """

    seconds: dict[str, list[float]]
    rounds: int
    calls: int


class Ratio(NamedTuple):
    """ρ̂ = median over rounds of t_variant / t_baseline, with its bootstrap interval.

    `low`, `high`: the 95 % percentile-bootstrap interval of the median over `rounds`
    per-round ratios.
    """

    median: float
    low: float
    high: float
    rounds: int

    @property
    def verdict(self) -> str:
        """`faster` (interval below 1), `slower` (above 1), or `tie` (it contains 1)."""
        if self.high < 1.0:
            return "faster"
        if self.low > 1.0:
            return "slower"
        return "tie"

    def as_json(self) -> dict[str, Any]:
        """{"median", "low", "high", "rounds", "verdict"}: how every JSON row stores a ratio."""
        return {**self._asdict(), "verdict": self.verdict}

    def text(self, digits: int = 3) -> str:
        """'0.973 [0.951, 0.998]'."""
        return f"{self.median:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def aot_compile(fn: Callable, *args: Any, **kwargs: Any):
    """`jax.jit(fn).lower(*args, **kwargs).compile()`: compiled ahead of time.

    Call the result as `compiled(*args, **kwargs)`. Static options belong to `fn` itself
    (a network's bound function, a closure), never to `static_argnames`.
    """
    return jax.jit(fn).lower(*args, **kwargs).compile()


def temp_bytes(compiled: Any) -> int | None:
    """XLA's temporary-buffer size (`memory_analysis().temp_size_in_bytes`), or None."""
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # not implemented on every backend
        return None
    value = None if analysis is None else getattr(analysis, "temp_size_in_bytes", None)
    return None if value is None else int(value)


def xla_flops(compiled: Any) -> float | None:
    """XLA's own FLOP count (`cost_analysis()["flops"]`), or None where it has none."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:
        return None
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])


def device_memory_bytes() -> int | None:
    """The default device's memory limit in bytes (None on CPU or when unknown)."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:
        return None
    return None if not stats else stats.get("bytes_limit")


def max_rel_err(got: Any, want: Any) -> float:
    """max over leaves of max |got − want| / max |want|, in float64 on the host."""
    errs = [
        float(np.max(np.abs(np.asarray(g, np.float64) - np.asarray(w, np.float64))))
        / max(float(np.max(np.abs(np.asarray(w, np.float64)))), 1e-300)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
    ]
    return max(errs)


def check_agreement(
    case: str, errors: Mapping[str, float], tol: float, log: Callable[[str], Any] = print
) -> None:
    """Log each variant's max relative error and stop the benchmark if one exceeds `tol`.

    `errors`: {what: max_rel_err}, e.g. {"step vs lax": 3e-7}; a case whose variants do not
    compute the same thing must not be timed (SystemExit names the case and the variant).
    """
    for what, err in errors.items():
        log(f"  agreement {what}: max rel err {err:.2e} (tol {tol:.0e})")
        if not err <= tol:
            raise SystemExit(f"{case}: {what} disagree: {err:.3e} > {tol}")


def device_name() -> str:
    """The first device's kind; on CPU the processor's model name from /proc/cpuinfo."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        return f"{dev.platform}: {dev.device_kind}"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()}"
    return f"cpu: {platform.processor() or platform.machine()}"


def machine() -> dict[str, Any]:
    """What a reader needs to weigh a figure: device, cores, load, versions, date (UTC)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "device": device_name(),
        "devices": jax.device_count(),
        "cores": cores,
        "load_avg": load,
        "jax": jax.__version__,
        "python": sys.version.split()[0],
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
    }


def append_json_lines(path: str, rows: Sequence[Mapping[str, Any]], *, header: bool = True) -> None:
    """Append to `path` one JSON object per line: :func:`machine` first (`header`), then `rows`.

    The bench scripts' `--json FILE`: appending, so that several runs collect in one file,
    each after the machine it ran on.
    """
    with open(path, "a") as f:
        if header:
            f.write(json.dumps({"machine": machine()}) + "\n")
        for row in rows:
            f.write(json.dumps(row) + "\n")


def paired_rounds(
    thunks: Mapping[str, Callable[[], Any]],
    *,
    rounds: int,
    calls: int | None = None,
    warmup: int = 2,
    slot_s: float = 0.05,
    max_calls: int = 200,
) -> Timings:
    """Time each thunk in `rounds` interleaved rounds, reversing the order every round.

    Each thunk is first called `warmup` times. Then every round runs each thunk `calls`
    times back to back, each call ended by `jax.block_until_ready`, forward order on even
    rounds and reversed on odd ones. With `calls=None`, k is chosen from the slowest
    warm-up call so that one thunk's turn in a round lasts about `slot_s` seconds
    (1 ≤ k ≤ `max_calls`).
    """
    names = list(thunks)
    if rounds < 1:
        raise ValueError(f"expected rounds ≥ 1, got {rounds}")
    slowest = 0.0
    for _ in range(max(warmup, 1)):
        for name in names:
            t0 = time.perf_counter()
            jax.block_until_ready(thunks[name]())
            slowest = max(slowest, time.perf_counter() - t0)
    if calls is None:
        calls = min(max_calls, max(1, math.ceil(slot_s / max(slowest, 1e-9))))
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            thunk = thunks[name]
            t0 = time.perf_counter()
            for _ in range(calls):
                jax.block_until_ready(thunk())
            seconds[name].append((time.perf_counter() - t0) / calls)
    return Timings(seconds, rounds, calls)


def ratio_interval(
    times: Sequence[float],
    baseline_times: Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Ratio:
    """Median of the per-round ratios times[r] / baseline_times[r], with a bootstrap interval.

    The interval is `scipy.stats.bootstrap`'s percentile interval of the median over
    the per-round ratios (not of a ratio of medians: load that hits one round hits
    both of its timings, and cancels in its ratio).
    """
    from scipy.stats import bootstrap

    a = np.asarray(times, np.float64)
    b = np.asarray(baseline_times, np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"expected two equal-length, non-empty series of per-round times, got "
            f"shapes {a.shape} and {b.shape}"
        )
    ratios = a / b
    median = float(np.median(ratios))
    if ratios.size < 2:
        return Ratio(median, median, median, 1)
    ci = bootstrap(
        (ratios,),
        np.median,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return Ratio(median, float(ci.low), float(ci.high), int(ratios.size))


class Pairing(NamedTuple):
    """One thunk against a baseline in rounds of their own (:func:`paired_ratio`).

    `ratio`: thunk / baseline (:class:`Ratio`); `ms`, `baseline_ms`: the median
    milliseconds per call over the rounds; `calls`: calls per thunk and round.
    """

    ratio: Ratio
    ms: float
    baseline_ms: float
    calls: int

    def as_json(self) -> dict[str, Any]:
        """The ratio's JSON fields (:meth:`Ratio.as_json`) and `calls`."""
        return {**self.ratio.as_json(), "calls": self.calls}


def paired_ratio(
    thunk: Callable[[], Any],
    baseline: Callable[[], Any],
    *,
    rounds: int,
    calls: int | None = None,
    slot_s: float = 0.05,
) -> Pairing:
    """`thunk` against `baseline` in one paired rotation (:func:`compare` for one variant)."""
    ratio, timings = compare({"thunk": thunk}, baseline, rounds=rounds, calls=calls, slot_s=slot_s)[
        "thunk"
    ]
    ms = {k: 1e3 * float(np.median(v)) for k, v in timings.seconds.items()}
    return Pairing(ratio, ms["thunk"], ms["baseline"], timings.calls)


def compare(
    variants: Mapping[str, Callable[[], Any]],
    baseline: Callable[[], Any],
    *,
    rounds: int,
    calls: int | None = None,
    slot_s: float = 0.05,
) -> dict[str, tuple[Ratio, Timings]]:
    """Each variant against `baseline`, one paired rotation per variant.

    Returns {name: (ratio variant / baseline, the rotation's timings)}; the baseline's
    timings sit under the key `"baseline"` of each rotation's `seconds`.
    """
    out = {}
    for name, thunk in variants.items():
        timings = paired_rounds(
            {name: thunk, "baseline": baseline}, rounds=rounds, calls=calls, slot_s=slot_s
        )
        ratio = ratio_interval(timings.seconds[name], timings.seconds["baseline"])
        out[name] = (ratio, timings)
    return out
