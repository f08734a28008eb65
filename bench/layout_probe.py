"""Probe: would running the dense formulas with examples as rows catch up with equinox?

    PYTHONPATH=src python bench/layout_probe.py [--case DIMS@M] [--rounds R] [--json FILE]

At the course shape in float32, equinox's step (an MLP under `jax.vmap`, handed X.T)
runs ahead of manualgrad's (bench/RESULTS.md). The one difference in the compiled
programs is the layout: equinox's activations are (m, n) rows, ours (n, m) columns,
and XLA hands different dots to different kernels. This probe times, in the same
interleaved rounds (order alternating, `manualgrad.benchmark.paired_rounds`), float32,
default matmul precision:

| step     | what it is                                                                 |
|----------|----------------------------------------------------------------------------|
| `manual` | `mg.network(acts, "bce").value_and_grad` on X (n_x, m)                     |
| `rows`   | the same formulas (2)-(5) written for rows, on X held as rows (m, n_x):    |
|          | Z[l]ᵀ = A[l-1]ᵀ W[l]ᵀ + b[l]ᵀ, dW[l] = (dZ[l]ᵀ)ᵀ A[l-1]ᵀ / m, dA = dZᵀ W    |
|          | — what the engine would run if it held every activation as rows, with the |
|          | data transposed once outside the timing                                    |
| `eqx`    | `manualgrad.benchmark.equinox_step`, handed X.T (outside the timing)       |
| `jax`    | (a) the idiomatic `jax.value_and_grad` cost                                |

All four are checked against (a) first (max relative error ≤ 1e-5). The table gives each
step's median ms and its ratio to equinox: the median per-round ratio with a 95 %
bootstrap interval (`manualgrad.benchmark.ratio_interval`). Only relu hidden layers and
a sigmoid + BCE output (the grid's networks).
"""

from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from manualgrad.benchmark import (
    append_json_lines,
    equinox_step,
    max_rel_err,
    paired_rounds,
    problem,
    ratio_interval,
    step_functions,
)


def rows_value_and_grad(params, X_rows, Y_rows):
    """Formulas (2)-(5) with examples as rows: X_rows (m, n_x), Y_rows (m, 1) -> (C, grads)."""
    L = len(params) // 2
    m = X_rows.shape[0]

    def xw(a, w):  # a (m, n_in) · w (n_out, n_in)ᵀ -> (m, n_out)
        return lax.dot_general(a, w, (((1,), (1,)), ((), ())))

    Z, A = [None], [X_rows]
    for l in range(1, L + 1):
        z = xw(A[l - 1], params[f"W{l}"]) + params[f"b{l}"].T
        Z.append(z)
        A.append(jax.nn.sigmoid(z) if l == L else jnp.maximum(z, 0))
    cost = -jnp.mean(Y_rows * jax.nn.log_sigmoid(Z[L]) + (1 - Y_rows) * jax.nn.log_sigmoid(-Z[L]))
    dZ = (A[L] - Y_rows) / m  # the 1/m of (2), applied once
    grads = {}
    for l in range(L, 0, -1):
        grads[f"W{l}"] = lax.dot_general(dZ, A[l - 1], (((0,), (0,)), ((), ())))  # (2)
        grads[f"b{l}"] = jnp.sum(dZ, axis=0)[:, None]
        if l > 1:
            dZ = (dZ @ params[f"W{l}"]) * (Z[l - 1] > 0)  # (4), then (5) with relu'
    return cost, {k: grads[k] for k in params}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", default="12288,20,7,5,1@209", help="layer dims @ m (the course)")
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    dims_text, m_text = args.case.split("@")
    dims, m = [int(d) for d in dims_text.split(",")], int(m_text)
    acts = ["relu"] * (len(dims) - 2) + ["sigmoid"]
    params, X, Y = problem(dims, m, jnp.float32)
    X_rows, Y_rows = jnp.asarray(np.ascontiguousarray(np.asarray(X).T)), Y.T
    steps = step_functions(acts, "default")
    manual = jax.jit(steps["manual"]).lower(params, X, Y).compile()
    idiomatic = jax.jit(steps["jax"]).lower(params, X, Y).compile()
    rows = jax.jit(rows_value_and_grad).lower(params, X_rows, Y_rows).compile()
    eqx = equinox_step(params, X, Y, activations=acts)
    want = idiomatic(params, X, Y)[1]
    for name, got in [
        ("manual", manual(params, X, Y)[1]),
        ("rows", rows(params, X_rows, Y_rows)[1]),
    ]:
        err = max_rel_err(got, want)
        if not err <= 1e-5:
            raise AssertionError(f"{name} disagrees with (a): max relative error {err:.2e}")
    calls = {
        "manual": lambda: manual(params, X, Y),
        "rows": lambda: rows(params, X_rows, Y_rows),
        "eqx": eqx.call,
        "jax": lambda: idiomatic(params, X, Y),
    }
    t = paired_rounds(calls, rounds=args.rounds, slot_s=0.2)
    print(f"{args.case}, float32, {args.rounds} rounds")
    print(f"{'step':8s} {'median ms':>10s}  / eqx")
    rows_out = []
    for name, secs in t.seconds.items():
        r = ratio_interval(secs, t.seconds["eqx"])
        print(f"{name:8s} {1e3 * statistics.median(secs):10.3f}  {r.text(3)}")
        rows_out.append(
            {"step": name, "median_ms": 1e3 * statistics.median(secs), "per_eqx": r.as_json()}
        )
    if args.json:
        append_json_lines(
            args.json, [{"case": args.case, "rounds": args.rounds, **r} for r in rows_out]
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
