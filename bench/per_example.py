"""Benchmark: DP clipping in one backward pass vs the non-private step vs jax.vmap(jax.grad).

    PYTHONPATH=src python bench/per_example.py [--quick] [--gpu] [--json FILE]

For each case it AOT-compiles three float32 variants, checks that they agree, then
times them (median after warm-up, `block_until_ready`) and reads XLA's
`memory_analysis().temp_size_in_bytes`:

| variant   | computes                                                   |
|-----------|------------------------------------------------------------|
| `step`    | `mg.value_and_grad` (the non-private step)                 |
| `clipped` | `mg.clipped_grads`: (1/m) Σ_i min(1, C/‖g_i‖) g_i          |
| `vmap`    | the same by `jax.vmap(jax.grad(one-example cost))`, explicit norms and clipping |

C is the median per-example norm (half the examples are clipped). The vmap route
materialises m per-example gradients; when that does not fit (its compiled temp size
is over the memory budget) it runs on CPU as a `lax.scan` over chunks of examples
(the table says so), and on a GPU it is not run at all: its temp size is reported.
Targets (issue 3): clipped ≤ 1.10 × step time and ≤ 1.2 × step temp memory, and
≥ 50 × faster than the vmap route on CPU.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import aot_compile, device_memory_bytes, median_time, temp_bytes

STATIC = mg.functional.STATIC_ARGNAMES

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
    """(1/m) Σ_i min(1, C/‖g_i‖) g_i with g_i from jax.vmap(jax.grad) — the autodiff route.

    With `chunk`, a `lax.scan` over blocks of `chunk` examples accumulates the clipped
    sum, so only `chunk` per-example gradients exist at a time.
    """

    def one_grad(x, y):  # ∂L_i/∂params: the cost of a batch of one example is its loss
        return jax.grad(mg.cost)(params, x[:, None], y[:, None], activations=activations,
                                 loss=loss)  # fmt: skip

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
            part = clipped_sum(*xy)
            return jax.tree.map(jnp.add, acc, part), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        total, _ = jax.lax.scan(body, zeros, (Xc, Yc))
    return {k: v / m for k, v in total.items()}


def rel_err(got, want) -> float:
    num = max(float(jnp.max(jnp.abs(got[k] - want[k]))) for k in want)
    den = max(float(jnp.max(jnp.abs(want[k]))) for k in want)
    return num / den


def make_problem(dims, hidden, out, loss, m, seed=0):
    k_p, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    params = mg.init_params(dims, k_p)
    X = jax.random.normal(k_x, (dims[0], m), jnp.float32)
    if loss == "ce":
        Y = jax.nn.one_hot(jax.random.randint(k_y, (m,), 0, dims[-1]), dims[-1]).T
    else:
        Y = jax.random.bernoulli(k_y, 0.5, (dims[-1], m)).astype(jnp.float32)
    acts = (hidden,) * (len(dims) - 2) + (out,)
    return params, X, Y, acts


def run_case(case, *, budget, repeat, vmap_repeat, tol, log):
    name, dims, hidden, out, loss, m = case
    params, X, Y, acts = make_problem(dims, hidden, out, loss, m)
    kw = {"activations": acts, "loss": loss}
    n_params = sum(v.size for v in params.values())
    log(f"[bold]{name}[/bold]: {n_params / 1e6:.2f} M params, m = {m}")

    step = aot_compile(mg.value_and_grad, params, X, Y, static_argnames=STATIC, **kw)
    clip = aot_compile(mg.clipped_grads, params, X, Y, clip_norm=jnp.float32(1.0),
                       static_argnames=STATIC, **kw)  # fmt: skip
    norms = jax.jit(mg.per_example_norms, static_argnames=STATIC)(params, X, Y, **kw)
    C = jnp.median(norms).astype(jnp.float32)

    vkw = dict(kw, chunk=None)
    vstatic = ("activations", "loss", "chunk")
    note = ""
    try:
        vmap_full = aot_compile(vmap_clipped, params, X, Y, C, static_argnames=vstatic, **vkw)
        full_temp = temp_bytes(vmap_full)
    except jax.errors.JaxRuntimeError as err:  # XLA cannot even plan it (e.g. GPU autotuning OOM)
        vmap_full, full_temp = None, None
        gib = 4 * n_params * m / 2**30
        reason = str(err).splitlines()[0][:60]
        note = f"not run: does not compile ({reason}…); g_i alone {gib:.0f} GiB"
        log(f"  vmap route: {note}")
    if vmap_full is None:
        vmap_exe, vmap_temp = None, None
    elif full_temp is None or full_temp <= budget:
        vmap_exe, vmap_temp = vmap_full, full_temp
    elif jax.default_backend() == "cpu":
        per_example = 4 * n_params * 3  # g_i, its square, its scaled copy
        chunk = 2 ** int(math.log2(max(1, budget // per_example)))
        chunk = max(1, min(chunk, m))
        while m % chunk:
            chunk //= 2
        vkw["chunk"] = chunk
        vmap_exe = aot_compile(vmap_clipped, params, X, Y, C, static_argnames=vstatic, **vkw)
        vmap_temp = temp_bytes(vmap_exe)
        note = f"lax.scan over chunks of {chunk}; unchunked temp {full_temp / 2**30:.1f} GiB"
    else:
        vmap_exe, vmap_temp = None, full_temp
        note = f"not run: temp {full_temp / 2**30:.1f} GiB > device memory"

    # agreement before timing
    _, g_step = step(params, X, Y)
    err_noclip = rel_err(clip(params, X, Y, clip_norm=jnp.float32(1e30)), g_step)
    g_clip = clip(params, X, Y, clip_norm=C)
    checks = {"clipped(C=inf) vs step": err_noclip}
    if vmap_exe is not None:
        checks["clipped vs vmap"] = rel_err(g_clip, vmap_exe(params, X, Y, C))
    for what, err in checks.items():
        log(f"  agreement {what}: max rel err {err:.2e} (tol {tol:.0e})")
        if not err <= tol:
            raise SystemExit(f"{name}: {what} disagree: {err:.3e} > {tol}")

    rows = []
    t_step = median_time(lambda: step(params, X, Y), repeat=repeat)
    t_clip = median_time(lambda: clip(params, X, Y, clip_norm=C), repeat=repeat)
    t_vmap = (
        median_time(lambda: vmap_exe(params, X, Y, C), repeat=vmap_repeat, warmup=1)
        if vmap_exe is not None
        else None
    )
    temps = {"step": temp_bytes(step), "clipped": temp_bytes(clip), "vmap": vmap_temp}
    for variant, t in (("step", t_step), ("clipped", t_clip), ("vmap", t_vmap)):
        rows.append({
            "case": name, "dims": dims, "m": m, "backend": jax.default_backend(),
            "device": str(jax.devices()[0].device_kind), "variant": variant,
            "median_s": t, "time_vs_step": None if t is None else t / t_step,
            "temp_bytes": temps[variant],
            "temp_vs_step": (temps[variant] / temps["step"]
                             if temps[variant] is not None and temps["step"] else None),
            "note": note if variant == "vmap" else "",
            "checks": checks if variant == "clipped" else None,
        })  # fmt: skip
    if t_vmap is not None:
        rows[2]["vmap_vs_clipped"] = t_vmap / t_clip
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--gpu", action="store_true", help=f"add the case {GPU_CASE[0]}")
    parser.add_argument("--json", type=Path, help="also write the JSON lines to this file")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs of step/clipped")
    parser.add_argument("--vmap-repeat", type=int, default=3, help="timed runs of vmap")
    parser.add_argument("--budget-gib", type=float, default=None,
                        help="memory budget of the vmap route (default: device memory, or "
                             "4 GiB on CPU)")  # fmt: skip
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    backend = jax.default_backend()
    dev_mem = device_memory_bytes()
    budget = (
        int(args.budget_gib * 2**30)
        if args.budget_gib
        else (int(0.8 * dev_mem) if dev_mem else 4 * 2**30)
    )
    tol = 1e-3 if backend == "cpu" else 3e-2  # float32; GPUs default to TF32 matmuls
    cases = QUICK_CASES if args.quick else CPU_CASES
    if args.gpu:
        cases = [*cases, GPU_CASE]
    rows = []
    for case in cases:
        case_rows = run_case(case, budget=budget, repeat=args.repeat,
                             vmap_repeat=args.vmap_repeat, tol=tol, log=console.print)  # fmt: skip
        for r in case_rows:  # each case's rows as soon as they exist, in case a later one dies
            console.print(json.dumps(r), soft_wrap=True)
        rows += case_rows

    table = Table(title=f"per-example clipping, float32, {backend} ({rows[0]['device']})")
    for col in ("case", "m", "variant", "median ms", "× step", "temp MiB", "temp × step", "note"):
        table.add_column(col)
    for r in rows:
        fmt = lambda v, f: "—" if v is None else format(v, f)  # noqa: E731
        table.add_row(
            r["case"], str(r["m"]), r["variant"], fmt(r["median_s"] and 1e3 * r["median_s"], ".1f"),
            fmt(r["time_vs_step"], ".2f"),
            fmt(r["temp_bytes"] and r["temp_bytes"] / 2**20, ".1f"),
            fmt(r["temp_vs_step"], ".2f"),
            (f"{r['vmap_vs_clipped']:.0f}× clipped. " if "vmap_vs_clipped" in r else "")
            + r["note"],
        )  # fmt: skip
    Console(width=150).print(table)
    lines = [json.dumps(r) for r in rows]
    print("\n".join(lines))
    if args.json:
        args.json.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
