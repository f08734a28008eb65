"""Training-loop benchmark: manualgrad's jit-compiled lax.scan loop vs the course's numpy loop.

The course's 4-layer "cat" network [12288, 20, 7, 5, 1] (relu, relu, relu, sigmoid),
m = 209 random float32 examples, plain gradient descent with lr 0.0075 for 2500
iterations — the setting of the course's L_layer_model. Both variants start from the
same float32 params and do the same float32 arithmetic. Before timing, both run the
first `--check-iterations` (100) iterations and must agree to 1e-4 relative (costs and
params; measured ~1e-7). Over thousands of float32 iterations on random labels the two
drift apart by rounding (relu kinks amplify last-bit differences); that drift is
reported, not judged.

    python bench/train.py                 # 2500 iterations, median of 3 timed runs
    python bench/train.py --iterations 100 --repeats 1   # quick

Prints a rich table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from rich.console import Console
from rich.table import Table

import manualgrad as mg

DIMS = [12288, 20, 7, 5, 1]
ACTS = ("relu", "relu", "relu", "sigmoid")
M = 209
LR = 0.0075


# --- the course's loop in plain numpy (L_layer_model with its helper functions) -----------


def _sigmoid(Z):
    return 1 / (1 + np.exp(-Z))


def numpy_model(X, Y, params, iterations, lr=LR):
    """The course's L_layer_model: forward, cost, backward (incl. dA0), update."""
    params = {k: v.copy() for k, v in params.items()}
    L = len(params) // 2
    m = X.shape[1]
    costs = []
    for _ in range(iterations):
        caches, A = [], X
        for l in range(1, L + 1):  # forward
            A_prev = A
            Z = params[f"W{l}"] @ A_prev + params[f"b{l}"]
            A = _sigmoid(Z) if l == L else np.maximum(0, Z)
            caches.append((A_prev, Z, A))
        AL = A
        cost = -np.sum(Y * np.log(AL) + (1 - Y) * np.log(1 - AL)) / m
        costs.append(cost)
        grads, dA = {}, None
        for l in range(L, 0, -1):  # backward
            A_prev, Z, A = caches[l - 1]
            if l == L:
                # dAL * sigmoid'(ZL) = -(Y/AL - (1-Y)/(1-AL)) * AL (1-AL), simplified to
                # AL - Y as manualgrad does: in float32 the unsimplified product loses all
                # precision once AL is near 0 or 1 (1 - AL cancels), and the runs drift apart.
                dZ = AL - Y
            else:
                dZ = np.array(dA, copy=True)  # relu_backward
                dZ[Z <= 0] = 0
            grads[f"W{l}"] = 1 / m * dZ @ A_prev.T
            grads[f"b{l}"] = 1 / m * np.sum(dZ, axis=1, keepdims=True)
            dA = params[f"W{l}"].T @ dZ  # dA_prev, also for l = 1 as the course does
        for l in range(1, L + 1):  # update_parameters
            params[f"W{l}"] = params[f"W{l}"] - lr * grads[f"W{l}"]
            params[f"b{l}"] = params[f"b{l}"] - lr * grads[f"b{l}"]
    return params, np.array(costs)


# --- manualgrad ----------------------------------------------------------------------------

SGD = optax.sgd(LR)


def manualgrad_model(X, Y, params, iterations):
    """mg.train with plain gradient descent: all iterations in one jit-compiled lax.scan."""
    result = mg.train(
        params, X, Y, SGD, activations=ACTS, loss="bce", epochs=iterations,
        epochs_per_call=iterations,
    )  # fmt: skip
    jax.block_until_ready(result.params)
    return result.params, result.history


def _max_rel(a, b):
    return max(
        float(np.max(np.abs(np.asarray(a[k]) - b[k]))) / float(np.max(np.abs(b[k]))) for k in b
    )


