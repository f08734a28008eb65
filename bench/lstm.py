"""Benchmark: manualgrad's LSTM step and clipped step against a lax.scan LSTM and flax's LSTM.

    PYTHONPATH=src python bench/lstm.py --quick         # small cases, 5 rounds
    PYTHONPATH=src python bench/lstm.py --json bench/results/cpu_lstm_DATE.jsonl

Two many-to-one classifiers (softmax cross-entropy over 10 classes, float32):

| case  | input                                 | layers                                   | m   |
|-------|---------------------------------------|------------------------------------------|-----|
| names | char ids (T, m), T = 12, V = the names | Embedding(V, 32) → LSTM(128) → Dense(10) | 256 |
|       | alphabet (random ids)                 |                                          |     |
| float | x (n_x, T, m), n_x = 64, T = 32       | LSTM(256) → Dense(10)                    | 256 |

Every variant is compiled ahead of time from the same initial values, each in its
natural layout, converted once outside the timed step:

| variant   | one call computes                                                              |
|-----------|--------------------------------------------------------------------------------|
| `step`    | manualgrad's `net.value_and_grad`: sequences (n_x, T, m), gates W_g (n_a, n_a+n_x) |
| `lax`     | `jax.value_and_grad` of a `lax.scan` LSTM as a JAX user writes it: time-major   |
|           | x (T, m, n_x), stacked kernels (n_x, 4n_a) and (n_a, 4n_a), `jax.nn` gates,      |
|           | `optax.softmax_cross_entropy_with_integer_labels`                               |
| `flax`    | `flax.linen.RNN(OptimizedLSTMCell)` + `nn.Embed`/`nn.Dense`, batch-major         |
|           | (m, T, n_x), `jax.value_and_grad` of `model.apply`                              |
| `clipped` | manualgrad's `net.clipped_grads`: (1/m) Σ_i min(1, C/‖g_i‖) g_i, one backward   |
| `vmap`    | the same clipped mean by `jax.vmap(jax.grad)` of the lax one-example loss,      |
|           | explicit norms and clipping (materialises the m per-example gradients)          |

C is the median per-example norm (about half the examples are clipped). Before timing,
every baseline's gradient (mapped back to manualgrad's layout) is checked against the
step's, clipped with C = ∞ against the step, and clipped against vmap. Each ratio is one
paired rotation of interleaved rounds whose order alternates
(`manualgrad.benchmark.paired_rounds`): step/lax and step/flax (target ≤ 1.0),
clipped/step (target ≤ 1.1; Opacus' ghost clipping reports 1.19–1.40), vmap/clipped (for
scale); each the median of per-round ratios with its 95 % bootstrap interval. The table
also gives XLA's temporary memory of every compiled step
(`memory_analysis().temp_size_in_bytes`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import manualgrad as mg
from manualgrad import benchmark as B

L = mg.layers
N_CLASSES = 10
GATES = "fico"  # manualgrad's order of the stacked gates; flax names them f, i, g, o

#: name, vocabulary size V (None: float inputs), n_x (embedding dim for tokens), T, units, m
CASES = [("names", None, 32, 12, 128, 256), ("float", None, 64, 32, 256, 256)]
QUICK_CASES = [("names", None, 32, 12, 64, 64), ("float", None, 16, 8, 32, 64)]


def make_problem(case, seed=0):
    """(net, params, X, Y one-hot, labels (m,)); names: V from the names alphabet."""
    name, _, n_x, T, units, m = case
    k_p, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    head = [L.LSTM(units), L.Dense(N_CLASSES, activation="softmax", init_method="xavier")]
    if name == "names":
        from manualgrad.data.names import names_alphabet

        V = len(names_alphabet()) + 1  # + the padding id 0
        net = mg.network([L.Embedding(V, n_x), *head], "ce")
        params = net.init((T,), k_p)
        X = jax.random.randint(k_x, (T, m), 0, V, jnp.int32)
    else:
        net = mg.network(head, "ce")
        params = net.init((n_x, T), k_p)
        X = jax.random.normal(k_x, (n_x, T, m), jnp.float32)
    labels = jax.random.randint(k_y, (m,), 0, N_CLASSES)
    Y = jax.nn.one_hot(labels, N_CLASSES).T
    return net, params, X, Y, labels


# ------------------------------------------------------------------------------------
# (lax) the LSTM a JAX user writes: time-major lax.scan, x @ W layout, stacked gates
# ------------------------------------------------------------------------------------


def lstm_keys(params):
    """(l of the LSTM, l of the Dense, l of the Embedding or None)."""
    l_lstm = next(int(k[2:]) for k in params if k.startswith("Wf"))
    return l_lstm, l_lstm + 1, (1 if l_lstm == 2 else None)


def to_lax(params):
    """manualgrad's params -> {emb (V, d)?, Wx (n_x, 4n_a), Wh (n_a, 4n_a), b (4n_a,), Wd, bd}."""
    l, d, e = lstm_keys(params)
    n_a = params[f"bf{l}"].shape[0]
    W = jnp.concatenate([params[f"W{g}{l}"] for g in GATES], axis=0)  # (4n_a, n_a + n_x)
    out = {
        "Wh": W[:, :n_a].T,
        "Wx": W[:, n_a:].T,
        "b": jnp.concatenate([params[f"b{g}{l}"][:, 0] for g in GATES]),
        "Wd": params[f"W{d}"].T,
        "bd": params[f"b{d}"][:, 0],
    }
    if e is not None:
        out["emb"] = params[f"W{e}"].T
    return out


