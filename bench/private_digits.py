"""Test accuracy on the 8×8 digits against the privacy budget ε: DP-SGD with manualgrad.

For each ε in --epsilons (and once without privacy), train the same MLP from the same
initial params on the same 1,438 training images with Poisson sampling at rate q,
per-example clipping at C and Gaussian noise calibrated by the PLD accountant to
(ε, δ) after all steps; report the test accuracy on the 359 held-out images, averaged
over --seeds runs (each seed: its own init, sampling and noise; the split is fixed).
The non-private run is what one would write without privacy: `mg.train` with
shuffled mini-batches of the expected size q·N, the same optimizer and epochs (its own
learning rate, --lr-nonprivate), no clipping and no noise.

    PYTHONPATH=src python bench/private_digits.py --json bench/results/private_digits.json \
        --plot docs/img/private_digits.png

prints a Markdown table (the one in docs/private_training.md) and writes the JSON and plot.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import jax
import numpy as np
import optax

import manualgrad as mg
from manualgrad import privacy
from manualgrad.benchmark import machine
from manualgrad.data.datasets import digits_split
from manualgrad.training import Accountant, accuracy, private_step


def run(args) -> list[dict]:
    X, Y, X_test, Y_test = digits_split(test_fraction=0.2, seed=1)
    n = X.shape[1]
    dims = [64, *args.hidden, 10]
    net = mg.network(["tanh"] * len(args.hidden) + ["softmax"], "ce")
    epochs = int(args.epochs)
    if epochs != args.epochs or epochs < 1:
        raise SystemExit(f"--epochs must be a whole number ≥ 1, got {args.epochs}")
    steps = round(epochs / args.q)
    rows = []
    budgets = [*args.epsilons, math.inf]
    for eps in budgets:
        private = math.isfinite(eps)
        if private:
            sigma = privacy.noise_multiplier(
                target_epsilon=eps, delta=args.delta, sampling_rate=args.q, steps=steps
            )
        accs, spent, o_accs, o_eps = [], [], [], []
        for seed in range(args.seeds):
            k_init, k_train = jax.random.split(jax.random.key(seed))
            params = net.init(dims, k_init, method="xavier")
            lr = args.lr if private else args.lr_nonprivate
            optimizer = optax.sgd(lr, momentum=args.momentum)
            if private:
                dp = privacy.DPConfig(
                    sampling_rate=args.q,
                    clip_norm=args.clip,
                    delta=args.delta,
                    noise_multiplier=sigma,
                )
                plan = privacy.plan(dp, n=n, steps=steps)
                result = mg.train(
                    net,
                    params,
                    X,
                    Y,
                    private_step(net, optimizer, plan),
                    epochs=epochs,
                    key=k_train,
                    callbacks=[Accountant(plan)],
                )
                spent.append(result.metrics["epsilon"])
                if args.opacus:
                    acc, eps_o = opacus_run(
                        params, X, Y, X_test, Y_test, sigma=sigma, args=args, seed=seed
                    )
                    o_accs.append(acc)
                    o_eps.append(eps_o)
            else:
                result = mg.train(
                    net,
                    params,
                    X,
                    Y,
                    optimizer,
                    epochs=epochs,
                    batch_size=round(args.q * n),
                    key=k_train,
                )
            accs.append(accuracy(net, result.params, X_test, Y_test))
        rows.append(
            {
                "target_epsilon": eps if private else None,
                "epsilon": float(np.max(spent)) if private else None,
                "noise_multiplier": sigma if private else 0.0,
                "test_accuracy_mean": float(np.mean(accs)),
                "test_accuracy_std": float(np.std(accs)),
                "test_accuracies": accs,
                "opacus_test_accuracies": o_accs,
                "opacus_epsilon_prv": float(np.max(o_eps)) if o_eps else None,
            }
        )
        print(
            f"ε {eps:>4}: σ {rows[-1]['noise_multiplier']:.3f}, test accuracy "
            f"{rows[-1]['test_accuracy_mean']:.3f} ± {rows[-1]['test_accuracy_std']:.3f}",
            file=sys.stderr,
        )
    return rows


def opacus_run(params, X, Y, X_test, Y_test, *, sigma, args, seed):
    """The same network, init, q, C, σ, optimizer and steps in Opacus; (test accuracy, its ε)."""
    import torch
    from opacus import PrivacyEngine

    torch.manual_seed(seed)
    layers = []
    n_layers = len(params) // 2
    for l in range(1, n_layers + 1):
        W = np.array(params[f"W{l}"])
        lin = torch.nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W))
            lin.bias.copy_(torch.from_numpy(np.array(params[f"b{l}"][:, 0])))
        layers += [lin, torch.nn.Tanh()] if l < n_layers else [lin]
    model = torch.nn.Sequential(*layers)
    x = torch.from_numpy(np.asarray(X, np.float32).T.copy())
    y = torch.from_numpy(np.argmax(np.asarray(Y), axis=0).astype(np.int64))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=round(args.q * x.shape[0])
    )
    engine = PrivacyEngine(accountant="prv")
    model, optimizer, loader = engine.make_private(
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum),
        data_loader=loader,
        noise_multiplier=sigma,
        max_grad_norm=args.clip,
        poisson_sampling=True,
    )
    for _ in range(round(args.epochs)):
        for xb, yb in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
    with torch.no_grad():
        xt = torch.from_numpy(np.asarray(X_test, np.float32).T.copy())
        pred = model(xt).argmax(dim=1).numpy()
    acc = float(np.mean(pred == np.argmax(np.asarray(Y_test), axis=0)))
    return acc, float(engine.get_epsilon(args.delta))


def table(rows, args, n) -> str:
    lines = [
        "| target ε | ε spent (PLD) | σ | test accuracy (mean ± sd) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        if r["target_epsilon"] is None:
            lines.append(f"| ∞ (non-private) | — | 0 | {_acc(r)} |")
        else:
            lines.append(
                f"| {r['target_epsilon']:g} | {r['epsilon']:.3f} | {r['noise_multiplier']:.3f} "
                f"| {_acc(r)} |"
            )
    if args.opacus:
        lines += ["", "| target ε | Opacus test accuracy | Opacus ε (PRV) |", "|---|---|---|"]
        for r in rows:
            if r["opacus_test_accuracies"]:
                a = np.array(r["opacus_test_accuracies"]) * 100
                lines.append(
                    f"| {r['target_epsilon']:g} | {a.mean():.1f}% ± {a.std():.1f} "
                    f"| {r['opacus_epsilon_prv']:.3f} |"
                )
    return "\n".join(lines)


def _acc(r) -> str:
    return f"{100 * r['test_accuracy_mean']:.1f}% ± {100 * r['test_accuracy_std']:.1f}"


def plot(rows, path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    priv = [r for r in rows if r["target_epsilon"] is not None]
    base = next(r for r in rows if r["target_epsilon"] is None)
    eps = [r["epsilon"] for r in priv]
    mean = np.array([r["test_accuracy_mean"] for r in priv]) * 100
    sd = np.array([r["test_accuracy_std"] for r in priv]) * 100
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    ax.errorbar(eps, mean, yerr=sd, marker="o", capsize=3, label="manualgrad (PLD ε)")
    opacus = [r for r in priv if r.get("opacus_test_accuracies")]
    if opacus:
        o_acc = [100 * np.array(r["opacus_test_accuracies"]) for r in opacus]
        ax.errorbar(
            [r["opacus_epsilon_prv"] for r in opacus],
            [a.mean() for a in o_acc],
            yerr=[a.std() for a in o_acc],
            marker="s",
            capsize=3,
            ls=":",
            label="Opacus, same σ (its PRV ε)",
        )
    ax.axhline(base["test_accuracy_mean"] * 100, color="gray", ls="--", label="non-private")
    ax.set_xscale("log", base=2)
    ax.set_xticks(eps, [f"{e:.2g}" for e in eps])
    ax.set_xlabel(f"ε spent (δ = {args.delta:g})")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"8×8 digits, MLP {[64, *args.hidden, 10]}, {args.epochs} epochs, q = {args.q}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--q", type=float, default=0.2, help="sampling rate")
    p.add_argument("--clip", type=float, default=1.0, help="clipping norm C")
    p.add_argument("--epochs", type=float, default=30)
    p.add_argument("--hidden", type=int, nargs="*", default=[32])
    p.add_argument("--lr", type=float, default=2.0, help="SGD learning rate of DP-SGD")
    p.add_argument(
        "--lr-nonprivate", type=float, default=1.0, help="SGD learning rate without privacy"
    )
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument(
        "--opacus",
        action="store_true",
        help="also train each private row with Opacus (same init, q, C, σ, optimizer, steps; "
        "Poisson data loader) and report its accuracy and its PRV accountant's ε",
    )
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    args = p.parse_args(argv)
    rows = run(args)
    print(table(rows, args, 1438))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "args": vars(args), "rows": rows}, f, indent=1)
    if args.plot:
        plot(rows, args.plot, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
