"""Benchmark: curvature and gradient statistics vs a gradient step and vs the JAX routes.

    PYTHONPATH=src python bench/curvature.py [--quick] [--rounds N] [--json FILE]

For each case (softmax + ce networks) and each quantity of `manualgrad.curvature`, four
jitted float32 functions are compiled ahead of time, checked to agree, and timed side by
side in interleaved rounds whose order alternates (forward, then reversed), each call
ended by `jax.block_until_ready`:

| variant    | what runs                                                              |
|------------|------------------------------------------------------------------------|
| `step`     | `net.value_and_grad`: one hand-written gradient step                   |
| `jax_step` | `jax.value_and_grad` of an idiomatic JAX cost (jax.nn, optax)          |
| `ours`     | the `manualgrad.curvature` function                                    |
| `route`    | what a JAX user writes instead (below)                                 |

| quantity                | the JAX route                                                         |
|-------------------------|-----------------------------------------------------------------------|
| sum_grad_squared        | `jax.vmap(jax.grad)` per example, then Σ g²                           |
| grad_variance           | `jax.vmap(jax.grad)`, then the variance over examples                 |
| gradient_gram           | `jax.vmap(jax.grad)`, flatten, G Gᵀ                                   |
| diag_ggn MC(1)          | `jax.vmap(jax.grad)` of the loss at sampled labels, then Σ g² / m      |
| diag_ggn exact          | C VJPs per example (`vmap` over examples of `vmap(vjp)` over columns)  |
| kfac_factors            | kfac-jax's trick: VJPs w.r.t. zero perturbations of every Z[l]         |
| ggn_vector_product      | `jax.jvp` of the logits, the loss Hessian, `jax.vjp`                   |
| hessian_vector_product  | `jax.jvp(jax.grad(cost))`                                              |
| diag_hessian            | one HVP per parameter: P × the HVP time (extrapolated, not run)        |

Where the per-example routes would hold more than `--budget-mb` of per-example
gradients they run as a `jax.lax.scan` over chunks of examples that accumulates the sums
(the table says so); the Gram route needs every g_i at once and keeps them (m × P). A
route slower than `--slow-s` per call is timed in 3 rounds only (with its group).
Reported per quantity: the median time, the median over rounds of the per-round ratios
ours/step, ours/jax_step and route/ours with a 95% bootstrap interval (rounds
resampled), and XLA's temp memory (`memory_analysis().temp_size_in_bytes`).

Timing uses the one harness (`manualgrad.benchmark.paired_rounds`, `ratio_interval`)."""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import manualgrad as mg
from manualgrad import benchmark, curvature

ACTS = ("relu", "relu", "softmax")
CASES = [
    ("784-256-256-10 ce, m=256", [784, 256, 256, 10], 256),
    ("784-1024-1024-10 ce, m=512", [784, 1024, 1024, 10], 512),
]
QUICK = [("64-128-128-10 ce, m=128", [64, 128, 128, 10], 128)]
TOL = 2e-3  # float32: max |ours − route| / max |route|


# --------------------------------------------------------------------------- JAX routes


def logits(params, X):
    A = X
    L = len(ACTS)
    for l in range(1, L):
        A = jax.nn.relu(params[f"W{l}"] @ A + params[f"b{l}"])
    return params[f"W{L}"] @ A + params[f"b{L}"]


def jax_cost(params, X, Y):
    return jnp.mean(optax.softmax_cross_entropy(logits(params, X).T, Y.T))


def example_loss(params, x, y):
    return optax.softmax_cross_entropy(logits(params, x[:, None])[:, 0], y)


def per_example_map(fn, X, Y, chunk):
    """fn(x, y) for every column, stacked: `jax.vmap`, or `lax.map` in chunks of `chunk`."""
    if chunk is None:
        return jax.vmap(fn, in_axes=(1, 1))(X, Y)
    return jax.lax.map(lambda xy: fn(*xy), (X.T, Y.T), batch_size=chunk)


def per_example_sum(fn, X, Y, chunk):
    """Σ_i fn(x_i, y_i): one `jax.vmap`, or a `lax.scan` over chunks of `chunk` examples
    that accumulates the sum, so only `chunk` per-example results exist at a time."""
    if chunk is None:
        return jax.tree.map(lambda a: jnp.sum(a, axis=0), jax.vmap(fn, in_axes=(1, 1))(X, Y))
    n = X.shape[1] // chunk
    Xc = X.reshape(X.shape[0], n, chunk).transpose(1, 0, 2)
    Yc = Y.reshape(Y.shape[0], n, chunk).transpose(1, 0, 2)

    def body(total, xy):
        part = jax.vmap(fn, in_axes=(1, 1))(*xy)
        return jax.tree.map(lambda t, a: t + jnp.sum(a, axis=0), total, part), None

    zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(fn, X[:, 0], Y[:, 0]))
    return jax.lax.scan(body, zero, (Xc, Yc))[0]


