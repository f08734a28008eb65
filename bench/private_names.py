"""Test accuracy on the names task against the privacy budget ε: a private LSTM, and Opacus' DPLSTM.

For each ε in --epsilons (and once without privacy), train the same character-level
classifier, Embedding(V, 16) → LSTM(64) → Dense(10, softmax) (many-to-one: the softmax
reads the last state a_T), from the same initial params on the same 5,114 training
surnames (`manualgrad.data.names`, ten languages), with Poisson sampling at rate q,
per-example clipping at C and Gaussian noise σ calibrated by manualgrad's PLD
accountant to (ε, δ) after all steps; report the test accuracy on the 1,278 held-out
names, mean ± sd over --seeds runs (each seed: its own init, sampling and noise; the
split is fixed). The non-private run is `mg.train` with shuffled mini-batches of the
expected size q·N, the same optimizer and epochs, no clipping and no noise.

With --opacus, each private run is repeated in Opacus 1.6 (`PrivacyEngine.make_private`,
Poisson data loader) on the same network written in PyTorch — `nn.Embedding`,
`opacus.layers.DPLSTM`, `nn.Linear` — from the same initial values (torch's gate order
i, f, g, o; b_ih = our b, b_hh = 0), with the same q, C, σ, optimizer, learning rate and
steps; its own PRV accountant's ε is reported beside it.

    PYTHONPATH=src python bench/private_names.py --opacus --json bench/results/private_names.json

prints a Markdown table (the one in docs/sequences.md) and writes the JSON.
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
from manualgrad.data.names import names_split
from manualgrad.training import Accountant, accuracy, private_step

L = mg.layers
DIM, UNITS, N_CLASSES = 16, 64, 10


def network(V):
    return mg.network(
        [
            L.Embedding(V, DIM),
            L.LSTM(UNITS),
            L.Dense(N_CLASSES, activation="softmax", init_method="xavier"),
        ],
        "ce",
    )


def optimizer(args, lr):
    if args.optimizer == "adam":
        return optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)
    return optax.sgd(lr, momentum=args.momentum or None)


def run(args) -> list[dict]:
    X, Y, X_test, Y_test = names_split(test_fraction=0.2, seed=1)
    n = X.shape[1]
    V = int(max(X.max(), X_test.max())) + 1
    net = network(V)
    T = X.shape[0]
    epochs = int(args.epochs)
    if epochs != args.epochs or epochs < 1:
        raise SystemExit(f"--epochs must be a whole number ≥ 1, got {args.epochs}")
    steps = round(epochs / args.q)
    rows = []
    for eps in [*args.epsilons] + ([] if args.no_baseline else [math.inf]):
        private = math.isfinite(eps)
        sigma = 0.0
        if private:
            sigma = privacy.noise_multiplier(
                target_epsilon=eps, delta=args.delta, sampling_rate=args.q, steps=steps
            )
        accs, spent, o_accs, o_eps = [], [], [], []
        for seed in range(args.seeds):
            k_init, k_train = jax.random.split(jax.random.key(seed))
            params = net.init((T,), k_init)
            if private:
                dp = privacy.DPConfig(
                    sampling_rate=args.q, clip_norm=args.clip, delta=args.delta,
                    noise_multiplier=sigma,
                )  # fmt: skip
                plan = privacy.plan(dp, n=n, steps=steps)
                step = private_step(net, optimizer(args, args.lr), plan)
                result = mg.train(net, params, X, Y, step, epochs=epochs, key=k_train,
                                  callbacks=[Accountant(plan)])  # fmt: skip
                spent.append(result.metrics["epsilon"])
            else:
                opt = optimizer(args, args.lr_nonprivate)
                result = mg.train(net, params, X, Y, opt, epochs=epochs,
                                  batch_size=round(args.q * n), key=k_train)  # fmt: skip
            accs.append(accuracy(net, result.params, X_test, Y_test))
            if private and args.opacus:
                acc, eps_o = opacus_run(params, X, Y, X_test, Y_test, sigma=sigma, args=args,
                                        seed=seed, steps=steps)  # fmt: skip
                o_accs.append(acc)
                o_eps.append(eps_o)
        rows.append({
            "target_epsilon": eps if private else None,
            "epsilon": float(np.max(spent)) if private else None,
            "noise_multiplier": sigma,
            "steps": steps,
            "test_accuracy_mean": float(np.mean(accs)),
            "test_accuracy_std": float(np.std(accs)),
            "test_accuracies": accs,
            "opacus_test_accuracies": o_accs,
            "opacus_epsilon_prv": float(np.max(o_eps)) if o_eps else None,
        })  # fmt: skip
        o = f", Opacus {100 * np.mean(o_accs):.1f}%" if o_accs else ""
        print(
            f"ε {eps:>4}: σ {sigma:.3f}, test accuracy {100 * np.mean(accs):.1f}% "
            f"± {100 * np.std(accs):.1f}{o}",
            file=sys.stderr,
        )
    return rows


def torch_model(params):
    """nn.Embedding → opacus DPLSTM → nn.Linear with manualgrad's initial values."""
    import torch
    from opacus.layers import DPLSTM

    n_a = params["bf2"].shape[0]
    E = np.asarray(params["W1"])  # (d, V)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(E.shape[1], E.shape[0])
            self.lstm = DPLSTM(E.shape[0], n_a, batch_first=True)
            self.out = torch.nn.Linear(n_a, N_CLASSES)

        def forward(self, ids):  # (m, T)
            h, _ = self.lstm(self.emb(ids))
            return self.out(h[:, -1])

    model = Model()
    torch_order = ("i", "f", "c", "o")  # torch's i, f, g, o; our c is its g
    W = np.concatenate([np.asarray(params[f"W{g}2"]) for g in torch_order], axis=0)
    b = np.concatenate([np.asarray(params[f"b{g}2"])[:, 0] for g in torch_order])
    values = {
        "emb.weight": E.T,
        "lstm.weight_hh_l0": W[:, :n_a],
        "lstm.weight_ih_l0": W[:, n_a:],
        "lstm.bias_ih_l0": b,
        "lstm.bias_hh_l0": np.zeros_like(b),
        "out.weight": np.asarray(params["W3"]),
        "out.bias": np.asarray(params["b3"])[:, 0],
    }
    named = dict(model.named_parameters())  # DPLSTM's state_dict also lists l0.ih.weight, …
    assert set(named) == set(values), sorted(named)
    with torch.no_grad():
        for k, v in values.items():
            named[k].copy_(torch.tensor(np.ascontiguousarray(v)))
    return model


