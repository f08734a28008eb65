"""Training-loop benchmark: manualgrad's `train` against an idiomatic jax.grad + optax loop.

    python bench/train.py --quick            # 200 iterations / 5 epochs, a minute on 2 cores
    python bench/train.py --json out.jsonl   # the full settings below

Two settings, float32:

| setting  | network, activations                 | data     | method                           |
|----------|--------------------------------------|----------|----------------------------------|
| `course` | [12288, 20, 7, 5, 1], relu³ sigmoid  | m = 209  | full-batch gradient descent,     |
|          | (the course's cat network)           |          | `optax.sgd(0.0075)`, 2500 steps  |
| `mini`   | [784, 256, 128, 1], relu² sigmoid    | m = 4096 | `optax.adam(1e-3)`, B = 128,     |
|          |                                      |          | reshuffled every epoch, 20 epochs|

`manualgrad` is `mg.train` (all epochs in one compiled call). The
baseline (a) is what a JAX user writes: one `jax.jit` of a `lax.scan` over epochs (and
over mini-batches) taking `jax.value_and_grad` of an idiomatic cost
(`manualgrad.benchmark.idiomatic_cost`: `jax.nn` + `optax.losses`) and the same optax
update. Both see the same batches: the baseline shuffles with the key schedule that
`train` documents (epoch e permutes the columns with `fold_in(k_shuffle, e)`,
`k_shuffle = split(key)[0]`), and the two are checked to end with the same params over
the first `--check-steps` steps before anything is timed.

Timing: whole runs in paired, interleaved rounds (`manualgrad.benchmark.paired_rounds`),
the median of per-round ratios manualgrad / (a) with its 95 % bootstrap interval; and
the fraction of the machine's matmul rate the loop reaches: model FLOPs per step
(forward, dW, dA[l ≥ 2]) × steps / time, over an n×n matmul measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

import manualgrad as mg
from manualgrad import benchmark as B


class Setting(NamedTuple):
    name: str
    dims: tuple[int, ...]
    m: int
    optimizer: optax.GradientTransformation
    batch_size: int | None
    epochs: int
    quick_epochs: int


SETTINGS = (
    Setting("course", (12288, 20, 7, 5, 1), 209, optax.sgd(0.0075), None, 2500, 200),
    Setting("mini", (784, 256, 128, 1), 4096, optax.adam(1e-3), 128, 20, 5),
)


def idiomatic_loop(setting: Setting, activations: tuple[str, ...], epochs: int):
    """What a JAX user writes: jit(lax.scan over epochs of lax.scan over batches)."""
    opt, B_ = setting.optimizer, setting.batch_size
    grad_fn = jax.value_and_grad(B.idiomatic_cost)

    def step(carry, batch):
        params, state = carry
        C, g = grad_fn(params, *batch, activations=activations)
        updates, state = opt.update(g, state, params)
        return (optax.apply_updates(params, updates), state), C

    def run(params, X, Y, key):
        m = X.shape[1]
        k_shuffle = jax.random.split(key)[0]

        def epoch(carry, e):
            if B_ is None:
                return step(carry, (X, Y))
            perm = jax.random.permutation(jax.random.fold_in(k_shuffle, e), m)
            n = m // B_

            def batches(A):
                return A[:, perm].reshape(A.shape[0], n, B_).transpose(1, 0, 2)

            carry, costs = lax.scan(step, carry, (batches(X), batches(Y)))
            return carry, jnp.mean(costs)

        (params, _), costs = lax.scan(epoch, (params, opt.init(params)), jnp.arange(epochs))
        return params, costs

    return run


def problem(setting: Setting, seed: int = 1):
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.random((setting.dims[0], setting.m), dtype=np.float32))
    Y = jnp.asarray((rng.random((1, setting.m)) < 0.35).astype(np.float32))
    params = network_of(setting).init(setting.dims, jax.random.key(seed), method="xavier")
    return params, X, Y


def network_of(setting: Setting) -> mg.Network:
    return mg.network(["relu"] * (len(setting.dims) - 2) + ["sigmoid"], "bce")


def run_setting(setting: Setting, *, epochs: int, check_epochs: int, rounds: int, ceiling, log):
    activations = ("relu",) * (len(setting.dims) - 2) + ("sigmoid",)
    params, X, Y = problem(setting)
    key = jax.random.key(0)
    steps_per_epoch = 1 if setting.batch_size is None else setting.m // setting.batch_size
    if setting.batch_size is not None and setting.m % setting.batch_size:
        raise SystemExit(f"{setting.name}: m must be a multiple of the batch size")

    def manual(n):
        result = mg.train(network_of(setting), params, X, Y, setting.optimizer, epochs=n,
                          batch_size=setting.batch_size, key=key, epochs_per_call=n)  # fmt: skip
        return result.params, result.history

    def baseline(n):
        return B.aot_compile(idiomatic_loop(setting, activations, n), params, X, Y, key)

    # 1. the same batches and updates: both end with the same params
    got, _ = manual(check_epochs)
    want, _ = baseline(check_epochs)(params, X, Y, key)
    err = B.max_rel_err(got, want)
    n_check = check_epochs * steps_per_epoch
    log(f"{setting.name}: params after {n_check} steps, max rel err {err:.1e}")
    if not err <= 1e-4:
        raise SystemExit(f"{setting.name}: manualgrad and (a) disagree: {err:.2e} > 1e-4")

    # 2. whole runs, paired rounds
    loop = baseline(epochs)
    timings = B.paired_rounds(
        {"manualgrad": lambda: manual(epochs)[0], "jax": lambda: loop(params, X, Y, key)[0]},
        rounds=rounds,
        calls=1,
        warmup=1,
    )
    ratio = B.ratio_interval(timings.seconds["manualgrad"], timings.seconds["jax"])
    steps = epochs * steps_per_epoch
    batch = setting.m if setting.batch_size is None else setting.batch_size
    flops = B.model_flops(setting.dims, batch) * steps
    row = {
        "kind": "setting", "setting": setting.name, "dims": list(setting.dims), "m": setting.m,
        "batch_size": setting.batch_size, "epochs": epochs, "steps": steps,
        "check_steps": check_epochs * steps_per_epoch, "check_max_rel_err": err,
        "rounds": rounds,
        "manualgrad_s": float(np.median(timings.seconds["manualgrad"])),
        "jax_s": float(np.median(timings.seconds["jax"])),
        "manualgrad_vs_jax": ratio.as_json(),
        "flops_model": flops,
    }  # fmt: skip
    for name in ("manualgrad", "jax"):
        rate = flops / row[f"{name}_s"] / 1e12
        row[f"{name}_tflops"] = rate
        row[f"{name}_frac_ceiling"] = rate / ceiling["tflops"]
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations and rounds")
    parser.add_argument("--rounds", type=int, default=None, help="paired rounds (default 7)")
    parser.add_argument("--check-steps", type=int, default=20,
                        help="steps over which both must end with the same params")  # fmt: skip
    parser.add_argument("--setting", choices=[s.name for s in SETTINGS], action="append")
    parser.add_argument("--json", type=Path, help="write the JSON lines to this file")
    args = parser.parse_args(argv)

    from rich.console import Console

    console = Console(stderr=True)
    rounds = args.rounds or (3 if args.quick else 7)
    ceiling = B.matmul_ceiling("f32-default", 1024, rounds=15)
    info = {"kind": "machine", **B.machine(), "rounds": rounds}
    lines = [json.dumps(info), json.dumps(ceiling)]
    rows = []
    for setting in SETTINGS:
        if args.setting and setting.name not in args.setting:
            continue
        spe = 1 if setting.batch_size is None else setting.m // setting.batch_size
        row = run_setting(
            setting,
            epochs=setting.quick_epochs if args.quick else setting.epochs,
            check_epochs=max(1, args.check_steps // spe),
            rounds=rounds,
            ceiling=ceiling,
            log=console.print,
        )
        rows.append(row)
        lines.append(json.dumps(row))
        if args.json:
            args.json.write_text("\n".join(lines) + "\n")

    table = B.results_table(
        "training loop: manualgrad train vs (a) jit(lax.scan) of jax.grad + optax",
        f"{info['device']}, {info['cores']} cores, {info['date']}; % peak: of a "
        f"1024² matmul ({1e3 * ceiling['tflops']:.0f} GFLOP/s)",
        ("setting", "steps", "manualgrad s", "(a) s", "manualgrad/(a) [95% CI]", "verdict",
         "% peak m/(a)"),
    )  # fmt: skip
    for r in rows:
        q = r["manualgrad_vs_jax"]
        table.add_row(
            r["setting"], str(r["steps"]), f"{r['manualgrad_s']:.3f}", f"{r['jax_s']:.3f}",
            f"{q['median']:.3f} [{q['low']:.3f}, {q['high']:.3f}]", q["verdict"],
            f"{100 * r['manualgrad_frac_ceiling']:.0f}/{100 * r['jax_frac_ceiling']:.0f}",
        )  # fmt: skip
    Console(width=100).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