def route_first_order(quantity, chunk):
    def route(params, X, Y, key):
        m = X.shape[1]

        def grad(x, y):
            return jax.grad(example_loss)(params, x, y)

        if quantity == "gradient_gram":  # needs every g_i at once
            g = per_example_map(grad, X, Y, chunk)
            G = jnp.concatenate([x.reshape(m, -1) for x in jax.tree.leaves(g)], axis=1)
            return G @ G.T

        def moments(x, y):
            g = grad(x, y)
            return jax.tree.map(lambda a: a * a, g), g

        sq, s = per_example_sum(moments, X, Y, chunk)
        if quantity == "sum_grad_squared":
            return sq
        return jax.tree.map(lambda q, t: q / m - (t / m) ** 2, sq, s)

    return route


def sampled_labels(params, X, key):
    """ŷ ~ Cat(softmax(z)), one per example: the draw `diag_ggn(mc_samples=1)` makes."""
    Z = logits(params, X)
    c = jax.random.categorical(key, Z, axis=0, shape=(1, X.shape[1])).T[:, 0]
    return jax.nn.one_hot(c, Z.shape[0], axis=0, dtype=X.dtype)


def route_diag_ggn_mc(chunk):
    def route(params, X, Y, key):
        def g_sq(x, y):
            return jax.tree.map(lambda a: a * a, jax.grad(example_loss)(params, x, y))

        total = per_example_sum(g_sq, X, sampled_labels(params, X, key), chunk)
        return jax.tree.map(lambda t: t / X.shape[1], total)

    return route


def loss_hessian_sqrt(z):
    """Columns √p_c (e_c − p) of one example: S Sᵀ = diag(p) − p pᵀ."""
    p = jax.nn.softmax(z)
    return (jnp.eye(z.shape[0]) - p[:, None]) * jnp.sqrt(p)[None, :]


def route_diag_ggn_exact(chunk):
    def route(params, X, Y, key):
        def one(x, y):
            z, vjp = jax.vjp(lambda p: logits(p, x[:, None])[:, 0], params)
            cols = jax.vmap(lambda s: vjp(s)[0], in_axes=1)(loss_hessian_sqrt(z))
            return jax.tree.map(lambda c: jnp.sum(c * c, axis=0), cols)

        return jax.tree.map(lambda t: t / X.shape[1], per_example_sum(one, X, Y, chunk))

    return route


def route_kfac(sampled: bool):
    def route(params, X, Y, key):
        return kfac_by_perturbations(params, X, Y, key if sampled else None)

    return route


def kfac_by_perturbations(params, X, Y, key):
    """kfac-jax's way to reach dZ[l]: VJPs w.r.t. zero perturbations added to every Z[l].

    The columns pushed back are the exact square root of the loss Hessian (key None) or
    p − e_ŷ at the labels `sampled_labels` draws from `key` (one sample).
    """
    L = len(ACTS)
    m = X.shape[1]

    def forward(eps):
        A, inputs = X, []
        for l in range(1, L + 1):
            inputs.append(A)
            Z = params[f"W{l}"] @ A + params[f"b{l}"] + eps[l - 1]
            A = jax.nn.relu(Z) if l < L else Z
        return Z, inputs

    eps = [jnp.zeros((params[f"W{l}"].shape[0], m), X.dtype) for l in range(1, L + 1)]
    Z, vjp, inputs = jax.vjp(forward, eps, has_aux=True)
    if key is None:
        S = jax.vmap(loss_hessian_sqrt, in_axes=1, out_axes=1)(Z)  # (n_L, m, C)
    else:
        S = (jax.nn.softmax(Z, axis=0) - sampled_labels(params, X, key))[:, :, None]
    dZs = jax.vmap(lambda s: vjp(s)[0], in_axes=2, out_axes=2)(S)  # per layer (n_l, m, C)
    out = {}
    for l, (A, dZ) in enumerate(zip(inputs, dZs, strict=True), start=1):
        A_t = jnp.concatenate([A, jnp.ones((1, m), A.dtype)], axis=0)
        D = dZ.reshape(dZ.shape[0], -1)
        out[l] = curvature.KFactors(A_t @ A_t.T / m, D @ D.T / m)
    return out


def route_ggn_vp(params, X, Y, v):
    Z, Jv = jax.jvp(lambda p: logits(p, X), (params,), (v,))
    P = jax.nn.softmax(Z, axis=0)
    HJv = P * (Jv - jnp.sum(P * Jv, axis=0, keepdims=True)) / X.shape[1]
    return jax.vjp(lambda p: logits(p, X), params)[1](HJv)[0]


