"""Run every data-parallel check on 4 virtual CPU devices and print one JSON line.

Started by tests/test_parallel.py in a subprocess (jax's device count is fixed when
its backend starts, so it cannot be changed inside the pytest process). Each entry
is a measured number or fact; the pytest side asserts on it. The reference is the
single-device, jitted `net.value_and_grad` (proven against `jax.grad` by the
core's tests), which shares no code path with the sharding and collectives.
"""

from __future__ import annotations

import functools
import json
import sys

import jax

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import helpers  # noqa: E402
import manualgrad as mg  # noqa: E402
from helpers import rel_err  # noqa: E402
from manualgrad.benchmark import all_reduce_stats  # noqa: E402

N_DEVICES = 4
DIMS = {"bce": [3, 5, 4, 1], "ce": [3, 6, 3], "mse": [3, 4, 2]}
ACTS = {
    "bce": ("relu", "tanh", "sigmoid"),
    "ce": ("leaky_relu", "softmax"),
    "mse": ("tanh", "linear"),
}


def problem(loss: str, m: int, seed: int = 0):
    return helpers.problem(DIMS[loss], loss, m, seed=seed)


def net_of(loss: str, **kw) -> mg.Network:
    return mg.network(ACTS[loss], loss, **kw)


def _single(net: mg.Network):
    """The single-device, jitted value_and_grad of `net`."""
    return jax.jit(net.value_and_grad)


def vs_single(build, loss, m, key=None, **kw):
    """`build(net)`'s (C, grads) against the single-device value_and_grad (tested vs jax.grad)."""
    params, X, Y = problem(loss, m)
    net = net_of(loss, **kw)
    got = build(net)(params, X, Y, *([key] if key is not None else []))
    return rel_err(got, _single(net)(params, X, Y, key))


def per_example_vs_single(kind, m, clip_norm=0.3, key=None, **kw):
    """Data-parallel norms / clipped grads against the single-device per_example ones."""
    mesh = mg.parallel.data_mesh()
    params, X, Y = problem("bce", m)
    net = net_of("bce", **kw)
    if kind == "norms":
        got = mg.parallel.data_parallel(net.per_example_norms, mesh, per_example=True)(
            params, X, Y, key
        )
        return rel_err(got, jax.jit(net.per_example_norms)(params, X, Y, key))
    if kind == "clipped":
        got = mg.parallel.data_parallel(net.clipped_grads, mesh)(params, X, Y, clip_norm, key)
    else:
        got = mg.parallel.shard_map_clipped_grads(net, mesh)(params, X, Y, clip_norm)
    return rel_err(got, jax.jit(net.clipped_grads)(params, X, Y, clip_norm, key))