def opacus_run(params, X, Y, X_test, Y_test, *, sigma, args, seed, steps):
    """The same network, init, q, C, σ, optimizer and steps in Opacus; (test accuracy, its ε)."""
    import torch
    from opacus import PrivacyEngine

    torch.manual_seed(seed)
    model = torch_model(params)
    x = torch.from_numpy(np.asarray(X, np.int64).T.copy())
    y = torch.from_numpy(np.argmax(np.asarray(Y), axis=0).astype(np.int64))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=round(args.q * x.shape[0])
    )
    if args.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    engine = PrivacyEngine(accountant="prv")
    model, opt, loader = engine.make_private(
        module=model, optimizer=opt, data_loader=loader, noise_multiplier=sigma,
        max_grad_norm=args.clip, poisson_sampling=True,
    )  # fmt: skip
    done = 0
    while done < steps:
        for xb, yb in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
            done += 1
            if done == steps:
                break
    with torch.no_grad():
        xt = torch.from_numpy(np.asarray(X_test, np.int64).T.copy())
        pred = model(xt).argmax(dim=1).numpy()
    acc = float(np.mean(pred == np.argmax(np.asarray(Y_test), axis=0)))
    return acc, float(engine.get_epsilon(args.delta))


def table(rows, args) -> str:
    head = "| target ε | ε spent (PLD) | σ | manualgrad test accuracy |"
    rule = "|---|---|---|---|"
    if args.opacus:
        head += " Opacus DPLSTM test accuracy | Opacus ε (PRV) |"
        rule += "---|---|"
    lines = [head, rule]
    for r in rows:
        if r["target_epsilon"] is None:
            line = f"| ∞ (non-private) | — | 0 | {_acc(r['test_accuracies'])} |"
            line += " — | — |" if args.opacus else ""
        else:
            line = (f"| {r['target_epsilon']:g} | {r['epsilon']:.3f} | "
                    f"{r['noise_multiplier']:.3f} | {_acc(r['test_accuracies'])} |")  # fmt: skip
            if args.opacus:
                line += f" {_acc(r['opacus_test_accuracies'])} | {r['opacus_epsilon_prv']:.3f} |"
        lines.append(line)
    return "\n".join(lines)


def _acc(values) -> str:
    a = 100 * np.asarray(values)
    return f"{a.mean():.1f}% ± {a.std():.1f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--q", type=float, default=0.05, help="sampling rate (batches of ≈ 256)")
    p.add_argument("--clip", type=float, default=1.0, help="clipping norm C")
    p.add_argument("--epochs", type=float, default=10)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate of DP-SGD")
    p.add_argument("--lr-nonprivate", type=float, default=0.01,
                   help="learning rate without privacy")  # fmt: skip
    p.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--opacus", action="store_true",
                   help="also train each private row with Opacus' DPLSTM (same init, q, C, σ, "
                        "optimizer, steps; Poisson data loader) and report its PRV ε")  # fmt: skip
    p.add_argument("--no-baseline", action="store_true", help="skip the non-private row")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    rows = run(args)
    print(table(rows, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "args": vars(args), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
