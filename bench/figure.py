"""Draw `manualgrad bench --json` results: manual / (a) with its interval, and % of peak.

    python bench/figure.py cpu.jsonl                          # -> docs/img/bench_cpu.png
    python bench/figure.py gpu.jsonl --out docs/img/bench_gpu.png

Left panel: for each grid point (network @ m) and policy, the median of the per-round
ratios manual / (a) with its 95 % bootstrap interval; the band 0.98–1.02 and the line at
1.00 mark parity (an interval that crosses 1.00 is a tie). Right panel: the fraction of
the rate of an n×n matmul (paired with each step, same run) that manual and (a) reach.
The title carries the device, its cores and the date from the JSON's machine row, and
says "provisional" when the load average was above the number of cores.
Needs matplotlib (`pip install "manualgrad[plot]"`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from manualgrad.benchmark import network_label


def load(paths: list[Path]) -> tuple[dict, list[dict]]:
    rows = [json.loads(line) for p in paths for line in p.read_text().splitlines() if line.strip()]
    info = next((r for r in rows if r.get("kind") == "machine"), {})
    grid = [r for r in rows if r.get("kind") == "grid" and "manual_vs_jax" in r]
    return info, grid


def draw(info: dict, grid: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(dict.fromkeys(r["policy"] for r in grid))
    labels = list(dict.fromkeys(network_label(r["layer_dims"], r["m"]) for r in grid))
    height = 0.8 / max(len(policies), 1)
    fig, (ax_r, ax_p) = plt.subplots(1, 2, figsize=(11, 1.2 + 0.55 * len(labels) * len(policies)),
                                     sharey=True, gridspec_kw={"width_ratios": [3, 2]})  # fmt: skip
    colours = plt.get_cmap("tab10")
    for j, policy in enumerate(policies):
        rows = [r for r in grid if r["policy"] == policy]
        for k, r in enumerate(rows):
            label = network_label(r["layer_dims"], r["m"])
            y = labels.index(label) + (j - (len(policies) - 1) / 2) * height
            q = r["manual_vs_jax"]
            xerr = [[q["median"] - q["low"]], [q["high"] - q["median"]]]
            ax_r.errorbar(q["median"], y, xerr=xerr, fmt="o", color=colours(j), capsize=3,
                          label=policy if k == 0 else None)  # fmt: skip
            for name, marker in (("manual", "o"), ("jax", "x")):
                frac = r.get(f"{name}_frac_peak")
                if frac is not None:
                    lo, hi = frac["median"] - frac["low"], frac["high"] - frac["median"]
                    err = [[100 * lo], [100 * hi]]
                    ax_p.errorbar(100 * frac["median"], y, xerr=err, fmt=marker, color=colours(j),
                                  capsize=2)  # fmt: skip
    ax_r.axvspan(0.98, 1.02, color="0.9", zorder=0)
    ax_r.axvline(1.0, color="0.4", lw=1)
    ax_r.set_yticks(range(len(labels)), labels)
    ax_r.invert_yaxis()
    ax_r.set_xlabel("manual / (a) jax.grad of an idiomatic cost (median, 95% CI)")
    ax_r.legend(loc="best", fontsize="small")
    ax_p.set_xlabel("% of the n×n matmul rate (o manual, x (a))")
    ax_p.set_xlim(left=0)
    rounds = grid[0].get("rounds", "?") if grid else "?"
    load, cores = (info.get("load_avg") or [0])[0], info.get("cores") or 1
    busy = (
        f"\nshared machine (load average {load:.1f} on {cores} cores): provisional"
        if load > cores
        else ""
    )
    fig.suptitle(f"gradient step — {info.get('device', '?')}, {info.get('cores', '?')} cores, "
                 f"{info.get('date', '?')}, {rounds} paired rounds per point{busy}")  # fmt: skip
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jsonl", type=Path, nargs="+", help="`manualgrad bench --json` output")
    parser.add_argument("--out", type=Path, default=Path("docs/img/bench_cpu.png"))
    args = parser.parse_args(argv)
    info, grid = load(args.jsonl)
    if not grid:
        raise SystemExit("no timed grid rows in the input")
    draw(info, grid, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