def main() -> dict:
    mesh = mg.parallel.data_mesh()
    out: dict = {}

    def auto(net):
        return mg.parallel.data_parallel(net.value_and_grad, mesh)

    def smap(net):
        return mg.parallel.shard_map_value_and_grad(net, mesh)

    key = jax.random.key(7)
    out["agreement"] = {
        "auto_bce_m12": vs_single(auto, "bce", 12),
        "auto_mse_l2_m8": vs_single(auto, "mse", 8, l2=0.3),
        "auto_bce_dropout_m12": vs_single(auto, "bce", 12, keep_prob=0.7, key=key),
        "shard_map_bce_m10_padded": vs_single(smap, "bce", 10),
        "shard_map_ce_m13_padded": vs_single(smap, "ce", 13),
        "shard_map_mse_l2_m9_padded": vs_single(smap, "mse", 9, l2=0.3),
        "shard_map_bce_m3_fewer_than_devices": vs_single(smap, "bce", 3),
    }

    # --- per-example norms and clipped grads (manualgrad.per_example)
    out["agreement"]["per_example_norms_m12"] = per_example_vs_single("norms", 12)
    out["agreement"]["clipped_grads_m12"] = per_example_vs_single("clipped", 12, l2=0.1)
    out["agreement"]["clipped_grads_dropout_m12"] = per_example_vs_single(
        "clipped", 12, keep_prob=0.7, key=key, l2=0.1
    )
    out["agreement"]["shard_map_clipped_grads_m10_padded"] = per_example_vs_single(
        "smap", 10, l2=0.1
    )
    params, X, Y = problem("bce", 12)
    Xs, Ys = mg.parallel.shard_batch(X, Y, mesh)
    rep = mg.parallel.replicate(params, mesh)
    net = net_of("bce")
    norms_fn = mg.parallel.data_parallel(net.per_example_norms, mesh, per_example=True)
    clipped_fn = mg.parallel.data_parallel(net.clipped_grads, mesh)
    out["norms_spec"] = str(norms_fn(params, X, Y).sharding.spec)
    out["per_example_all_reduce"] = {
        "norms": all_reduce_stats(norms_fn.lower(rep, Xs, Ys).compile())._asdict(),
        "clipped": all_reduce_stats(clipped_fn.lower(rep, Xs, Ys, 0.3).compile())._asdict(),
        "shard_map_clipped": all_reduce_stats(
            mg.parallel.shard_map_clipped_grads(net, mesh).lower(rep, Xs, Ys, 0.3).compile()
        )._asdict(),
    }

    # --- data_parallel_fn inside a jitted scan of 2 steps (as manualgrad.training._loop uses it)
    net_l2 = net_of("bce", l2=0.1)
    dp_vag = mg.parallel.data_parallel_fn(mesh, net_l2.value_and_grad)

    def sgd_scan(vag, params, X, Y):
        def body(p, _):
            C, g = vag(p, X, Y)
            return jax.tree.map(lambda a, b: a - 0.5 * b, p, g), C

        return jax.lax.scan(body, params, None, length=2)

    params, X, Y = problem("bce", 12)
    got = jax.jit(functools.partial(sgd_scan, dp_vag))(params, X, Y)
    ref = jax.jit(functools.partial(sgd_scan, net_l2.value_and_grad))(params, X, Y)
    out["agreement"]["data_parallel_fn_scan_m12"] = rel_err(got, ref)
    out["data_parallel_fn_all_reduce"] = all_reduce_stats(
        jax.jit(functools.partial(sgd_scan, dp_vag)).lower(params, X, Y).compile()
    )._asdict()

    # --- mg.train with data_parallel_step, as the CLI's --devices 4 (mini-batches of 16 of 48)
    from manualgrad._cli.train import _data_parallel

    params, X, Y = problem("bce", 48)
    net = net_of("bce")
    mesh4 = _data_parallel(4, 48, 16)
    step4 = mg.training.data_parallel_step(net, optax.adam(0.05), mesh4, 16)
    r1 = mg.train(net, params, X, Y, optax.adam(0.05), epochs=3, batch_size=16, key=key)
    r4 = mg.train(net, params, X, Y, step4, epochs=3, key=key)
    out["agreement"]["train_devices_4_m48_b16"] = max(
        rel_err(r4.params, r1.params), rel_err(jnp.asarray(r4.history), jnp.asarray(r1.history))
    )
    try:
        _data_parallel(4, 320, 30)
        out["train_devices_error"] = None
    except Exception as err:
        out["train_devices_error"] = [type(err).__name__, str(err)]

    # --- the loop's data-parallel Step: 3 full-batch Adam steps vs single device
    params, X, Y = problem("bce", 12)
    opt = optax.adam(0.05)
    dp_step = mg.training.data_parallel_step(net_l2, opt, mesh)
    step = jax.jit(dp_step.step)
    p_dp, s_dp = mg.parallel.replicate(params, mesh), mg.parallel.replicate(opt.init(params), mesh)
    p_1, s_1 = params, opt.init(params)
    single = _single(net_l2)
    costs_dp, costs_1 = [], []
    for t in range(3):
        p_dp, s_dp, c_dp = step(p_dp, s_dp, t, X, Y, key)
        C, g = single(p_1, X, Y)
        updates, s_1 = opt.update(g, s_1, p_1)
        p_1 = optax.apply_updates(p_1, updates)
        costs_dp.append(c_dp)
        costs_1.append(C)
    out["agreement"]["train_step_adam_3_steps"] = max(
        rel_err(p_dp, p_1), rel_err(jnp.stack(costs_dp), jnp.stack(costs_1))
    )
    out["step_params_sharding"] = str(p_dp["W1"].sharding.spec)

    # --- placement
    params, X, Y = problem("bce", 12)
    Xs, Ys = mg.parallel.shard_batch(X, Y, mesh)
    out["x_shard_shapes"] = sorted({tuple(s.data.shape) for s in Xs.addressable_shards})
    out["x_spec"] = str(Xs.sharding.spec)
    Xl, Yl = mg.parallel.shard_batch_from_local(X, Y, mesh)  # one process: local = global
    out["from_local_equal"] = bool(
        Xl.shape == X.shape and jnp.array_equal(Xl, X) and jnp.array_equal(Yl, Y)
    )
    out["from_local_spec"] = str(Xl.sharding.spec)
    _, grads = auto(net)(params, X, Y)
    out["grads_spec"] = str(grads["W1"].sharding.spec)
    out["grads_on_every_device"] = len(grads["W1"].sharding.device_set) == N_DEVICES

    # --- clear errors when m does not divide
    errors = {}
    for name, call in {
        "auto_m10": lambda: auto(net)(params, X[:, :10], Y[:, :10]),
        "step_m10": lambda: step(params, opt.init(params), 0, X[:, :10], Y[:, :10], key),
        "shard_batch_m10": lambda: mg.parallel.shard_batch(X[:, :10], Y[:, :10], mesh),
        "data_parallel_fn_m10": lambda: jax.jit(functools.partial(sgd_scan, dp_vag))(
            params, X[:, :10], Y[:, :10]
        ),
    }.items():
        try:
            call()
            errors[name] = None
        except Exception as err:
            errors[name] = [type(err).__name__, str(err)]
    out["errors"] = errors

    # --- all-reduces in the compiled HLO
    n_params = sum(v.size for v in params.values())
    out["param_bytes"] = int(n_params * 8)
    out["n_param_arrays"] = len(params)
    rep = mg.parallel.replicate(params, mesh)
    stats = {
        "single_device": all_reduce_stats(_single(net).lower(params, X, Y).compile()),
        "auto": all_reduce_stats(auto(net).lower(rep, Xs, Ys).compile()),
        "shard_map": all_reduce_stats(smap(net).lower(rep, Xs, Ys).compile()),
    }
    out["all_reduce"] = {k: v._asdict() for k, v in stats.items()}
    return out


if __name__ == "__main__":
    result = main()
    sys.stdout.write(json.dumps(result) + "\n")
