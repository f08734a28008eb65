"""One of two processes of a 2-host × 2-CPU-device job (jax.distributed + gloo).

Usage: python _multihost_worker.py PROCESS_ID PORT. Each process holds 4 of the 8
examples, builds the global X, Y with `shard_batch_from_local`, and compares the
data-parallel results with the single-device ones on all 8 examples (which every
process can compute locally); prints one JSON line.
"""

from __future__ import annotations

import json
import sys

import jax

process_id, port = int(sys.argv[1]), sys.argv[2]
jax.config.update("jax_num_cpu_devices", 2)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.distributed.initialize(
    coordinator_address=f"localhost:{port}", num_processes=2, process_id=process_id
)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import manualgrad as mg  # noqa: E402
from helpers import rel_err  # noqa: E402

ACTS = ("relu", "tanh", "sigmoid")


def local(x):
    """This process's copy of a replicated array, as numpy."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), x)


def main() -> dict:
    mesh = mg.parallel.data_mesh()
    net = mg.network(ACTS, l2=0.1)
    params = net.init([3, 5, 4, 1], jax.random.key(0), dtype=jnp.float64)
    rng = np.random.default_rng(0)  # every process draws the same 8 examples…
    X_all = rng.normal(size=(3, 8))
    Y_all = (rng.uniform(size=(1, 8)) > 0.5).astype(np.float64)
    cols = slice(4 * process_id, 4 * process_id + 4)  # …and loads only its 4
    X, Y = mg.parallel.shard_batch_from_local(X_all[:, cols], Y_all[:, cols], mesh)

    ref = local(net.value_and_grad(params, X_all, Y_all))
    auto = mg.parallel.data_parallel(net.value_and_grad, mesh)(params, X, Y)
    smap = mg.parallel.shard_map_value_and_grad(net, mesh)(params, X, Y)

    opt = optax.sgd(0.5)
    plain = mg.network(ACTS)
    dp_step = mg.training.data_parallel_step(plain, opt, mesh)  # one full-batch step per unit
    step = jax.jit(dp_step.step)
    p, s = params, dp_step.init(params)
    p1, s1 = params, opt.init(params)
    for t in range(2):
        p, s, _ = step(p, s, t, X, Y, jax.random.key(0))
        _, g1 = plain.value_and_grad(p1, X_all, Y_all)
        u, s1 = opt.update(g1, s1, p1)
        p1 = optax.apply_updates(p1, u)
    return {
        "process": process_id,
        "processes": jax.process_count(),
        "devices": len(jax.devices()),
        "local_devices": len(jax.local_devices()),
        "global_shape": list(X.shape),
        "agreement": {
            "auto": rel_err(local(auto), ref),
            "shard_map": rel_err(local(smap), ref),
            "step_sgd_2_steps": rel_err(local(p), local(p1)),
        },
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main()) + "\n")
