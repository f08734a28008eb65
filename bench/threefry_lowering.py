"""Benchmark: the private step with its randomness drawn by jax.random vs by mg.threefry.

    PYTHONPATH=src python bench/threefry_lowering.py [--rounds R] [--json FILE]

The two programs compute the same numbers (checked bit for bit before timing): the
private step of bench/privacy.py (fold_in, key split, the sampler's uniforms, the noise),
once with `jax.random.split` / `uniform` / `normal` (whose Threefry hash jax lowers on
CPU as a 5-iteration loop) and once with `mg.threefry` (the same hash,
its 20 rounds unrolled; what the library runs). Per MLP of bench/privacy.py: the
median ms of both and of step@K, and the median per-round ratio unrolled / jax.random
with a 95 % bootstrap interval (`manualgrad.benchmark.ratio_interval`), in interleaved
rounds whose order alternates (`manualgrad.benchmark.paired_rounds`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).parent))
import privacy as bench_privacy

from manualgrad import privacy, threefry
from manualgrad.benchmark import append_json_lines, paired_rounds, ratio_interval


def _with_jax_random(build):
    """`build()` with mg.threefry's draws replaced by jax.random's own (same numbers)."""
    saved = {k: getattr(threefry, k) for k in ("split", "fold_in", "uniform", "normal")}

    def normal(key, shape, dtype=float, *, partitionable=None):
        with jax.threefry_partitionable(bool(partitionable)):
            return jax.random.normal(key, shape, dtype)

    threefry.split = lambda key, num=2, *, partitionable=None: jax.random.split(key, num)
    threefry.fold_in = jax.random.fold_in
    threefry.uniform = lambda key, shape, dtype=float, *, partitionable=None: jax.random.uniform(
        key, shape, dtype
    )
    threefry.normal = normal
    try:
        return build()
    finally:
        for k, v in saved.items():
            setattr(threefry, k, v)


def bench_case(name, dims, n, q, rounds, reps):
    K = privacy.batch_capacity(n, q, overflow=1e-12)
    _, _, private, _, step = bench_privacy.variants(dims, n, q, K)
    X, Y = bench_privacy.make_data(dims, n)
    params = bench_privacy.make_network(dims).init(dims, jax.random.key(1), method="he")
    X_held, Y_held = privacy.examples_first(X, Y)
    args = (params, X_held, Y_held, jax.random.key(2), jnp.int32(0))

    def build():  # a fresh function each time: jit's trace cache is keyed on it
        return jax.jit(lambda *a: private(*a)).lower(*args).compile()

    unrolled, rolled = build(), _with_jax_random(build)
    a, b = unrolled(*args), rolled(*args)
    if not all(map(jnp.array_equal, jax.tree.leaves(a), jax.tree.leaves(b))):
        raise AssertionError(f"{name}: the two programs' steps differ")
    index = jnp.arange(K)
    step_K = jax.jit(step).lower(params, X, Y, index).compile()
    calls = {
        "unrolled": lambda: unrolled(*args),
        "jax.random": lambda: rolled(*args),
        "step@K": lambda: step_K(params, X, Y, index),
    }
    t = paired_rounds(calls, rounds=rounds, calls=reps, warmup=3)
    ratio = ratio_interval(t.seconds["unrolled"], t.seconds["jax.random"])
    return {
        "case": name,
        "K": K,
        "median_ms": {k: 1e3 * statistics.median(v) for k, v in t.seconds.items()},
        "unrolled/jax.random": ratio.as_json(),
        "unrolled/step@K": ratio_interval(t.seconds["unrolled"], t.seconds["step@K"]).as_json(),
        "jax.random/step@K": ratio_interval(t.seconds["jax.random"], t.seconds["step@K"]).as_json(),
        "rounds": rounds,
        "reps": reps,
        "text": ratio.text(3),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--tiny", action="store_true", help="one tiny case: checks the script")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    cases = bench_privacy.TINY_CASES if args.tiny else bench_privacy.CASES
    rows = []
    head = f"{'case':28s} {'unrolled ms':>12s} {'jax.random ms':>14s} {'step@K ms':>10s}"
    print(head + "  unrolled / jax.random")
    for case in cases:
        r = bench_case(*case, rounds=args.rounds, reps=args.reps)
        ms = r["median_ms"]
        print(
            f"{r['case'][:28]:28s} {ms['unrolled']:12.3f} {ms['jax.random']:14.3f} "
            f"{ms['step@K']:10.3f}  {r['text']}"
        )
        rows.append(r)
    if args.json:
        append_json_lines(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
