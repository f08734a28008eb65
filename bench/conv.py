"""Benchmark: manualgrad's conv step and clipped step against lax, flax and equinox CNNs.

    PYTHONPATH=src python bench/conv.py --quick          # float32, cifar at m = 64, 5 rounds
    PYTHONPATH=src python bench/conv.py --json bench/results/cpu_conv_DATE.jsonl

Two CNNs (softmax cross-entropy over 10 classes, relu convolutions, max pools):

| case    | image      | layers                                                        | m   |
|---------|------------|---------------------------------------------------------------|-----|
| digits  | 8×8×1      | conv 8@3×3 pad 1, max 2, conv 16@3×3 pad 1, max 2, dense 10    | 256 |
| cifar   | 32×32×3    | conv 32@3×3 pad 1, max 2, conv 64@3×3 pad 1, max 2,           | 256 |
|         |            | conv 64@3×3 pad 1, max 2, dense 10                            |     |

Per case and dtype (float32 at the default matmul precision; float64 unless
`--dtypes float32`), every variant is compiled ahead of time from the same initial
values, each in its natural layout, converted once outside the timed step:

| variant   | one call computes                                                            |
|-----------|------------------------------------------------------------------------------|
| `step`    | manualgrad's `net.value_and_grad`, images (H, W, C, m), W (C, f, f, C_prev)   |
| `lax`     | `jax.value_and_grad` of `lax.conv_general_dilated` + `lax.reduce_window` +   |
|           | an optax loss, as a JAX user writes it: NHWC images, HWIO kernels            |
| `flax`    | the same network as a `flax.nnx.Sequential` (`nnx.Conv`, `nnx.max_pool`,    |
|           | `nnx.Linear`), `nnx.split` once, `jax.value_and_grad` of merge-and-apply      |
| `eqx`     | the same as an `eqx.nn.Sequential` (`Conv2d`, `MaxPool2d`, `Linear`) under     |
|           | `jax.vmap` over CHW examples, `eqx.filter_value_and_grad`                     |
| `clipped` | manualgrad's `net.clipped_grads`: (1/m) Σ_i min(1, C/‖g_i‖) g_i, one backward |
| `vmap`    | the same clipped mean by `jax.vmap(jax.grad)` of the lax one-example loss,    |
|           | explicit norms and clipping (materialises the m per-example gradients); not   |
|           | run where its compiled temp memory exceeds --budget-gib (float64 on CPU)       |

C is the median per-example norm (about half the examples are clipped). Before timing,
every baseline's gradient (mapped back to manualgrad's layout) is checked against the
step's, clipped with C = ∞ against the step, and clipped against vmap. Then each ratio
is one paired rotation of interleaved rounds whose order alternates
(`manualgrad.benchmark.paired_rounds`): step/lax, step/flax, step/eqx (target ≤ 1.0),
clipped/step (target ≤ 1.2), vmap/clipped (for scale), each the median of per-round
ratios with its 95 % bootstrap interval. The table also gives XLA's temporary memory of
every compiled step (`memory_analysis().temp_size_in_bytes`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

import manualgrad as mg
from manualgrad import benchmark as B

L = mg.layers
N_CLASSES = 10

#: name, image (H, W, C), conv layers (channels, kernel, pad), m; each conv is followed by
#: a 2×2 max pool, the last pool by Flatten and Dense(10, softmax)
CASES = {
    "digits": ((8, 8, 1), [(8, 3, 1), (16, 3, 1)], 256),
    "cifar": ((32, 32, 3), [(32, 3, 1), (64, 3, 1), (64, 3, 1)], 256),
}
QUICK_M = {"digits": 256, "cifar": 64}


def layers_of(convs) -> list:
    """The manualgrad layers of a case: conv-relu, max pool 2, …, flatten, dense softmax."""
    out = []
    for channels, kernel, pad in convs:
        out += [L.Conv2D(channels, kernel, pad=pad), L.MaxPool2D(2)]
    return [*out, L.Flatten(), L.Dense(N_CLASSES, "softmax")]


def problem(image, convs, m, dtype, seed=0):
    """(net, params, X (H, W, C, m), Y one-hot (10, m)) with He-initialised params."""
    net = mg.network(layers_of(convs), "ce")
    k_p, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    params = net.init(image, k_p, dtype=dtype)
    X = jax.random.normal(k_x, (*image, m), dtype)
    Y = jax.nn.one_hot(jax.random.randint(k_y, (m,), 0, N_CLASSES), N_CLASSES, dtype=dtype).T
    return net, params, X, Y


# ---------------------------------------------------------------------------------------
# Baselines: what a user writes instead, each in its natural layout
# ---------------------------------------------------------------------------------------


def lax_params(params, n_conv):
    """manualgrad's params in lax/flax's layout: kernels HWIO (f, f, C_prev, C), biases (C,),
    the dense weight as a (features, classes) kernel (NHWC flattens in manualgrad's order)."""
    out = {}
    for l in range(1, n_conv + 1):
        out[f"W{l}"] = jnp.transpose(params[f"W{l}"], (1, 2, 3, 0))
        out[f"b{l}"] = params[f"b{l}"][:, 0]
    d = n_conv + 1
    out[f"W{d}"], out[f"b{d}"] = params[f"W{d}"].T, params[f"b{d}"][:, 0]
    return out


def from_lax_grads(g, n_conv):
    """The inverse of :func:`lax_params` (for the gradients)."""
    out = {}
    for l in range(1, n_conv + 1):
        out[f"W{l}"] = jnp.transpose(g[f"W{l}"], (3, 0, 1, 2))
        out[f"b{l}"] = g[f"b{l}"][:, None]
    d = n_conv + 1
    out[f"W{d}"], out[f"b{d}"] = g[f"W{d}"].T, g[f"b{d}"][:, None]
    return out


def lax_logits(p, x, convs):
    """NHWC images x (m, H, W, C) -> logits (m, 10): lax.conv, relu, reduce_window max."""
    for l, (_, _, pad) in enumerate(convs, start=1):
        x = jax.lax.conv_general_dilated(
            x, p[f"W{l}"], (1, 1), ((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )  # fmt: skip
        x = jax.nn.relu(x + p[f"b{l}"])
        x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    d = len(convs) + 1
    return x.reshape(x.shape[0], -1) @ p[f"W{d}"] + p[f"b{d}"]


def lax_value_and_grad(convs):
    def cost(p, x, y):
        return jnp.mean(optax.losses.softmax_cross_entropy(lax_logits(p, x, convs), y))

    return jax.value_and_grad(cost)


def flax_step(params, convs, image, dtype):
    """(compiled step, state, back-to-manualgrad-grads) of a flax.nnx CNN with our init."""
    from flax import nnx

    rngs = nnx.Rngs(0)
    mods, c_prev = [], image[2]

    def pool(x):
        return nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))

    def flatten(x):
        return x.reshape(x.shape[0], -1)

    for channels, kernel, pad in convs:
        conv = nnx.Conv(c_prev, channels, (kernel, kernel), padding=((pad, pad), (pad, pad)),
                        rngs=rngs, dtype=dtype, param_dtype=dtype)  # fmt: skip
        mods += [conv, nnx.relu, pool]
        c_prev = channels
    n_conv = len(convs)
    W_d = params[f"W{n_conv + 1}"]
    dense = nnx.Linear(W_d.shape[1], N_CLASSES, rngs=rngs, dtype=dtype, param_dtype=dtype)
    model = nnx.Sequential(*mods, flatten, dense)
    p = lax_params(params, n_conv)
    convs_m = [m for m in model.layers if isinstance(m, nnx.Conv)]
    for l, conv in enumerate(convs_m, start=1):
        conv.kernel[...], conv.bias[...] = p[f"W{l}"], p[f"b{l}"]
    dense.kernel[...], dense.bias[...] = p[f"W{n_conv + 1}"], p[f"b{n_conv + 1}"]
    graphdef, state = nnx.split(model)

    def cost(state, x, y):
        return jnp.mean(optax.losses.softmax_cross_entropy(nnx.merge(graphdef, state)(x), y))

    def to_ours(g_state):
        g_model = nnx.merge(graphdef, g_state)
        g_convs = [m for m in g_model.layers if isinstance(m, nnx.Conv)]
        g_dense = g_model.layers[-1]
        g = {}
        for l, conv in enumerate(g_convs, start=1):
            g[f"W{l}"], g[f"b{l}"] = conv.kernel[...], conv.bias[...]
        g[f"W{n_conv + 1}"], g[f"b{n_conv + 1}"] = g_dense.kernel[...], g_dense.bias[...]
        return from_lax_grads(g, n_conv)

    return jax.value_and_grad(cost), state, to_ours


def eqx_step(params, convs, image, dtype):
    """(step function, model, back-to-manualgrad-grads) of an equinox CNN with our init.

    Equinox convolves one CHW example; the batch is `jax.vmap` over (m, C, H, W).
    """
    import equinox as eqx

    key = jax.random.key(0)
    mods, c_prev = [], image[2]
    for channels, kernel, pad in convs:
        key, k = jax.random.split(key)
        mods += [
            eqx.nn.Conv2d(c_prev, channels, kernel, padding=pad, key=k, dtype=dtype),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.MaxPool2d(2, 2),
        ]
        c_prev = channels
    n_conv, d = len(convs), len(convs) + 1
    W_d = params[f"W{d}"]
    mods += [eqx.nn.Lambda(jnp.ravel), eqx.nn.Linear(W_d.shape[1], N_CLASSES, key=key, dtype=dtype)]
    model = eqx.nn.Sequential(mods)
    # manualgrad flattens (H, W, C), equinox (C, H, W): permute the dense weight's columns
    hwc = _flat_shape(image, convs)

    def dense_to_eqx(W):
        return W.reshape(N_CLASSES, *hwc).transpose(0, 3, 1, 2).reshape(N_CLASSES, -1)

    def dense_from_eqx(W):
        W = W.reshape(N_CLASSES, hwc[2], hwc[0], hwc[1])
        return W.transpose(0, 2, 3, 1).reshape(N_CLASSES, -1)

    conv_idx = [3 * k for k in range(n_conv)]
    new = []
    for l in range(1, n_conv + 1):
        new += [params[f"W{l}"].transpose(0, 3, 1, 2), params[f"b{l}"][:, :, None]]
    new += [dense_to_eqx(W_d), params[f"b{d}"][:, 0]]

    def where(m):
        out = []
        for i in conv_idx:
            out += [m.layers[i].weight, m.layers[i].bias]
        return [*out, m.layers[-1].weight, m.layers[-1].bias]

    model = eqx.tree_at(where, model, new)

    def cost(model, x, y):
        return jnp.mean(optax.losses.softmax_cross_entropy(jax.vmap(model)(x), y))

    def to_ours(g_model):
        leaves = where(g_model)
        g = {}
        for l in range(1, n_conv + 1):
            W, b = leaves[2 * (l - 1)], leaves[2 * (l - 1) + 1]
            g[f"W{l}"], g[f"b{l}"] = W.transpose(0, 2, 3, 1), b[:, :, 0]
        g[f"W{d}"], g[f"b{d}"] = dense_from_eqx(leaves[-2]), leaves[-1][:, None]
        return g

    return eqx.filter_value_and_grad(cost), model, to_ours


def _flat_shape(image, convs):
    H, W = image[0], image[1]
    for _, kernel, pad in convs:
        H, W = (H + 2 * pad - kernel + 1) // 2, (W + 2 * pad - kernel + 1) // 2
    return (H, W, convs[-1][0])


def vmap_clipped(convs):
    """(p, x (m, H, W, C), y (m, 10), C) -> (1/m) Σ_i min(1, C/‖g_i‖) g_i by vmap(grad)."""

    def one_loss(p, x, y):  # one example x (H, W, C)
        return optax.losses.softmax_cross_entropy(lax_logits(p, x[None], convs)[0], y)

    def fn(p, x, y, clip):
        g = jax.vmap(jax.grad(one_loss), in_axes=(None, 0, 0))(p, x, y)  # (m, *shape) leaves
        sq = sum(jnp.sum(v.reshape(v.shape[0], -1) ** 2, axis=1) for v in g.values())
        s = jnp.minimum(1.0, clip / jnp.maximum(jnp.sqrt(sq), 1e-30))
        return {k: jnp.tensordot(s, v, axes=1) / x.shape[0] for k, v in g.items()}

    return fn


# ---------------------------------------------------------------------------------------
# One case
# ---------------------------------------------------------------------------------------


def run_case(name, image, convs, m, dtype, *, rounds, vmap_rounds, budget, log):
    n_conv = len(convs)
    net, params, X, Y = problem(image, convs, m, dtype)
    n_params = sum(v.size for v in params.values())
    log(f"[bold]{name}[/bold] {image} m = {m}, {jnp.dtype(dtype).name}: {n_params:,} params")
    x_nhwc, y_rows = jnp.moveaxis(X, -1, 0), Y.T  # converted once, outside timing
    x_nchw = jnp.transpose(X, (3, 2, 0, 1))
    p_lax = lax_params(params, n_conv)
    clip_inf = jnp.asarray(1e30, dtype)

    exes = {}
    exes["step"] = B.aot_compile(net.value_and_grad, params, X, Y)
    exes["lax"] = B.aot_compile(lax_value_and_grad(convs), p_lax, x_nhwc, y_rows)
    flax_fn, state, flax_back = flax_step(params, convs, image, dtype)
    exes["flax"] = B.aot_compile(flax_fn, state, x_nhwc, y_rows)
    eqx_fn, model, eqx_back = eqx_step(params, convs, image, dtype)
    import equinox as eqx

    dyn, static = eqx.partition(model, eqx.is_array)

    def eqx_pure(dyn, x, y):
        return eqx_fn(eqx.combine(dyn, static), x, y)

    exes["eqx"] = B.aot_compile(eqx_pure, dyn, x_nchw, y_rows)
    exes["clipped"] = B.aot_compile(net.clipped_grads, params, X, Y, clip_inf)
    C = jnp.median(jax.jit(net.per_example_norms)(params, X, Y)).astype(dtype)
    exes["vmap"] = B.aot_compile(vmap_clipped(convs), p_lax, x_nhwc, y_rows, C)
    vmap_temp = B.temp_bytes(exes["vmap"])
    vmap_note = ""
    if vmap_temp is not None and vmap_temp > budget:  # e.g. float64 on CPU: a naive lowering
        vmap_note = f"not run: temp {vmap_temp / 2**30:.1f} GiB > budget {budget / 2**30:.1f} GiB"
        log(f"  vmap route {vmap_note}")

    calls = {
        "step": lambda: exes["step"](params, X, Y),
        "lax": lambda: exes["lax"](p_lax, x_nhwc, y_rows),
        "flax": lambda: exes["flax"](state, x_nhwc, y_rows),
        "eqx": lambda: exes["eqx"](dyn, x_nchw, y_rows),
        "clipped": lambda: exes["clipped"](params, X, Y, C),
        "vmap": lambda: exes["vmap"](p_lax, x_nhwc, y_rows, C),
    }

    # agreement before timing
    cost, g_step = calls["step"]()
    c_lax, g_lax = calls["lax"]()
    _, g_flax = calls["flax"]()
    _, g_eqx = eqx_fn(model, x_nchw, y_rows)
    checks = {
        "cost step vs lax": abs(float(cost) - float(c_lax)) / abs(float(c_lax)),
        "step vs lax": B.max_rel_err(g_step, from_lax_grads(g_lax, n_conv)),
        "step vs flax": B.max_rel_err(g_step, flax_back(g_flax)),
        "step vs eqx": B.max_rel_err(g_step, eqx_back(g_eqx)),
        "clipped(C=inf) vs step": B.max_rel_err(exes["clipped"](params, X, Y, clip_inf), g_step),
    }
    if not vmap_note:
        checks["clipped vs vmap"] = B.max_rel_err(
            calls["clipped"](), from_lax_grads(calls["vmap"](), n_conv)
        )
    # float32: at the CIFAR-like shape (m = 256) our W1 and W2 gradients differ from lax's
    # by 1.1e-3 and 1.7e-3 relative (ours in float32 against ours in float64 alike; lax 5e-7);
    # float64 agrees to 2e-14. Not accumulation (a dot of the same length is accurate to
    # 1e-6); likely max-pool windows whose argmax float32 rounding flips (see RESULTS.md)
    tol = 3e-3 if dtype == jnp.float32 else 1e-10
    if jax.default_backend() != "cpu" and dtype == jnp.float32:
        tol = 3e-2  # GPUs contract float32 in TF32 by default
    B.check_agreement(name, checks, tol, log)

    def pair(a, b, n):
        p = B.paired_ratio(calls[a], calls[b], rounds=n)
        times = f"{p.ms:.2f} / {p.baseline_ms:.2f} ms, {p.calls} calls/round"
        log(f"  {a}/{b}: {p.ratio.text()} ({times})")
        return {**p.as_json(), "ms": {a: p.ms, b: p.baseline_ms}}

    ratios = {
        "step/lax": pair("step", "lax", rounds),
        "step/flax": pair("step", "flax", rounds),
        "step/eqx": pair("step", "eqx", rounds),
        "clipped/step": pair("clipped", "step", rounds),
    }
    if not vmap_note:
        ratios["vmap/clipped"] = pair("vmap", "clipped", vmap_rounds)
    return {
        "kind": "case",
        "case": name,
        "image": list(image),
        "convs": convs,
        "m": m,
        "dtype": jnp.dtype(dtype).name,
        "params": int(n_params),
        "clip_norm": float(C),
        "ratios": ratios,
        "temp_bytes": {k: B.temp_bytes(e) for k, e in exes.items()},
        "xla_flops": {k: B.xla_flops(e) for k, e in exes.items()},
        "checks": checks,
        "vmap_note": vmap_note,
    }


def _r(r):
    return f"{r['median']:.2f} [{r['low']:.2f},{r['high']:.2f}]"


def print_table(rows, info):
    from rich.console import Console

    table = B.results_table(
        "conv steps: medians of per-round ratios [95% CI]",
        f"{info['device']}, {info['cores']} cores, load {info['load_avg']}, {info['date']}",
        ("case", "step ms", "step/lax", "step/flax", "step/eqx", "clip/step", "vmap/clip"),
    )
    for r in rows:
        ratios = r["ratios"]
        table.add_row(
            f"{r['case']} {r['dtype'][-2:]} @{r['m']}",
            f"{ratios['step/lax']['ms']['step']:.2f}",
            *(_r(ratios[k]) for k in ("step/lax", "step/flax", "step/eqx", "clipped/step")),
            f"{ratios['vmap/clipped']['median']:.1f}" if "vmap/clipped" in ratios else "—",
        )
    variants = ("step", "lax", "flax", "eqx", "clipped", "vmap")
    mem = B.results_table(
        "temp memory of each compiled step, MiB (XLA's GFLOP)",
        "XLA memory_analysis().temp_size_in_bytes and cost_analysis()['flops']",
        ("case", *variants),
    )
    for r in rows:
        t, f = r["temp_bytes"], r["xla_flops"]
        mem.add_row(
            f"{r['case']} {r['dtype'][-2:]} @{r['m']}",
            *(("—" if t[k] is None else f"{t[k] / 2**20:.1f}")
              + ("" if f[k] is None else f" ({f[k] / 1e9:.2f})") for k in variants),
        )  # fmt: skip
    console = Console(width=120)
    console.print(table)
    console.print(mem)
    for r in rows:
        if r["vmap_note"]:
            print(f"  {r['case']} {r['dtype']}: vmap route {r['vmap_note']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="float32 only, cifar at m = 64, 5 rounds")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=None, help="paired rounds (default 21)")
    parser.add_argument("--vmap-rounds", type=int, default=None, help="(default: 5)")
    parser.add_argument("--cases", default=",".join(CASES), help="(default: digits,cifar)")
    parser.add_argument("--dtypes", default=None, help="(default: float32,float64)")
    parser.add_argument("--json", type=Path, help="write the JSON lines to this file")
    parser.add_argument("--budget-gib", type=float, default=None,
                        help="largest temp memory of the vmap route that is run (default: 80 %% "
                             "of device memory, or 4 GiB on CPU)")  # fmt: skip
    args = parser.parse_args(argv)

    from rich.console import Console

    log = Console(stderr=True).print
    rounds = args.rounds or (5 if args.quick else 21)
    vmap_rounds = args.vmap_rounds or (3 if args.quick else 5)
    dtypes = (args.dtypes or ("float32" if args.quick else "float32,float64")).split(",")
    dev_mem = B.device_memory_bytes()
    if args.budget_gib:
        budget = int(args.budget_gib * 2**30)
    else:
        budget = int(0.8 * dev_mem) if dev_mem else 4 * 2**30
    info = {"kind": "machine", **B.machine(), "rounds": rounds, "vmap_rounds": vmap_rounds}
    lines, rows = [json.dumps(info)], []
    for dtype_name in dtypes:
        with jax.enable_x64(dtype_name == "float64"):
            dtype = jnp.dtype(dtype_name)
            for name in args.cases.split(","):
                image, convs, m = CASES[name]
                m = QUICK_M[name] if args.quick else m
                row = run_case(name, image, convs, m, dtype, rounds=rounds,
                               vmap_rounds=vmap_rounds, budget=budget, log=log)  # fmt: skip
                rows.append(row)
                lines.append(json.dumps(row))
                if args.json:  # each case as soon as it exists, in case a later one dies
                    args.json.write_text("\n".join(lines) + "\n")
    print_table(rows, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
