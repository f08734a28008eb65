"""Test accuracy on the 8×8 digits against the privacy budget ε: DP-SGD with manualgrad.

For each model in --models (the MLP 64-32-10, and a small CNN: 8 filters of 3×3 with
padding 1 and tanh, a 2×2 max pool, a dense softmax layer, on the images (8, 8, 1, m))
and each ε in --epsilons (and once without privacy), train the same network from the same
initial params on the same 1,438 training images with Poisson sampling at rate q,
per-example clipping at C and Gaussian noise calibrated by the PLD accountant to
(ε, δ) after all steps; report the test accuracy on the 359 held-out images, averaged
over --seeds runs (each seed: its own init, sampling and noise; the split is fixed).
The non-private run is what one would write without privacy: `mg.train` with
shuffled mini-batches of the expected size q·N, the same optimizer and epochs (its own
learning rate, --lr-nonprivate), no clipping and no noise. With --opacus each private
run is repeated in Opacus from the same initial values (copied into the torch model),
with the same q, C, σ, optimizer, learning rate and number of steps.

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

#: model name -> its label in the table
MODEL_LABELS = {"mlp": "MLP 64-32-10", "cnn": "CNN conv 8@3×3, max 2×2, 10"}


def model(name, args):
    """(network, input shape for net.init, images?) of the model `name` ("mlp" or "cnn")."""
    L = mg.layers
    if name == "mlp":
        return mg.network(["tanh"] * len(args.hidden) + ["softmax"], "ce"), [64, *args.hidden, 10]
    layers = [
        L.Conv2D(args.channels, 3, pad=1, activation="tanh"),
        L.MaxPool2D(2),
        L.Flatten(),
        L.Dense(10, "softmax"),
    ]
    return mg.network(layers, "ce"), (8, 8, 1)


def run(args) -> list[dict]:
    epochs = int(args.epochs)
    if epochs != args.epochs or epochs < 1:
        raise SystemExit(f"--epochs must be a whole number ≥ 1, got {args.epochs}")
    steps = round(epochs / args.q)
    rows = []
    budgets = [*args.epsilons, math.inf]
    sigmas = {
        eps: privacy.noise_multiplier(
            target_epsilon=eps, delta=args.delta, sampling_rate=args.q, steps=steps
        )
        for eps in args.epsilons
    }
    for name in args.models:
        net, shape = model(name, args)
        X, Y, X_test, Y_test = digits_split(test_fraction=0.2, seed=1, images=name == "cnn")
        for eps in budgets:
            rows.append(_row(name, net, shape, X, Y, X_test, Y_test, eps, sigmas, steps, args))
    return rows


def _row(name, net, shape, X, Y, X_test, Y_test, eps, sigmas, steps, args) -> dict:
    """Train `net` --seeds times at budget `eps` (∞: without privacy); the row of results."""
    n, epochs = X.shape[-1], round(args.epochs)
    private = math.isfinite(eps)
    sigma = sigmas[eps] if private else 0.0
    accs, spent, o_accs, o_eps = [], [], [], []
    for seed in range(args.seeds):
        k_init, k_train = jax.random.split(jax.random.key(seed))
        params = net.init(shape, k_init, method="xavier")
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
                    net, name, params, X, Y, X_test, Y_test, sigma=sigma, args=args, seed=seed
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
    row = {
        "model": name,
        "target_epsilon": eps if private else None,
        "epsilon": float(np.max(spent)) if private else None,
        "noise_multiplier": sigma,
        "test_accuracy_mean": float(np.mean(accs)),
        "test_accuracy_std": float(np.std(accs)),
        "test_accuracies": accs,
        "opacus_test_accuracies": o_accs,
        "opacus_epsilon_prv": float(np.max(o_eps)) if o_eps else None,
    }
    opacus = f", Opacus {np.mean(o_accs):.3f}" if o_accs else ""
    print(
        f"{name} ε {eps:>4}: σ {sigma:.3f}, test accuracy {row['test_accuracy_mean']:.3f} ± "
        f"{row['test_accuracy_std']:.3f}{opacus}",
        file=sys.stderr,
    )
    return row


def torch_model(name, params):
    """The torch.nn.Sequential of model `name` holding manualgrad's `params` (same values).

    Conv kernels (C, f, f, C_prev) become torch's (C, C_prev, f, f); the dense layer after
    the CNN's Flatten gets its columns permuted, since manualgrad flattens (H, W, C) and
    torch (C, H, W).
    """
    import torch

    def linear(W, b):
        lin = torch.nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W, np.float32)))
            lin.bias.copy_(torch.from_numpy(np.asarray(b[:, 0], np.float32)))
        return lin

    if name == "mlp":
        layers = []
        n_layers = len(params) // 2
        for l in range(1, n_layers + 1):
            lin = linear(np.array(params[f"W{l}"]), np.array(params[f"b{l}"]))
            layers += [lin, torch.nn.Tanh()] if l < n_layers else [lin]
        return torch.nn.Sequential(*layers)
    W1, b1 = np.array(params["W1"]), np.array(params["b1"])
    C = W1.shape[0]
    conv = torch.nn.Conv2d(W1.shape[3], C, W1.shape[1], padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(W1.transpose(0, 3, 1, 2))))
        conv.bias.copy_(torch.from_numpy(b1[:, 0].copy()))
    W2 = np.array(params["W2"])  # (10, H·W·C) in (h, w, c) order -> (c, h, w) order
    side = math.isqrt(W2.shape[1] // C)
    W2 = W2.reshape(-1, side, side, C).transpose(0, 3, 1, 2).reshape(W2.shape[0], -1)
    dense = linear(W2, np.array(params["b2"]))
    return torch.nn.Sequential(
        conv, torch.nn.Tanh(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), dense
    )


def torch_inputs(X):
    """manualgrad's examples-last X -> torch's examples-first rows (MLP) or NCHW images."""
    import torch

    X = np.asarray(X, np.float32)
    if X.ndim == 2:
        return torch.from_numpy(X.T.copy())
    return torch.from_numpy(np.ascontiguousarray(X.transpose(3, 2, 0, 1)))


def opacus_run(net, name, params, X, Y, X_test, Y_test, *, sigma, args, seed):
    """The same network, init, q, C, σ, optimizer and steps in Opacus; (test accuracy, its ε).

    Raises if the torch model's initial outputs differ from manualgrad's on the test set.
    """
    import torch
    from opacus import PrivacyEngine

    torch.manual_seed(seed)
    model = torch_model(name, params)
    with torch.no_grad():
        theirs = torch.softmax(model(torch_inputs(X_test)), dim=1).numpy().T
    ours = np.asarray(net.forward(params, np.asarray(X_test, np.float32))[0])
    err = float(np.max(np.abs(theirs - ours)))
    if not err < 1e-5:
        raise AssertionError(f"{name}: the torch copy's initial outputs differ by {err:.1e}")
    x = torch_inputs(X)
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
        pred = model(torch_inputs(X_test)).argmax(dim=1).numpy()
    acc = float(np.mean(pred == np.argmax(np.asarray(Y_test), axis=0)))
    return acc, float(engine.get_epsilon(args.delta))


def table(rows, args) -> str:
    """The Markdown table of docs/private_training.md: one row per model and budget."""
    opacus = args.opacus
    head = "| model | target ε | ε spent (PLD) | σ | test accuracy (mean ± sd) |"
    lines = [head + (" Opacus test accuracy | Opacus ε (PRV) |" if opacus else "")]
    lines.append("|---" * (7 if opacus else 5) + "|")
    for r in rows:
        label = MODEL_LABELS[r["model"]]
        if r["target_epsilon"] is None:
            line = f"| {label} | ∞ (non-private) | — | 0 | {_acc(r)} |"
            lines.append(line + (" — | — |" if opacus else ""))
            continue
        line = (
            f"| {label} | {r['target_epsilon']:g} | {r['epsilon']:.3f} "
            f"| {r['noise_multiplier']:.3f} | {_acc(r)} |"
        )
        if opacus:
            a = np.array(r["opacus_test_accuracies"]) * 100
            line += f" {a.mean():.1f}% ± {a.std():.1f} | {r['opacus_epsilon_prv']:.3f} |"
        lines.append(line)
    return "\n".join(lines)


def _acc(r) -> str:
    return f"{100 * r['test_accuracy_mean']:.1f}% ± {100 * r['test_accuracy_std']:.1f}"


def plot(rows, path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=120)
    for k, name in enumerate(args.models):
        mine = [r for r in rows if r["model"] == name]
        priv = [r for r in mine if r["target_epsilon"] is not None]
        base = next(r for r in mine if r["target_epsilon"] is None)
        color = f"C{k}"
        eps = [r["epsilon"] for r in priv]
        mean = np.array([r["test_accuracy_mean"] for r in priv]) * 100
        sd = np.array([r["test_accuracy_std"] for r in priv]) * 100
        label = MODEL_LABELS[name].split(" ")[0]
        ax.errorbar(eps, mean, yerr=sd, marker="o", capsize=3, color=color,
                    label=f"{label}, manualgrad (PLD ε)")  # fmt: skip
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
                color=color,
                alpha=0.7,
                label=f"{label}, Opacus (PRV ε)",
            )
        ax.axhline(base["test_accuracy_mean"] * 100, color=color, ls="--", lw=0.8,
                   label=f"{label}, non-private")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xticks(args.epsilons, [f"{e:g}" for e in args.epsilons])
    ax.set_xlabel(f"ε spent (δ = {args.delta:g})")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"8×8 digits, {args.epochs:g} epochs, q = {args.q}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--q", type=float, default=0.2, help="sampling rate")
    p.add_argument("--clip", type=float, default=1.0, help="clipping norm C")
    p.add_argument("--epochs", type=float, default=30)
    p.add_argument("--models", nargs="+", choices=tuple(MODEL_LABELS), default=["mlp", "cnn"])
    p.add_argument("--hidden", type=int, nargs="*", default=[32], help="the MLP's hidden sizes")
    p.add_argument("--channels", type=int, default=8, help="the CNN's filters")
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
    print(table(rows, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "args": vars(args), "rows": rows}, f, indent=1)
    if args.plot:
        plot(rows, args.plot, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