def from_lax(g, params):
    """The inverse of :func:`to_lax` (for gradients): back to manualgrad's keys and shapes."""
    l, d, e = lstm_keys(params)
    n_a = params[f"bf{l}"].shape[0]
    W = jnp.concatenate([g["Wh"].T, g["Wx"].T], axis=1)
    out = {f"W{d}": g["Wd"].T, f"b{d}": g["bd"][:, None]}
    for k, gate in enumerate(GATES):
        out[f"W{gate}{l}"] = W[k * n_a : (k + 1) * n_a]
        out[f"b{gate}{l}"] = g["b"][k * n_a : (k + 1) * n_a, None]
    if e is not None:
        out[f"W{e}"] = g["emb"].T
    return out


def lax_logits(p, x):
    """x: ids (T, m) or floats (T, m, n_x), time-major -> logits (m, 10)."""
    if "emb" in p:
        x = p["emb"][x]  # (T, m, d)
    n_a = p["Wh"].shape[0]
    xw = x @ p["Wx"] + p["b"]  # the input part of every step at once, (T, m, 4n_a)

    def cell(carry, xw_t):
        h, c = carry
        f, i, g, o = jnp.split(xw_t + h @ p["Wh"], 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), None

    zeros = jnp.zeros((x.shape[1], n_a), x.dtype)
    (h, _), _ = jax.lax.scan(cell, (zeros, zeros), xw)
    return h @ p["Wd"] + p["bd"]


def lax_loss(p, x, labels):
    return optax.softmax_cross_entropy_with_integer_labels(lax_logits(p, x), labels).mean()


def lax_input(X):
    """manualgrad's (T, m) ids or (n_x, T, m) floats -> time-major (T, m) or (T, m, n_x)."""
    return X if X.ndim == 2 else jnp.transpose(X, (1, 2, 0))


# ------------------------------------------------------------------------------------
# (flax) linen: nn.Embed → nn.RNN(nn.OptimizedLSTMCell) → nn.Dense, batch-major
# ------------------------------------------------------------------------------------


def flax_model(units, vocab=None, dim=None):
    import flax.linen as nn

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):  # ids (m, T) or floats (m, T, n_x)
            if vocab is not None:
                x = nn.Embed(vocab, dim)(x)
            h = nn.RNN(nn.OptimizedLSTMCell(units))(x)[:, -1]
            return nn.Dense(N_CLASSES)(h)

    return Model()


def to_flax(params):
    """manualgrad's params -> the linen model's variables (kernels (in, out))."""
    l, d, e = lstm_keys(params)
    n_a = params[f"bf{l}"].shape[0]
    cell = {}
    for gate, fl in zip(GATES, "figo", strict=True):
        W = params[f"W{gate}{l}"]
        cell[f"h{fl}"] = {"kernel": W[:, :n_a].T, "bias": params[f"b{gate}{l}"][:, 0]}
        cell[f"i{fl}"] = {"kernel": W[:, n_a:].T}
    p = {
        "OptimizedLSTMCell_0": cell,
        "Dense_0": {"kernel": params[f"W{d}"].T, "bias": params[f"b{d}"][:, 0]},
    }
    if e is not None:
        p["Embed_0"] = {"embedding": params[f"W{e}"].T}
    return {"params": p}


