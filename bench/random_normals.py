"""Normals per second of each `jax.random` implementation: the price of DP-SGD's noise.

    PYTHONPATH=src python bench/random_normals.py [--sizes 1e5,1e6,1e7] [--rounds R] [--json FILE]

For each P in `--sizes` it compiles `jax.random.normal(key, (P,), float32)` for the key
implementations threefry2x32 (jax's default), rbg and unsafe_rbg
(:class:`manualgrad.privacy.DPConfig`'s `rng`) as `jax.random.normal` draws them by
default (threefry: one 32-bit word per Threefry block, the partitionable scheme), threefry
with both words of every block (`jax.threefry_partitionable(False)`), the same numbers with
the Threefry rounds unrolled (`mg.threefry.normal`, which XLA fuses into one
kernel where jax's CPU lowering runs a loop), what the private step runs
(`privacy.add_noise`: the unrolled draw plus the add, float32), and, for scale, `x + 1.0` on
P floats (one pass over the memory the noise is added to). Each size times all of them in one
rotation of interleaved rounds (the order alternating, `manualgrad.benchmark.paired_rounds`),
and reports the median ms, the normals per second, and the median per-round ratio to
threefry2x32 with a 95 % bootstrap interval (`manualgrad.benchmark.ratio_interval`).
No published table of these exists (jax's docs only say that rbg is faster on TPU);
the default sizes suit a CPU, and bench/run_gpu.sh adds P = 1e8 on a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import jax
import jax.numpy as jnp

from manualgrad import privacy, threefry
from manualgrad.benchmark import (
    aot_compile,
    append_json_lines,
    paired_rounds,
    ratio_interval,
)

IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


def _normal(P: int, partitionable: bool):
    def draw(key):
        with jax.threefry_partitionable(partitionable):
            return jax.random.normal(key, (P,), jnp.float32)

    return draw


def _thunks(P: int) -> dict:
    thunks = {}
    for impl in IMPLS:
        key = jax.random.key(0, impl=impl)
        f = aot_compile(_normal(P, True), key)
        thunks[impl] = lambda f=f, key=key: f(key)
    key = jax.random.key(0)
    f = aot_compile(_normal(P, False), key)
    thunks["threefry, both words"] = lambda: f(key)
    g = aot_compile(lambda k: threefry.normal(k, (P,), jnp.float32, partitionable=False), key)
    thunks["both words, unrolled"] = lambda: g(key)
    x = jnp.zeros((P,), jnp.float32)
    noise = aot_compile(lambda g, k: privacy.add_noise({"w": g}, k, 1.0, 1.0, 1.0), x, key)
    thunks["privacy.add_noise"] = lambda: noise(x, key)
    add = aot_compile(lambda x: x + 1.0, x)
    thunks["x + 1 (memory pass)"] = lambda: add(x)
    return thunks


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1e5,1e6,1e7", help="comma-separated P values")
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--slot", type=float, default=0.05, help="seconds per variant and round")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    dev = jax.devices()[0]
    print(f"jax {jax.__version__}, {dev.platform} ({dev.device_kind}), float32", file=sys.stderr)
    rows = []
    print(f"{'P':>10s} {'impl':>20s} {'median ms':>10s} {'normals/s':>10s} {'/ threefry':>22s}")
    for P in sizes:
        t = paired_rounds(_thunks(P), rounds=args.rounds, slot_s=args.slot, warmup=2)
        base = t.seconds["threefry2x32"]
        for name, secs in t.seconds.items():
            med = statistics.median(secs)
            r = ratio_interval(secs, base)
            print(f"{P:>10.0e} {name:>20s} {1e3 * med:10.3f} {P / med:10.2e} {r.text(2):>22s}")
            rows.append(
                {
                    "P": P,
                    "impl": name,
                    "median_ms": 1e3 * med,
                    "per_second": P / med,
                    "ratio_to_threefry": r.as_json(),
                    "rounds": args.rounds,
                    "calls": t.calls,
                }
            )
    if args.json:
        append_json_lines(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