def route_hvp(params, X, Y, v):
    return jax.jvp(jax.grad(jax_cost), (params, X, Y), (v, jnp.zeros_like(X), jnp.zeros_like(Y)))[1]


# --------------------------------------------------------------------------- timing


def compile_fn(fn: Callable, *args):
    return jax.jit(fn).lower(*args).compile()


def temp_mb(compiled) -> float | None:
    try:
        return compiled.memory_analysis().temp_size_in_bytes / 2**20
    except Exception:
        return None


def max_rel_err(got, want) -> float:
    g = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(got)])
    w = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(want)])
    return float(np.max(np.abs(g - w)) / np.max(np.abs(w)))


def time_rounds(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, np.ndarray]:
    """Seconds per call, in the harness's paired rounds (order reversed every other round)."""
    t = benchmark.paired_rounds(calls, rounds=rounds, calls=1)
    return {k: np.asarray(v) for k, v in t.seconds.items()}


def median_ratio(num: np.ndarray, den: np.ndarray) -> tuple[float, float, float]:
    """Median of the per-round ratios num/den and its bootstrap 95% interval (the harness's)."""
    r = benchmark.ratio_interval(list(num), list(den))
    return (r.median, r.low, r.high)


# --------------------------------------------------------------------------- one case


def chunk_size(m: int, fits: float) -> int | None:
    """None if all m examples fit, else the largest divisor of m that does (at least 1)."""
    if m <= fits:
        return None
    return max(d for d in range(1, m + 1) if m % d == 0 and d <= max(fits, 1))


