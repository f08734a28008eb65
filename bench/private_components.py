"""Where the time of one DP-SGD step goes: each component of the private step, jitted alone.

    PYTHONPATH=src python bench/private_components.py [--quick] [--rounds R] [--json FILE]

For each case of bench/privacy.py (float32) it compiles every component on its own
and times them all in one rotation of interleaved rounds (the order alternating from
round to round, `manualgrad.benchmark.paired_rounds`), so that the figures of one run
can be compared with each other (not across runs: the machine's load changes). Each
is reported as its median ms and as a share of `step@K` (the plain step on K given
columns) in the same rounds.

| component            | what is timed                                                     |
|----------------------|-------------------------------------------------------------------|
| `step@K`             | `net.value_and_grad` on K given columns (no gather)               |
| `sampler:topk`       | the sampler before: N uniforms and a `lax.top_k` over all N       |
| `sampler:gaps`       | `privacy.poisson_batch`: K geometric gaps, O(K)                   |
| `gather:columns`     | X[:, index], Y[:, index] for K sampled (sorted, random) indices   |
| `gather:rows`        | `privacy.gather_batch` of the same K from the set held examples   |
|                      | first (`privacy.examples_first`), as `mg.train` runs it           |
| `noise:<impl>:leaf`  | one N(0, 1) draw per parameter array (the old rule), threefry     |
| `noise:<impl>:flat`  | one flat draw of P normals, cut into the arrays (`privacy.noise`) |
| `clipped_grads`      | `per_example.clipped_grads` on the K columns: clipping, no mask   |
| `masked_dp_grads`    | the private gradient on K given columns: clip, mask, (2), noise   |
| `private`            | the whole private step (`mg.training.private_step` with SGD, on   |
|                      | the smallest of its compiled shapes that holds step 0's batch)    |

`--rng` chooses the implementation of the private step's noise (threefry, rbg,
unsafe_rbg); the noise rows are timed for all three.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
from jax import lax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import privacy as bench_privacy

import manualgrad as mg
from manualgrad import per_example, privacy
from manualgrad.benchmark import aot_compile, append_json_lines, machine, paired_rounds

IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


def _old_sampler(key, n, q, K):
    u = jax.random.uniform(key, (n,))
    neg_u, index = lax.top_k(-u, K)
    return index, -neg_u < q


def _leaf_noise(grads, key):
    names = sorted(grads)
    keys = jax.random.split(key, len(names))
    return {
        name: grads[name] + jax.random.normal(k, grads[name].shape, grads[name].dtype)
        for k, name in zip(keys, names, strict=True)
    }


def components(dims, n, q, rng):
    K = privacy.batch_capacity(n, q, overflow=1e-12)
    net = bench_privacy.make_network(dims)
    X, Y = bench_privacy.make_data(dims, n)
    params = net.init(dims, jax.random.key(1), method="he")
    key = jax.random.key(2)
    index = jnp.arange(K)
    XK, YK = X[:, index], Y[:, index]
    X_held, Y_held = privacy.examples_first(X, Y)  # once, as mg.train does
    sampled = privacy.poisson_batch(jax.random.key(5), n, q, K).index  # sorted, random
    mask = jnp.arange(K) < round(q * n)
    normaliser = q * n
    clip = jnp.float32(1.0)
    zeros = {k: jnp.zeros_like(v) for k, v in params.items()}

    fns = {
        "step@K": (lambda p, a, b: net.value_and_grad(p, a, b), (params, XK, YK)),
        "sampler:topk": (lambda k: _old_sampler(k, n, q, K), (key,)),
        "sampler:gaps": (lambda k: privacy.poisson_batch(k, n, q, K), (key,)),
        "gather:columns": (lambda a, b, i: (a[:, i], b[:, i]), (X, Y, sampled)),
        "gather:rows": (privacy.gather_batch, (X_held, Y_held, sampled)),
        "noise:threefry2x32:leaf": (_leaf_noise, (zeros, key)),
    }
    for impl in IMPLS:
        k_impl = jax.random.key(2, impl=impl)
        fns[f"noise:{impl}:flat"] = (
            lambda g, k: privacy.add_noise(g, k, 1.0, 1.0, 1.0),
            (zeros, k_impl),
        )
    fns["clipped_grads"] = (
        lambda p, a, b: per_example.clipped_grads(net, p, a, b, clip),
        (params, XK, YK),
    )
    fns["masked_dp_grads"] = (
        lambda p, a, b, mk, k: privacy.masked_dp_grads(net, p, a, b, mk, k, clip, 1.0, normaliser),
        (params, XK, YK, mask, key),
    )
    plan = bench_privacy.bench_plan(n, q, K, privacy.batch_capacities(n, q, K), rng)
    private = mg.training.private_step(net, _plain_sgd(), plan)
    opt_state = private.init(params)
    fns["private"] = (
        lambda p, s, a, b, k: private.step(p, s, jnp.int32(0), a, b, k),
        (params, opt_state, X_held, Y_held, key),
    )
    compiled = {name: aot_compile(fn, *args) for name, (fn, args) in fns.items()}
    thunks = {name: (lambda c=c, a=fns[name][1]: c(*a)) for name, c in compiled.items()}
    return K, thunks


def _plain_sgd():
    """SGD, so that the gradient is used: with `optax.set_to_zero` XLA drops the backward pass."""
    import optax

    return optax.sgd(1e-3)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the two smaller cases")
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--slot", type=float, default=0.05, help="seconds per component and round")
    p.add_argument("--rng", default="threefry2x32", choices=IMPLS)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    cases = bench_privacy.QUICK_CASES if args.quick else bench_privacy.CASES
    rounds = args.rounds
    rows = []
    for name, dims, n, q in cases:
        K, thunks = components(dims, n, q, args.rng)
        t = paired_rounds(thunks, rounds=rounds, slot_s=args.slot, warmup=2)
        base = t.seconds["step@K"]
        med = {k: 1e3 * statistics.median(v) for k, v in t.seconds.items()}
        share = {
            k: statistics.median(a / b for a, b in zip(v, base, strict=True))
            for k, v in t.seconds.items()
        }
        print(f"\n{name}: N = {n}, q·N = {q * n:.0f}, K = {K}, {rounds} rounds")
        print(f"{'component':26s} {'median ms':>10s} {'/ step@K':>9s}")
        for k in thunks:
            print(f"{k:26s} {med[k]:10.3f} {share[k]:9.3f}")
        rows.append(
            {
                "case": name,
                "K": K,
                "rng": args.rng,
                "median_ms": med,
                "share_of_step": share,
                "rounds": rounds,
                "machine": machine(),
            }
        )
    if args.json:
        append_json_lines(args.json, rows, header=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