def from_flax(g, params):
    g = g["params"]
    cell = g["OptimizedLSTMCell_0"]
    lax_g = {
        "Wh": jnp.concatenate([cell[f"h{fl}"]["kernel"] for fl in "figo"], axis=1),
        "Wx": jnp.concatenate([cell[f"i{fl}"]["kernel"] for fl in "figo"], axis=1),
        "b": jnp.concatenate([cell[f"h{fl}"]["bias"] for fl in "figo"]),
        "Wd": g["Dense_0"]["kernel"],
        "bd": g["Dense_0"]["bias"],
    }
    if "Embed_0" in g:
        lax_g["emb"] = g["Embed_0"]["embedding"]
    return from_lax(lax_g, params)


def flax_input(X):
    """manualgrad's (T, m) ids or (n_x, T, m) floats -> batch-major (m, T) or (m, T, n_x)."""
    return X.T if X.ndim == 2 else jnp.transpose(X, (2, 1, 0))


# ------------------------------------------------------------------------------------


def vmap_clipped(p, x, labels, C):
    """(1/m) Σ_i min(1, C/‖g_i‖) g_i, g_i by jax.vmap(jax.grad) of the lax one-example loss."""
    batch_axis = 1  # time-major: examples on axis 1

    def one(x_i, y_i):
        return jax.grad(lax_loss)(p, jnp.expand_dims(x_i, 1), y_i[None])

    g = jax.vmap(one, in_axes=(batch_axis, 0))(x, labels)
    sq = sum(jnp.sum(v.reshape(v.shape[0], -1) ** 2, axis=1) for v in g.values())
    s = jnp.minimum(1.0, C / jnp.maximum(jnp.sqrt(sq), 1e-30))
    return {k: jnp.tensordot(s, v, axes=1) / x.shape[1] for k, v in g.items()}


def run_case(case, *, rounds, vmap_rounds, tol, log):
    name, _, n_x, T, units, m = case
    net, params, X, Y, labels = make_problem(case)
    n_params = sum(v.size for v in params.values())
    log(f"[bold]{name}[/bold]: n_x {n_x}, T {T}, units {units}, m {m}, {n_params} params")

    p_lax, x_lax = to_lax(params), lax_input(X)
    p_flax, x_flax = to_flax(params), flax_input(X)
    vocab = params["W1"].shape[1] if name == "names" else None
    model = flax_model(units, vocab, n_x)

    def flax_loss(v, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(v, x), y).mean()

    step = B.aot_compile(net.value_and_grad, params, X, Y)
    lax_exe = B.aot_compile(jax.value_and_grad(lax_loss), p_lax, x_lax, labels)
    flax_exe = B.aot_compile(jax.value_and_grad(flax_loss), p_flax, x_flax, labels)
    clip = B.aot_compile(net.clipped_grads, params, X, Y, jnp.float32(1.0))
    C = jnp.median(jax.jit(net.per_example_norms)(params, X, Y)).astype(jnp.float32)
    vmap_exe = B.aot_compile(vmap_clipped, p_lax, x_lax, labels, C)

    cost, grads = step(params, X, Y)
    lax_cost, lax_g = lax_exe(p_lax, x_lax, labels)
    flax_cost, flax_g = flax_exe(p_flax, x_flax, labels)
    checks = {
        "step vs lax": B.max_rel_err((cost, grads), (lax_cost, from_lax(lax_g, params))),
        "step vs flax": B.max_rel_err((cost, grads), (flax_cost, from_flax(flax_g, params))),
        "clipped(C=inf) vs step": B.max_rel_err(clip(params, X, Y, jnp.float32(1e30)), grads),
        "clipped vs vmap": B.max_rel_err(
            clip(params, X, Y, C), from_lax(vmap_exe(p_lax, x_lax, labels, C), params)
        ),
    }
    B.check_agreement(name, checks, tol, log)

    run_step = lambda: step(params, X, Y)  # noqa: E731
    run_clip = lambda: clip(params, X, Y, C)  # noqa: E731
    step_vs_lax = B.paired_ratio(run_step, lambda: lax_exe(p_lax, x_lax, labels), rounds=rounds)
    step_vs_flax = B.paired_ratio(run_step, lambda: flax_exe(p_flax, x_flax, labels), rounds=rounds)
    clip_vs_step = B.paired_ratio(run_clip, run_step, rounds=rounds)
    vmap_vs_clip = B.paired_ratio(
        lambda: vmap_exe(p_lax, x_lax, labels, C), run_clip, rounds=vmap_rounds
    )
    return {
        "kind": "case", "case": name, "n_x": n_x, "T": T, "units": units, "m": m,
        "params": int(n_params), "step_ms": step_vs_lax.ms,
        "lax_ms": step_vs_lax.baseline_ms, "flax_ms": step_vs_flax.baseline_ms,
        "clipped_ms": clip_vs_step.ms, "vmap_ms": vmap_vs_clip.ms,
        "step_vs_lax": step_vs_lax.as_json(), "step_vs_flax": step_vs_flax.as_json(),
        "clipped_vs_step": clip_vs_step.as_json(), "vmap_vs_clipped": vmap_vs_clip.as_json(),
        "temp_bytes": {k: B.temp_bytes(e) for k, e in
                       {"lax": lax_exe, "flax": flax_exe, "step": step, "clipped": clip,
                        "vmap": vmap_exe}.items()},
        "checks": checks,
    }  # fmt: skip