def bench_case(name, dims, m, rounds, budget_mb, slow_s):
    keys = jax.random.split(jax.random.key(0), 4)
    net = mg.network(ACTS, "ce")
    params = net.init(dims, keys[0], dtype=jnp.float32)
    X = jax.random.normal(keys[1], (dims[0], m), jnp.float32)
    Y = jax.nn.one_hot(jax.random.randint(keys[2], (m,), 0, dims[-1]), dims[-1], axis=0)
    key = keys[3]
    v = jax.tree.map(lambda p: jax.random.normal(keys[3], p.shape, p.dtype), params)
    P = sum(p.size for p in params.values())
    C = dims[-1]
    per_example_mb = P * 4 / 2**20
    chunk1 = chunk_size(m, budget_mb / per_example_mb)
    chunkC = chunk_size(m, budget_mb / (C * per_example_mb))

    def ours(fn):
        return lambda p, X, Y, a: fn(net, p, X, Y)

    step = compile_fn(net.value_and_grad, params, X, Y)
    jax_step = compile_fn(jax.value_and_grad(jax_cost), params, X, Y)
    diag_mc = lambda p, X, Y, k: curvature.diag_ggn(net, p, X, Y, key=k, mc_samples=1)  # noqa: E731
    kfac_mc = lambda p, X, Y, k: curvature.kfac_factors(net, p, X, Y, key=k, mc_samples=1)  # noqa: E731
    ggn_vp = lambda p, X, Y, v: curvature.ggn_vector_product(net, p, X, Y, v)  # noqa: E731
    hvp = lambda p, X, Y, v: curvature.hessian_vector_product(net, p, X, Y, v)  # noqa: E731
    # (name, ours, route, the 4th argument, chunk of the route); routes take (p, X, Y, arg)
    quantities = [
        ("sum_grad_squared", ours(curvature.sum_grad_squared),
         route_first_order("sum_grad_squared", chunk1), key, chunk1),
        ("grad_variance", ours(curvature.grad_variance),
         route_first_order("grad_variance", chunk1), key, chunk1),
        ("gradient_gram", ours(curvature.gradient_gram),
         route_first_order("gradient_gram", chunk1), key, chunk1),
        ("diag_ggn MC(1)", diag_mc, route_diag_ggn_mc(chunk1), key, chunk1),
        ("diag_ggn exact", ours(curvature.diag_ggn), route_diag_ggn_exact(chunkC), key, chunkC),
        ("kfac_factors MC(1)", kfac_mc, route_kfac(True), key, None),
        ("kfac_factors exact", ours(curvature.kfac_factors), route_kfac(False), key, None),
        ("ggn_vector_product", ggn_vp, route_ggn_vp, v, None),
        ("hessian_vector_product", hvp, route_hvp, v, None),
        ("diag_hessian", ours(curvature.diag_hessian), None, key, None),
    ]  # fmt: skip
    rows = []
    hvp_route_ms = None
    for qname, ours_fn, route_fn, arg, chunk in quantities:
        args = (params, X, Y, arg)
        ours_c = compile_fn(ours_fn, *args)
        route_c = compile_fn(route_fn, *args) if route_fn is not None else None
        got = ours_c(*args)
        row = {"case": name, "quantity": qname, "P": P, "m": m, "chunk": chunk}
        calls = {"step": lambda: step(params, X, Y), "jax_step": lambda: jax_step(params, X, Y)}
        calls["ours"] = functools.partial(ours_c, *args)
        q_rounds = rounds
        if route_c is not None:
            row["max_rel_err"] = max_rel_err(got, route_c(*args))
            route_call = functools.partial(route_c, *args)
            once = benchmark.paired_rounds({"route": route_call}, rounds=1, calls=1)
            if once.seconds["route"][0] > slow_s:
                q_rounds = min(rounds, 3)  # a slow route: a few rounds suffice for its ratio
            if row["max_rel_err"] > TOL:
                raise AssertionError(
                    f"{name} {qname}: ours and the route disagree, {row['max_rel_err']:.2e}"
                )
            calls["route"] = functools.partial(route_c, *args)
        t = time_rounds(calls, q_rounds)
        row["rounds"] = q_rounds
        row["ms"] = {k: 1e3 * float(np.median(x)) for k, x in t.items()}
        row["x_step"] = median_ratio(t["ours"], t["step"])
        row["x_jax_step"] = median_ratio(t["ours"], t["jax_step"])
        row["temp_mb"] = {"ours": temp_mb(ours_c), "step": temp_mb(step)}
        if route_c is not None:
            row["route_over_ours"] = median_ratio(t["route"], t["ours"])
            row["temp_mb"]["route"] = temp_mb(route_c)
        if qname == "hessian_vector_product":
            hvp_route_ms = row["ms"]["route"]
        if qname == "diag_hessian" and hvp_route_ms is not None:
            # diag_hessian's rows come last: P HVPs, extrapolated from one measured HVP
            row["route_extrapolated_ms"] = P * hvp_route_ms
            row["route_over_ours_extrapolated"] = P * hvp_route_ms / row["ms"]["ours"]
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def format_row(row) -> str:
    def ratio(r):
        return f"{r[0]:6.2f} [{r[1]:.2f}, {r[2]:.2f}]"

    route = "—"
    if "route_over_ours" in row:
        route = f"{row['ms']['route']:9.2f} ms  ×{ratio(row['route_over_ours'])}"
        if row["chunk"]:
            route += f" (chunks of {row['chunk']})"
    elif "route_extrapolated_ms" in row:
        seconds, times = row["route_extrapolated_ms"] / 1e3, row["route_over_ours_extrapolated"]
        route = f"{seconds:9.0f} s   ×{times:.0f} (P HVPs, extrapolated)"
    mem = row["temp_mb"]
    mem_s = f"{mem['ours']:.0f}" if mem["ours"] is not None else "?"
    if mem.get("route") is not None:
        mem_s += f"/{mem['route']:.0f}"
    return (
        f"{row['quantity']:31s} {row['ms']['ours']:8.2f} ms  ×step {ratio(row['x_step'])}  "
        f"×jax_step {ratio(row['x_jax_step'])}  route {route}  temp MB {mem_s}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="one small case (a smoke test)")
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    p.add_argument("--budget-mb", type=float, default=512, help="per-example route memory budget")
    p.add_argument(
        "--slow-s", type=float, default=1.0, help="routes slower than this run 3 rounds only"
    )
    p.add_argument("--cases", default=None, help="comma-separated case indices (default: all)")
    p.add_argument("--json", default=None, help="write the rows as JSON lines to this file")
    args = p.parse_args()
    cases = QUICK if args.quick else CASES
    if args.cases:
        cases = [cases[int(i)] for i in args.cases.split(",")]
    dev = jax.devices()[0]
    device = f"{dev.platform}: {dev.device_kind}, {platform.processor() or platform.machine()}"
    print(
        f"# {device}; float32; ratios: median over {args.rounds} rounds [95% bootstrap]", flush=True
    )
    rows = []
    for name, dims, m in cases:
        print(f"## {name} (P = {sum(a * b + a for a, b in zip(dims[1:], dims[:-1], strict=True))})")
        rows += bench_case(name, dims, m, args.rounds, args.budget_mb, args.slow_s)
    if args.json:
        with open(args.json, "w") as f:
            for row in rows:
                f.write(json.dumps({**row, "device": device}) + "\n")
    print(
        "ratios: ×step = ours / net.value_and_grad; ×jax_step = ours / jax.value_and_grad; "
        "route ×r = route time / ours",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