def _timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=2500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--check-iterations", type=int, default=100,
        help="iterations over which both variants must agree to 1e-4 (default: 100)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    X = rng.random((DIMS[0], M), dtype=np.float32)  # pixel-like values in [0, 1)
    Y = (rng.random((1, M)) < 0.35).astype(np.float32)
    init = mg.init_params(DIMS, jax.random.key(args.seed), method="xavier")  # course: /sqrt(n)
    np_params = {k: np.asarray(v) for k, v in init.items()}
    jX, jY = jnp.asarray(X), jnp.asarray(Y)

    # 1. verify: both variants agree over the first iterations, before float32 drift sets in
    n_check = min(args.iterations, args.check_iterations)
    mg_check, mg_check_costs = manualgrad_model(jX, jY, init, n_check)
    np_check, np_check_costs = numpy_model(X, Y, np_params, n_check)
    cost_rel = float(np.max(np.abs(np.asarray(mg_check_costs) - np_check_costs) / np_check_costs))
    param_rel = _max_rel(mg_check, np_check)
    agree = cost_rel < 1e-4 and param_rel < 1e-4

    # 2. time the full runs (the first manualgrad call compiles; the timed ones reuse it)
    t0 = time.perf_counter()
    manualgrad_model(jX, jY, init, args.iterations)
    first_call = time.perf_counter() - t0
    t_mg, (mg_params, mg_costs) = _timed(
        lambda: manualgrad_model(jX, jY, init, args.iterations), args.repeats
    )
    t_np, (np_params_out, np_costs) = _timed(
        lambda: numpy_model(X, Y, np_params, args.iterations), args.repeats
    )
    # informational: over thousands of float32 steps rounding differences grow (relu kinks)
    drift_cost = abs(float(mg_costs[-1]) - float(np_costs[-1])) / abs(float(np_costs[-1]))
    drift_param = _max_rel(mg_params, np_params_out)
    result = {
        "benchmark": "train_loop_cat_network",
        "dims": DIMS,
        "m": M,
        "iterations": args.iterations,
        "repeats": args.repeats,
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0]),
        "manualgrad_s": t_mg,
        "manualgrad_first_call_s": first_call,
        "numpy_s": t_np,
        "speedup": t_np / t_mg,
        "final_cost_manualgrad": float(mg_costs[-1]),
        "final_cost_numpy": float(np_costs[-1]),
        "check_iterations": n_check,
        "check_cost_max_rel_diff": cost_rel,
        "check_param_max_rel_diff": param_rel,
        "agree": agree,
        "final_cost_rel_diff": drift_cost,
        "final_param_max_rel_diff": drift_param,
    }
    table = Table(title=f"training loop, {DIMS}, m={M}, {args.iterations} GD iterations")
    for col in ("variant", "median time (s)", "ms / iteration", "final cost"):
        table.add_column(col, justify="right" if col != "variant" else "left")
    table.add_row(
        "manualgrad (lax.scan, jit)", f"{t_mg:.3f}", f"{1e3 * t_mg / args.iterations:.3f}",
        f"{float(mg_costs[-1]):.6f}",
    )  # fmt: skip
    table.add_row(
        "numpy (course loop)", f"{t_np:.3f}", f"{1e3 * t_np / args.iterations:.3f}",
        f"{float(np_costs[-1]):.6f}",
    )  # fmt: skip
    console = Console()
    console.print(table)
    console.print(
        f"speedup {t_np / t_mg:.2f}×; first manualgrad call (with compilation) {first_call:.2f} s; "
        f"agreement over the first {n_check} iterations: costs max rel {cost_rel:.2e}, params "
        f"max rel {param_rel:.2e} "
        + ("[green]OK[/green]" if agree else "[red]DISAGREE[/red]")
        + f"; after {args.iterations}: final cost rel {drift_cost:.2e}, params max rel "
        f"{drift_param:.2e} (float32 drift)"
    )
    print(json.dumps(result))
    if not agree:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
