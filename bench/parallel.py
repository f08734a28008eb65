"""Data parallelism on N virtual CPU devices: agreement, bytes all-reduced, step times.

    python bench/parallel.py --quick              # a small network, seconds
    python bench/parallel.py                      # 4 virtual devices, JSON to stdout + table
    python bench/parallel.py --json out.json      # also write the JSON to a file
    python bench/parallel.py --model --tflops 400 # the paper model of docs/scaling.md

What it reports:
- agreement: max relative difference of the data-parallel (`jit` on sharded inputs)
  and `shard_map` cost and grads from the single-device `jit(value_and_grad)`;
- communication per step: the bytes all-reduced, counted from the parameter shapes
  (every W[l], b[l] once, plus the scalar cost) and read from the all-reduce
  instructions of the compiled HLO; and what a ring all-reduce sends per device,
  2(N-1)/N times that;
- step times, each sharded variant against its single-device reference in paired,
  interleaved rounds (`manualgrad.benchmark`: median of per-round ratios with a 95 %
  bootstrap interval). The virtual devices share this machine's cores, so the times
  show overhead, not speed-up: the scaling on real GPUs is worked out on paper in
  docs/scaling.md (`--model`).

Every variant is compiled ahead of time and warmed up; agreement is checked before
timing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=4, help="virtual CPU devices (default 4)")
    p.add_argument("--dims", type=int, nargs="+", default=[256, 512, 512, 1])
    p.add_argument("--m", type=int, default=2048, help="global batch (examples)")
    p.add_argument("--rounds", type=int, default=11, help="paired rounds (default 11)")
    p.add_argument("--quick", action="store_true", help="a small network, 3 rounds")
    p.add_argument("--json", type=Path, help="also write the JSON result here")
    p.add_argument("--model", action="store_true", help="print the paper scaling model only")
    p.add_argument("--model-dims", type=int, nargs="+", default=[1024, 4096, 4096, 4096, 1])
    p.add_argument(
        "--tflops",
        type=float,
        default=400.0,
        help="sustained single-GPU TFLOP/s for the model (placeholder: see docs)",
    )
    p.add_argument(
        "--link-gbps",
        type=float,
        default=450.0,
        help="NVLink GB/s per direction per GPU (H100 NVLink 4: 450)",
    )
    p.add_argument("--batches", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    return p.parse_args(argv)


# --------------------------------------------------------------------------- paper model


def model_counts(dims: list[int]) -> dict:
    """Parameters, gradient bytes (float32) and training FLOPs per example.

    Per example and layer l: forward Z = W A_prev is 2 n_l n_{l-1} FLOPs; backward
    (2) dW is 2 n_l n_{l-1}, (4) dA[l-1] another 2 n_l n_{l-1} except at l = 1,
    where dA[0] = dX is never needed. Elementwise work is ignored (O(n_l)).
    """
    weights = sum(dims[l] * dims[l - 1] for l in range(1, len(dims)))
    biases = sum(dims[1:])
    flops = 6 * weights - 2 * dims[1] * dims[0]
    return {
        "params": weights + biases,
        "grad_bytes": 4 * (weights + biases),
        "flops_per_example": flops,
    }


def layer_overlap_ms(dims, per_device, tflops, link_gbps, n_devices) -> float:
    """Step time when each layer's dW, db all-reduce starts as soon as (2) produced it.

    Forward, then backward from layer L down to 1; the link reduces one layer's
    gradients at a time, in the order they appear (a bucket per layer). The step ends
    when the last all-reduce (layer 1's, whose gradient comes last) is done.
    """
    F = tflops * 1e12
    ring = 2 * (n_devices - 1) / n_devices / (link_gbps * 1e9)
    L = len(dims) - 1
    macs = [dims[l] * dims[l - 1] for l in range(1, L + 1)]
    t = 2 * sum(macs) * per_device / F  # forward
    link_free = 0.0
    for l in range(L, 0, -1):
        t += (4 if l > 1 else 2) * macs[l - 1] * per_device / F  # (2) and (4) of layer l
        start = max(t, link_free)
        link_free = start + ring * 4 * (macs[l - 1] + dims[l])
    return 1e3 * max(t, link_free)


def paper_model(dims, batches, tflops, link_gbps, devices=(1, 2, 4, 8)) -> list[dict]:
    """Step time vs devices: compute (B/N)·flops/F; ring all-reduce 2(N-1)/N·S/BW."""
    c = model_counts(dims)
    rows = []
    for B in batches:
        t1 = B * c["flops_per_example"] / (tflops * 1e12)
        for N in devices:
            t_comp = t1 / N
            t_comm = 2 * (N - 1) / N * c["grad_bytes"] / (link_gbps * 1e9)
            serial, overlap = t_comp + t_comm, max(t_comp, t_comm)
            layered = layer_overlap_ms(dims, B // N, tflops, link_gbps, N)
            rows.append(
                {
                    "batch": B,
                    "devices": N,
                    "per_device": B // N,
                    "compute_ms": 1e3 * t_comp,
                    "allreduce_ms": 1e3 * t_comm,
                    "step_ms_no_overlap": 1e3 * serial,
                    "step_ms_layer_overlap": layered,
                    "step_ms_full_overlap": 1e3 * overlap,
                    "speedup_no_overlap": t1 / serial,
                    "speedup_layer_overlap": 1e3 * t1 / layered,
                    "speedup_full_overlap": t1 / overlap,
                }
            )
    return rows


def print_model(args) -> dict:
    from rich.console import Console
    from rich.table import Table

    c = model_counts(args.model_dims)
    rows = paper_model(args.model_dims, args.batches, args.tflops, args.link_gbps)
    table = Table(
        title=f"{args.model_dims}: {c['params']:,} params, "
        f"{c['grad_bytes'] / 1e6:.1f} MB of fp32 grads, "
        f"{c['flops_per_example'] / 1e6:.1f} MFLOP/example; "
        f"F = {args.tflops:g} TFLOP/s, link {args.link_gbps:g} GB/s"
    )
    for col in (
        "B",
        "N",
        "B/N",
        "compute ms",
        "all-reduce ms",
        "serial ms",
        "×",
        "per-layer overlap ms",
        "×",
        "ideal overlap ms",
        "×",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["batch"]),
            str(r["devices"]),
            str(r["per_device"]),
            f"{r['compute_ms']:.3f}",
            f"{r['allreduce_ms']:.3f}",
            f"{r['step_ms_no_overlap']:.3f}",
            f"{r['speedup_no_overlap']:.2f}",
            f"{r['step_ms_layer_overlap']:.3f}",
            f"{r['speedup_layer_overlap']:.2f}",
            f"{r['step_ms_full_overlap']:.3f}",
            f"{r['speedup_full_overlap']:.2f}",
        )
    Console(stderr=True, width=120).print(table)
    return {
        "model": {
            "dims": args.model_dims,
            **c,
            "tflops": args.tflops,
            "link_gbps": args.link_gbps,
            "rows": rows,
        }
    }


# --------------------------------------------------------------------------- measurement


def measure(args) -> dict:
    import jax

    jax.config.update("jax_num_cpu_devices", args.devices)
    import jax.numpy as jnp

    import manualgrad as mg
    from manualgrad import benchmark as B
    from manualgrad.parallel import (
        data_mesh,
        data_parallel,
        replicate,
        shard_batch,
        shard_map_clipped_grads,
        shard_map_value_and_grad,
    )

    n = len(jax.devices())
    if n != args.devices:
        raise SystemExit(f"expected {args.devices} devices, jax sees {n}")
    acts = ("relu",) * (len(args.dims) - 2) + ("sigmoid",)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    net = mg.network(acts, precision="highest")
    params = net.init(args.dims, k1)
    X = jax.random.normal(k2, (args.dims[0], args.m))
    Y = (jax.random.uniform(k3, (1, args.m)) > 0.5).astype(jnp.float32)
    mesh = data_mesh()
    Xs, Ys = shard_batch(X, Y, mesh)
    rep = replicate(params, mesh)
    vag, norms, clipped = net.value_and_grad, net.per_example_norms, net.clipped_grads
    # name: (function of (params, X, Y), the single-device variant it must agree with)
    variants = {
        "value_and_grad, single device": (vag, None),
        "value_and_grad, jit on sharded inputs": (
            data_parallel(vag, mesh),
            "value_and_grad, single device",
        ),
        "value_and_grad, shard_map + psum": (
            shard_map_value_and_grad(net, mesh),
            "value_and_grad, single device",
        ),
        "per_example_norms, single device": (norms, None),
        "per_example_norms, jit on sharded inputs": (
            data_parallel(norms, mesh, per_example=True),
            "per_example_norms, single device",
        ),
        "clipped_grads, single device": (lambda p, X, Y: clipped(p, X, Y, 1.0), None),
        "clipped_grads, jit on sharded inputs": (
            lambda p, X, Y: data_parallel(clipped, mesh)(p, X, Y, 1.0),
            "clipped_grads, single device",
        ),
        "clipped_grads, shard_map + psum": (
            lambda p, X, Y: shard_map_clipped_grads(net, mesh)(p, X, Y, 1.0),
            "clipped_grads, single device",
        ),
    }

    param_bytes = sum(v.size * v.dtype.itemsize for v in params.values())
    counted = param_bytes + 4  # every W, b and the float32 cost
    compiled, outputs, results = {}, {}, {}
    for name, (fn, ref_name) in variants.items():
        inputs = (params, X, Y) if ref_name is None else (rep, Xs, Ys)
        exe = B.aot_compile(fn, *inputs)
        compiled[name] = (exe, inputs)
        outputs[name] = exe(*inputs)
        err = 0.0 if ref_name is None else B.max_rel_err(outputs[name], outputs[ref_name])
        if err > 1e-5:
            raise SystemExit(f"{name} disagrees with the single device: {err:.2e}")
        stats = B.all_reduce_stats(exe)
        results[name] = {
            "max_rel_err": err,
            "all_reduce_ops": stats.ops,
            "all_reduce_arrays": stats.arrays,
            "all_reduce_bytes_hlo": stats.bytes,
        }
    # each sharded variant against its single-device reference, in paired rounds
    for name, (_, ref_name) in variants.items():
        exe, inputs = compiled[name]
        if ref_name is None:
            continue
        ref_exe, ref_inputs = compiled[ref_name]
        timings = B.paired_rounds(
            {
                "v": lambda exe=exe, inputs=inputs: exe(*inputs),
                "ref": lambda ref_exe=ref_exe, ref_inputs=ref_inputs: ref_exe(*ref_inputs),
            },
            rounds=args.rounds,
        )
        ratio = B.ratio_interval(timings.seconds["v"], timings.seconds["ref"])
        results[name]["median_ms"] = 1e3 * float(jnp.median(jnp.array(timings.seconds["v"])))
        results[ref_name]["median_ms"] = 1e3 * float(jnp.median(jnp.array(timings.seconds["ref"])))
        results[name]["vs_single_device"] = ratio.as_json()
    return {
        "machine": B.machine(),
        "devices": n,
        "dims": args.dims,
        "m": args.m,
        "dtype": "float32",
        "precision": "highest",
        "backend": jax.default_backend(),
        "param_bytes": param_bytes,
        "all_reduce_bytes_counted": counted,
        "ring_bytes_sent_per_device": 2 * (n - 1) / n * counted,
        "rounds": args.rounds,
        "variants": results,
    }


def print_measurement(res: dict) -> None:
    from rich.console import Console

    from manualgrad import benchmark as B

    info = res["machine"]
    table = B.results_table(
        f"{res['dims']}, m = {res['m']}, {res['devices']} virtual {res['backend']} "
        f"devices; counted all-reduce bytes/step = {res['all_reduce_bytes_counted']:,} "
        "(params + cost)",
        f"{info['device']}, {info['cores']} cores, {info['date']}; {res['rounds']} paired rounds",
        ("variant", "max err", "AR ops", "arrays", "AR bytes", "ms", "/single [95% CI]"),
    )
    for name, r in res["variants"].items():
        q = r.get("vs_single_device")
        short = name.replace(", single device", ": 1 device").replace(", jit on ", ": jit, ")
        table.add_row(
            short.replace(", shard_map + psum", ": shard_map"),
            f"{r['max_rel_err']:.0e}",
            str(r["all_reduce_ops"]),
            str(r["all_reduce_arrays"]),
            f"{r['all_reduce_bytes_hlo']:,}",
            f"{r['median_ms']:.2f}",
            "—" if q is None else f"{q['median']:.2f} [{q['low']:.2f},{q['high']:.2f}]",
        )
    Console(stderr=True, width=110).print(table)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.model:
        result = print_model(args)
    else:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        if args.quick:
            args.dims, args.m, args.rounds = [64, 128, 128, 1], 512, 3
        result = measure(args)
        print_measurement(result)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
