"""Benchmark: DP clipping in one backward pass, against the non-private step and jax.vmap(jax.grad).

    python bench/per_example.py --quick          # small cases, a minute on 2 cores
    python bench/per_example.py --json out.jsonl # the CPU cases
    python bench/per_example.py --gpu            # adds a 4096-wide case

Per case, float32, each variant compiled ahead of time:

| variant   | computes                                                                    |
|-----------|-----------------------------------------------------------------------------|
| `jax`     | (a) `jax.value_and_grad` of an idiomatic cost (the non-private baseline)    |
| `step`    | manualgrad's non-private step, `net.value_and_grad`                         |
| `clipped` | manualgrad's `net.clipped_grads`: (1/m) Σ_i min(1, C/‖g_i‖) g_i              |
| `vmap`    | the same clipped mean as a JAX user writes it: `jax.vmap(jax.grad(...))` of  |
|           | the idiomatic one-example cost, explicit norms and clipping                 |

C is the median per-example norm (about half the examples are clipped). Agreement is
checked before timing: clipped with C = ∞ against the step, clipped against the vmap
route. Times are paired, interleaved rounds (`manualgrad.benchmark`): step / (a),
clipped / step, and vmap / clipped, each the median of per-round ratios with its 95 %
bootstrap interval. The vmap route materialises m per-example gradients; when its
compiled temp size is over the memory budget it runs on CPU as a `lax.scan` over chunks
of examples (the table says so), and on a GPU it is not run: its temp size is reported.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

import manualgrad as mg
from manualgrad import benchmark as B

#: name, layer dims, hidden activation, output activation, loss, m
CPU_CASES = [
    ("784-1024x3-10 ce", [784, 1024, 1024, 1024, 10], "relu", "softmax", "ce", 1024),
    ("256-512x3-1 bce", [256, 512, 512, 512, 1], "relu", "sigmoid", "bce", 4096),
]
QUICK_CASES = [
    ("64-128x2-10 ce", [64, 128, 128, 10], "relu", "softmax", "ce", 256),
    ("32-64x2-1 bce", [32, 64, 64, 1], "relu", "sigmoid", "bce", 512),
]
GPU_CASE = ("1024-4096x3-1 bce", [1024, 4096, 4096, 4096, 1], "relu", "sigmoid", "bce", 8192)


def vmap_clipped(params, X, Y, clip_norm, *, activations, loss, chunk=None):
    """(1/m) Σ_i min(1, C/‖g_i‖) g_i with g_i from jax.vmap(jax.grad) of the idiomatic cost.

    With `chunk`, a `lax.scan` over blocks of `chunk` examples accumulates the clipped
    sum, so only `chunk` per-example gradients exist at a time.
    """

    def one_grad(x, y):  # ∂L_i/∂params: the cost of a batch of one example is its loss
        return jax.grad(B.idiomatic_cost)(
            params, x[:, None], y[:, None], activations=activations, loss=loss
        )

    def clipped_sum(Xc, Yc):
        g = jax.vmap(one_grad, in_axes=(1, 1))(Xc, Yc)  # leaves (k, *shape)
        sq = sum(jnp.sum(v.reshape(v.shape[0], -1) ** 2, axis=1) for v in g.values())
        s = jnp.minimum(1.0, clip_norm / jnp.maximum(jnp.sqrt(sq), 1e-30))
        return {k: jnp.tensordot(s, v, axes=1) for k, v in g.items()}

    m = X.shape[1]
    if chunk is None or chunk >= m:
        total = clipped_sum(X, Y)
    else:
        n = m // chunk
        Xc = X.reshape(X.shape[0], n, chunk).transpose(1, 0, 2)
        Yc = Y.reshape(Y.shape[0], n, chunk).transpose(1, 0, 2)

        def body(acc, xy):
            return jax.tree.map(jnp.add, acc, clipped_sum(*xy)), None

        total, _ = jax.lax.scan(body, jax.tree.map(jnp.zeros_like, params), (Xc, Yc))
    return {k: v / m for k, v in total.items()}


def make_problem(dims, hidden, out, loss, m, seed=0):
    k_p, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    acts = (hidden,) * (len(dims) - 2) + (out,)
    params = mg.network(acts, loss).init(dims, k_p)
    X = jax.random.normal(k_x, (dims[0], m), jnp.float32)
    if loss == "ce":
        Y = jax.nn.one_hot(jax.random.randint(k_y, (m,), 0, dims[-1]), dims[-1]).T
    else:
        Y = jax.random.bernoulli(k_y, 0.5, (dims[-1], m)).astype(jnp.float32)
    return params, X, Y, acts


def vmap_route(params, X, Y, C, kw, budget, log):
    """The compiled vmap route (chunked on CPU when it does not fit), its temp bytes, a note."""
    n_params = sum(v.size for v in params.values())
    m = X.shape[1]

    def build(chunk):
        return B.aot_compile(lambda p, X, Y, C: vmap_clipped(p, X, Y, C, chunk=chunk, **kw),
                             params, X, Y, C)  # fmt: skip

    try:
        full = build(None)
    except jax.errors.JaxRuntimeError as err:  # XLA cannot even plan it (GPU autotuning OOM)
        reason = str(err).splitlines()[0][:60]
        gib = 4 * n_params * m / 2**30
        note = f"not run: does not compile ({reason}…); g_i alone {gib:.0f} GiB"
        log(f"  vmap route: {note}")
        return None, None, note
    full_temp = B.temp_bytes(full)
    if full_temp is None or full_temp <= budget:
        return full, full_temp, ""
    if jax.default_backend() != "cpu":
        return None, full_temp, f"not run: temp {full_temp / 2**30:.1f} GiB > device memory"
    per_example = 4 * n_params * 3  # g_i, its square, its scaled copy
    chunk = max(1, min(2 ** int(math.log2(max(1, budget // per_example))), m))
    while m % chunk:
        chunk //= 2
    exe = build(chunk)
    note = f"lax.scan over chunks of {chunk}; unchunked temp {full_temp / 2**30:.1f} GiB"
    return exe, B.temp_bytes(exe), note


def run_case(case, *, budget, rounds, vmap_rounds, tol, log):
    name, dims, hidden, out, loss, m = case
    params, X, Y, acts = make_problem(dims, hidden, out, loss, m)
    kw = {"activations": acts, "loss": loss}
    log(f"[bold]{name}[/bold]: {sum(v.size for v in params.values()) / 1e6:.2f} M params, m = {m}")

    net = mg.network(acts, loss)
    step = B.aot_compile(net.value_and_grad, params, X, Y)
    base = B.aot_compile(B.idiomatic_value_and_grad(acts, loss), params, X, Y)
    clip = B.aot_compile(net.clipped_grads, params, X, Y, jnp.float32(1.0))
    norms = jax.jit(net.per_example_norms)(params, X, Y)
    C = jnp.median(norms).astype(jnp.float32)
    vmap_exe, vmap_temp, note = vmap_route(params, X, Y, C, kw, budget, log)

    # agreement before timing
    checks = {
        "step vs (a)": B.max_rel_err(step(params, X, Y), base(params, X, Y)),
        "clipped(C=inf) vs step": B.max_rel_err(
            clip(params, X, Y, jnp.float32(1e30)), step(params, X, Y)[1]
        ),
    }
    if vmap_exe is not None:
        checks["clipped vs vmap"] = B.max_rel_err(clip(params, X, Y, C), vmap_exe(params, X, Y, C))
    B.check_agreement(name, checks, tol, log)

    run_step = lambda: step(params, X, Y)  # noqa: E731
    run_clip = lambda: clip(params, X, Y, C)  # noqa: E731
    step_vs_jax = B.paired_ratio(run_step, lambda: base(params, X, Y), rounds=rounds)
    clip_vs_step = B.paired_ratio(run_clip, run_step, rounds=rounds)
    row = {
        "kind": "case", "case": name, "dims": dims, "m": m, "loss": loss,
        "step_ms": step_vs_jax.ms, "jax_ms": step_vs_jax.baseline_ms,
        "clipped_ms": clip_vs_step.ms,
        "step_vs_jax": step_vs_jax.as_json(), "clipped_vs_step": clip_vs_step.as_json(),
        "temp_bytes": {"jax": B.temp_bytes(base), "step": B.temp_bytes(step),
                       "clipped": B.temp_bytes(clip), "vmap": vmap_temp},
        "vmap_note": note, "checks": checks,
    }  # fmt: skip
    if vmap_exe is not None:
        vmap_vs_clip = B.paired_ratio(
            lambda: vmap_exe(params, X, Y, C), run_clip, rounds=vmap_rounds
        )
        row |= {"vmap_ms": vmap_vs_clip.ms, "vmap_vs_clipped": vmap_vs_clip.as_json()}
    return row


def _ratio(r, spec=".2f"):
    if r is None:
        return "—"
    return f"{r['median']:{spec}} [{r['low']:{spec}},{r['high']:{spec}}]"


def print_table(rows, info):
    from rich.console import Console

    table = B.results_table(
        "per-example clipping, float32: medians of per-round ratios [95% CI]; "
        "(a) = jax.grad of an idiomatic cost; temp: (a)/step/clipped",
        f"{info['device']}, {info['cores']} cores, {info['date']}",
        ("case @m", "step ms", "step/(a)", "clipped/step", "vmap/clipped", "temp MiB a/s/c"),
    )
    for r in rows:
        t = r["temp_bytes"]
        mib = "/".join("—" if t[k] is None else f"{t[k] / 2**20:.0f}"
                       for k in ("jax", "step", "clipped"))  # fmt: skip
        table.add_row(
            f"{r['case'].split()[0]} @{r['m']}", f"{r['step_ms']:.1f}", _ratio(r["step_vs_jax"]),
            _ratio(r["clipped_vs_step"]), _ratio(r.get("vmap_vs_clipped"), ".0f"), mib,
        )  # fmt: skip
    Console(width=100).print(table)
    for r in rows:
        if r["vmap_note"]:
            print(f"  {r['case']}: vmap route {r['vmap_note']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cases, few rounds")
    parser.add_argument("--gpu", action="store_true", help=f"add the case {GPU_CASE[0]}")
    parser.add_argument("--json", type=Path, help="write the JSON lines to this file")
    parser.add_argument("--rounds", type=int, default=None, help="paired rounds (default 21)")
    parser.add_argument("--vmap-rounds", type=int, default=3, help="rounds of the vmap route")
    parser.add_argument("--budget-gib", type=float, default=None,
                        help="memory budget of the vmap route (default: 80 %% of device "
                             "memory, or 4 GiB on CPU)")  # fmt: skip
    args = parser.parse_args(argv)

    from rich.console import Console

    console = Console(stderr=True)
    dev_mem = B.device_memory_bytes()
    if args.budget_gib:
        budget = int(args.budget_gib * 2**30)
    else:
        budget = int(0.8 * dev_mem) if dev_mem else 4 * 2**30
    tol = 1e-3 if jax.default_backend() == "cpu" else 3e-2  # float32; GPUs default to TF32
    rounds = args.rounds or (5 if args.quick else 21)
    cases = QUICK_CASES if args.quick else CPU_CASES
    if args.gpu:
        cases = [*cases, GPU_CASE]
    info = {"kind": "machine", **B.machine(), "rounds": rounds, "vmap_rounds": args.vmap_rounds}
    lines = [json.dumps(info)]
    rows = []
    for case in cases:
        row = run_case(case, budget=budget, rounds=rounds, vmap_rounds=args.vmap_rounds,
                       tol=tol, log=console.print)  # fmt: skip
        rows.append(row)
        lines.append(json.dumps(row))
        if args.json:  # each case as soon as it exists, in case a later one dies
            args.json.write_text("\n".join(lines) + "\n")
    print_table(rows, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
