"""Benchmark: one DP-SGD step (Poisson mask, clipping, noise) vs the non-private step, vs Opacus.

    PYTHONPATH=src python bench/privacy.py [--quick] [--rounds R] [--json FILE]

For each MLP (float32, CPU) and sampling rate q on N examples, with K = the batch
capacity at which a batch overflows with probability ≤ 1e-12, it times one full
training step (gradient and SGD update):

| variant      | one step                                                                 |
|--------------|--------------------------------------------------------------------------|
| `private`    | step t of `mg.training.private_step` with SGD, as `mg.train` runs it:    |
|              | `mg.threefry` keys of step t → `privacy.poisson_batch` (K geometric      |
|              | gaps) → on the smallest of the shapes `privacy.batch_capacities`         |
|              | (quantiles 0.9, 0.999, and K) that holds the batch                       |
|              | (`privacy.in_smallest_capacity`): `privacy.gather_batch` (rows of the    |
|              | set held by `privacy.examples_first`, transposed once, outside the       |
|              | timing) → the masked clipped gradient (clip, mask, (2) with q·N, noise)  |
|              | → SGD. Each call is the next step t: a new batch each time               |
| `private@K`  | the same compiled for K alone (`batch_quantiles=()`)                     |
| `step@K`     | `mg.value_and_grad` on K given columns → SGD: the same network and       |
|              | columns without privacy, so private / step@K is the cost of the mask,   |
|              | the clipping and the noise                                               |
| `step@qN`    | the same on q·N columns, the expected batch: private / step@qN adds the |
|              | cost of the capacity K > q·N that fixed shapes need                      |
| `opacus@qN`  | Opacus' `GradSampleModule` + `DPOptimizer` (per-sample gradients by     |
|              | hooks, clipping, noise, SGD) on a fixed batch of q·N rows — without its |
|              | Poisson data loader, which only favours it (optional: torch + opacus)   |

Before timing, the variants are checked to agree (σ = 0, no clipping, mask all True:
private = step@K; and Opacus' noiseless clipped step = manualgrad's from the same
params). Then `--rounds` interleaved rounds, the order of the variants alternating
from round to round, each round timing `--reps` calls of every variant
(`manualgrad.benchmark.paired_rounds`); the table reports per variant the median over
rounds and, for each ratio, the median of the per-round ratios with a 95% bootstrap
interval over rounds (`manualgrad.benchmark.ratio_interval`). Targets on CPU: private ≤
1.15 × step@K and ≤ 1.3 × step@qN; faster than Opacus at every size. step@K and
step@qN read the same columns at every call (the private step a new batch), which
favours them.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import manualgrad as mg
from manualgrad import privacy
from manualgrad.benchmark import (
    aot_compile,
    append_json_lines,
    machine,
    max_rel_err,
    paired_rounds,
    ratio_interval,
)

#: name, layer dims, N, q
CASES = [
    ("digits 64-32-10, q·N=288", [64, 32, 10], 1438, 0.2),
    ("784-256-256-10, q·N=256", [784, 256, 256, 10], 60000, 256 / 60000),
    ("784-512-512-10, q·N=1024", [784, 512, 512, 10], 60000, 1024 / 60000),
]
QUICK_CASES = CASES[:2]
TINY_CASES = [("tiny 8-4-3, q·N=20", [8, 4, 3], 200, 0.1)]  # bench/run_gpu.sh --cpu-smoke
LR, CLIP, SIGMA = 0.1, 1.0, 1.0


def make_data(dims, n, seed=0):
    k_x, k_y = jax.random.split(jax.random.key(seed))
    X = jax.random.normal(k_x, (dims[0], n), jnp.float32)
    Y = jax.nn.one_hot(jax.random.randint(k_y, (n,), 0, dims[-1]), dims[-1], axis=0)
    return X, Y


def make_network(dims) -> mg.Network:
    return mg.network(["relu"] * (len(dims) - 2) + ["softmax"], "ce")


def bench_plan(n, q, K, capacities, rng="threefry2x32"):
    """A DPPlan with σ = SIGMA, C = CLIP, capacity K and the given shapes (no accounting)."""
    return privacy.DPPlan(
        n=n,
        steps=1,
        sampling_rate=q,
        clip_norm=CLIP,
        delta=1e-5,
        noise_multiplier=SIGMA,
        epsilon=float("nan"),  # not accounted: the bench times steps
        accountant="pld",
        capacity=K,
        overflow=0.0,
        delta_overflow=0.0,
        rng=rng,
        capacities=tuple(capacities),
    )


def variants(dims, n, q, K):
    net = make_network(dims)
    B = round(q * n)

    def sgd(params, grads):
        return {k: params[k] - LR * grads[k] for k in params}

    def private_on(shapes):
        # mg.train's own private step (plain SGD), so that the bench times its code
        private = mg.training.private_step(net, optax.sgd(LR), bench_plan(n, q, K, shapes))

        def step_t(params, X_held, Y_held, key, t):  # SGD's state is empty: init per call
            return private.step(params, private.init(params), t, X_held, Y_held, key)

        return step_t

    private = private_on(privacy.batch_capacities(n, q, K))
    private_K = private_on((K,))

    def step(params, X, Y, index):
        _, grads = net.value_and_grad(params, X[:, index], Y[:, index])
        return sgd(params, grads)

    return net, B, private, private_K, step


def _opacus_step(dims, B, params, X, Y, sigma, clip, normaliser):
    """A closure running one Opacus DP-SGD step on the first B rows, and its model."""
    import torch
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    layers = []
    for l in range(1, len(dims)):
        lin = torch.nn.Linear(dims[l - 1], dims[l])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.array(params[f"W{l}"])))
            lin.bias.copy_(torch.from_numpy(np.array(params[f"b{l}"][:, 0])))
        layers.append(lin)
        if l < len(dims) - 1:
            layers.append(torch.nn.ReLU())
    model = GradSampleModule(torch.nn.Sequential(*layers))
    opt = DPOptimizer(
        torch.optim.SGD(model.parameters(), lr=LR),
        noise_multiplier=sigma,
        max_grad_norm=clip,
        expected_batch_size=round(normaliser),
        loss_reduction="mean",
    )
    x = torch.from_numpy(np.asarray(X[:, :B]).T.copy())
    y = torch.from_numpy(np.asarray(jnp.argmax(Y[:, :B], axis=0)).astype(np.int64))

    def run():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return run, model


def _check(dims, n, q, K, X, Y, params, opacus_ok):
    """Raise if the variants disagree where they should compute the same thing."""
    index = jnp.arange(K)
    # private with σ ≈ 0, C = ∞ and every column sampled (q = 1 for the check: all of
    # the first K columns) equals the plain step when the normaliser is K.
    net = make_network(dims)

    def noiseless(B, clip_norm, normaliser):
        """privacy.masked_dp_grads with σ = 0 on the first B columns, all of them sampled."""
        return privacy.masked_dp_grads(
            net,
            params,
            X[:, :B],
            Y[:, :B],
            jnp.ones(B, bool),
            jax.random.key(0),
            clip_norm=clip_norm,
            noise_multiplier=0.0,
            normaliser=normaliser,
        )

    g_priv = noiseless(K, 1e30, K)
    _, g_step = net.value_and_grad(params, X[:, index], Y[:, index])
    errs = {"private_vs_step": max_rel_err(g_priv, g_step)}
    if opacus_ok:
        B = round(q * n)
        run, model = _opacus_step(dims, B, params, X, Y, 0.0, CLIP, q * n)
        run()  # one noiseless clipped step from params
        g_ours = noiseless(B, CLIP, q * n)
        mods = [m for m in model._module if hasattr(m, "weight")]
        worst = 0.0
        for l, lin in enumerate(mods, start=1):
            want = params[f"W{l}"] - LR * g_ours[f"W{l}"]
            got = lin.weight.detach().numpy()
            worst = max(worst, float(np.max(np.abs(got - want)) / np.max(np.abs(want))))
        errs["opacus_vs_private"] = worst
    for name, e in errs.items():
        if not e < 1e-4:
            raise AssertionError(f"{name}: the variants disagree (max relative error {e:.2e})")
    return errs


def bench_case(name, dims, n, q, rounds, reps, use_opacus):
    K = privacy.batch_capacity(n, q, overflow=1e-12)
    _, B, private, private_K, step = variants(dims, n, q, K)
    X, Y = make_data(dims, n)
    params = make_network(dims).init(dims, jax.random.key(1), method="he")
    opacus_ok = False
    if use_opacus:
        try:
            import opacus  # noqa: F401
            import torch  # noqa: F401

            opacus_ok = True
        except ImportError:
            print("opacus/torch not installed: no Opacus column", file=sys.stderr)
    errs = _check(dims, n, q, K, X, Y, params, opacus_ok)

    key = jax.random.key(2)
    X_held, Y_held = privacy.examples_first(X, Y)  # once, as mg.train does
    t0 = jnp.int32(0)
    priv_c = aot_compile(private, params, X_held, Y_held, key, t0)
    priv_K = aot_compile(private_K, params, X_held, Y_held, key, t0)
    idx_K, idx_B = jnp.arange(K), jnp.arange(B)
    step_K = aot_compile(step, params, X, Y, idx_K)
    step_B = aot_compile(step, params, X, Y, idx_B)
    steps = [jnp.int32(t) for t in range(997)]  # step t of a run: a new batch at each call
    counters = {"private": itertools.count(), "private@K": itertools.count()}

    def run_private(compiled, name):
        return lambda: compiled(params, X_held, Y_held, key, steps[next(counters[name]) % 997])

    calls = {
        "private": run_private(priv_c, "private"),
        "private@K": run_private(priv_K, "private@K"),
        "step@K": lambda: step_K(params, X, Y, idx_K),
        "step@qN": lambda: step_B(params, X, Y, idx_B),
    }
    if opacus_ok:
        run, _ = _opacus_step(dims, B, params, X, Y, SIGMA, CLIP, q * n)
        calls["opacus@qN"] = run
    timings = paired_rounds(calls, rounds=rounds, calls=reps, warmup=3)
    per_round = timings.seconds
    med = {k: statistics.median(v) for k, v in per_round.items()}
    ratios = {}
    pairs = [("private", b) for b in ("step@K", "step@qN", "opacus@qN", "private@K")]
    for top, base in [*pairs, ("private@K", "step@K")]:
        if base in per_round:
            r = ratio_interval(per_round[top], per_round[base])
            ratios[f"{top}/{base}"] = (r.median, r.low, r.high)
    return {
        "case": name,
        "dims": dims,
        "N": n,
        "q": q,
        "qN": q * n,
        "K": K,
        "shapes": list(privacy.batch_capacities(n, q, K)),
        "median_ms": {k: 1e3 * v for k, v in med.items()},
        "ratios": ratios,
        "agreement": errs,
        "rounds": rounds,
        "reps": reps,
        "machine": machine(),
    }


def print_table(results):
    print(f"{'case':32s} {'K':>5s} {'variant':>10s} {'median ms':>10s}")
    for res in results:
        first = True
        for k, v in res["median_ms"].items():
            label = res["case"] if first else ""
            K = str(res["K"]) if first else ""
            print(f"{label:32s} {K:>5s} {k:>10s} {v:10.3f}")
            first = False
        for name, (m, lo, hi) in res["ratios"].items():
            print(f"{'':32s} {'':>5s} {name:>18s} {m:6.2f}× [{lo:.2f}, {hi:.2f}]")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the two smaller cases only")
    p.add_argument("--tiny", action="store_true", help="one tiny case: checks the script")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--no-opacus", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, float32", file=sys.stderr)
    results = []
    cases = TINY_CASES if args.tiny else QUICK_CASES if args.quick else CASES
    for name, dims, n, q in cases:
        results.append(bench_case(name, dims, n, q, args.rounds, args.reps, not args.no_opacus))
    print_table(results)
    if args.json:
        append_json_lines(args.json, results, header=False)  # each result holds its machine
    if not math.isfinite(sum(r["median_ms"]["private"] for r in results)):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
