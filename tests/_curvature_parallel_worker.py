"""Curvature on 4 virtual CPU devices against one device; prints one JSON line.

Started by tests/test_curvature.py in a subprocess (jax fixes its device count when
its backend starts). Each function of `manualgrad.curvature` is jitted twice: once on
inputs placed on one device, once with X, Y split by columns over 4 devices
(as `mg.parallel.shard_batch` does, written here with `jax.sharding` so the worker
depends on manualgrad.curvature alone) and params replicated, so XLA partitions the forward and
the chain by columns and turns the sums over examples into all-reduces. The
single-device result is proven against jax oracles by test_curvature.py.
"""

from __future__ import annotations

import itertools
import json

import jax

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

import jax.numpy as jnp  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import manualgrad as mg  # noqa: E402
from manualgrad import curvature  # noqa: E402
from manualgrad.benchmark import all_reduce_stats  # noqa: E402

DIMS = [3, 5, 4, 3]
ACTS = ("tanh", "relu", "softmax")
M = 12
#: tiny arrays, compiled once: skip LLVM's expensive passes (the arithmetic is unchanged)
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def problem():
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    params = NET.init(DIMS, k1, dtype=jnp.float64)
    X = jax.random.normal(k2, (DIMS[0], M), jnp.float64)
    Y = jax.nn.one_hot(jax.random.randint(k3, (M,), 0, DIMS[-1]), DIMS[-1], dtype=jnp.float64).T
    return params, X, Y


def rel_err(got, want) -> float:
    """max over leaves of max|got − want| / max|want|."""
    errs = jax.tree.map(
        lambda g, w: float(jnp.max(jnp.abs(g - w)) / jnp.maximum(jnp.max(jnp.abs(w)), 1e-300)),
        got,
        want,
    )
    return max(jax.tree.leaves(errs))


NET = mg.network(ACTS, "ce")
NET_L2 = mg.network(ACTS, "ce", l2=0.1)
FUNCTIONS = {
    "sum_grad_squared": lambda p, X, Y, k: curvature.sum_grad_squared(NET, p, X, Y),
    "diag_ggn_exact": lambda p, X, Y, k: curvature.diag_ggn(NET_L2, p, X, Y),
    "diag_ggn_mc": lambda p, X, Y, k: curvature.diag_ggn(NET, p, X, Y, key=k, mc_samples=3),
    "kfac_factors_exact": lambda p, X, Y, k: curvature.kfac_factors(NET, p, X, Y),
    "kfac_factors_mc": lambda p, X, Y, k: curvature.kfac_factors(NET, p, X, Y, key=k, mc_samples=2),
}


def main() -> dict:
    mesh = Mesh(jax.devices(), ("batch",))
    params, X, Y = problem()
    key = jax.random.key(11)
    Xs, Ys = jax.device_put((X, Y), NamedSharding(mesh, P(None, "batch")))
    replicated = NamedSharding(mesh, P())
    rep = jax.device_put((params, key), replicated)
    out: dict = {"n_devices": len(jax.devices()), "agreement": {}, "all_reduce": {}}
    for name, fn in FUNCTIONS.items():
        jitted = jax.jit(fn, out_shardings=replicated)
        sharded = jitted.lower(rep[0], Xs, Ys, rep[1]).compile(compiler_options=FAST_COMPILE)
        single = jax.jit(fn).lower(params, X, Y, key).compile(compiler_options=FAST_COMPILE)
        out["agreement"][name] = rel_err(sharded(rep[0], Xs, Ys, rep[1]), single(params, X, Y, key))
        out["all_reduce"][name] = all_reduce_stats(sharded)._asdict()
    out["x_sharding"] = str(Xs.sharding.spec)
    out["param_bytes"] = sum(int(v.size) * 8 for v in params.values())
    out["kfac_bytes"] = sum(
        ((n_prev + 1) ** 2 + n**2) * 8 for n_prev, n in itertools.pairwise(DIMS)
    )
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