def _ratio(r, spec=".2f"):
    return f"{r['median']:{spec}} [{r['low']:{spec}},{r['high']:{spec}}]"


def print_table(rows, info):
    from rich.console import Console

    table = B.results_table(
        "LSTM step, float32: medians of per-round ratios [95% CI]; temp MiB: "
        "lax/flax/step/clipped/vmap",
        f"{info['device']}, {info['cores']} cores, load {info['load_avg']}, {info['date']}",
        ("case", "step ms", "step/lax", "step/flax", "clipped/step", "vmap/clipped", "temp MiB"),
    )
    for r in rows:
        t = r["temp_bytes"]
        mib = "/".join("—" if t[k] is None else f"{t[k] / 2**20:.0f}"
                       for k in ("lax", "flax", "step", "clipped", "vmap"))  # fmt: skip
        table.add_row(
            f"{r['case']} T{r['T']} u{r['units']} @{r['m']}", f"{r['step_ms']:.2f}",
            _ratio(r["step_vs_lax"]), _ratio(r["step_vs_flax"]),
            _ratio(r["clipped_vs_step"]), _ratio(r["vmap_vs_clipped"], ".1f"), mib,
        )  # fmt: skip
    Console(width=150).print(table)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cases, few rounds")
    parser.add_argument("--json", type=Path, help="write the JSON lines to this file")
    parser.add_argument("--rounds", type=int, default=None, help="paired rounds (default 21)")
    parser.add_argument("--vmap-rounds", type=int, default=5, help="rounds of the vmap route")
    parser.add_argument("--cases", nargs="+", choices=("names", "float"), default=None)
    args = parser.parse_args(argv)

    from rich.console import Console

    console = Console(stderr=True)
    tol = 1e-3 if jax.default_backend() == "cpu" else 3e-2  # float32; GPUs default to TF32
    rounds = args.rounds or (5 if args.quick else 21)
    cases = QUICK_CASES if args.quick else CASES
    if args.cases:
        cases = [c for c in cases if c[0] in args.cases]
    info = {"kind": "machine", **B.machine(), "rounds": rounds, "vmap_rounds": args.vmap_rounds}
    lines = [json.dumps(info)]
    rows = []
    for case in cases:
        row = run_case(case, rounds=rounds, vmap_rounds=args.vmap_rounds, tol=tol,
                       log=console.print)  # fmt: skip
        rows.append(row)
        lines.append(json.dumps(row))
        if args.json:  # each case as soon as it exists, in case a later one dies
            args.json.write_text("\n".join(lines) + "\n")
    print_table(rows, info)
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
