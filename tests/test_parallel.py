"""Data parallelism on 4 virtual CPU devices, checked against single-device results.

jax fixes its device count when the backend starts, so the checks run once, in a
subprocess (tests/_parallel_worker.py, with `jax_num_cpu_devices = 4`), which prints
a JSON dict of measurements; each test below asserts one property of that dict.
The pytest process itself keeps its single device, so other tests are unaffected.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

# two subprocesses that compile on 4 and 2x2 virtual devices; one xdist worker runs them all,
# so each module fixture runs once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("parallel")]

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_parallel_worker.py")
MULTIHOST_WORKER = Path(__file__).with_name("_multihost_worker.py")

# (C, grads) vs the single-device jit(value_and_grad), float64.
AGREEMENT = [
    "auto_bce_m12",
    "auto_mse_l2_m8",
    "auto_bce_dropout_m12",
    "shard_map_bce_m10_padded",
    "shard_map_ce_m13_padded",
    "shard_map_mse_l2_m9_padded",
    "shard_map_bce_m3_fewer_than_devices",
    "train_step_adam_3_steps",
    "data_parallel_fn_scan_m12",
    "train_devices_4_m48_b16",
    "per_example_norms_m12",
    "clipped_grads_m12",
    "clipped_grads_dropout_m12",
    "shard_map_clipped_grads_m10_padded",
]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("XLA_FLAGS", None)  # the workers set their own device counts
    return env


@pytest.fixture(scope="session")  # once per worker, even when xdist interleaves modules
def results() -> dict:
    proc = subprocess.run(
        [sys.executable, str(WORKER)], capture_output=True, text=True, env=_env(), timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")  # once per worker, even when xdist interleaves modules
def multihost() -> list[dict]:
    """Two processes × 2 CPU devices joined by jax.distributed (gloo), one JSON each."""
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = str(sock.getsockname()[1])
    procs = [
        subprocess.Popen(
            [sys.executable, str(MULTIHOST_WORKER), str(i), port],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for i in range(2)
    ]
    outs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=600)
            assert proc.returncode == 0, stderr[-4000:]
            outs.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for proc in procs:  # on failure, do not leave the other process waiting
            if proc.poll() is None:
                proc.kill()
    return outs


@pytest.mark.parametrize("case", AGREEMENT)
def test_data_parallel_equals_single_device_float64(results, case):
    assert results["agreement"][case] <= 1e-12


def test_shard_batch_splits_columns_into_equal_blocks(results):
    # m = 12 examples over 4 devices: each holds all 3 rows and 3 columns
    assert (results["x_spec"], results["x_shard_shapes"]) == ("P(None, 'batch')", [[3, 3]])


def test_shard_batch_from_local_builds_the_global_array(results):
    assert results["from_local_equal"] and results["from_local_spec"] == "P(None, 'batch')"


def test_grads_and_stepped_params_are_replicated(results):
    assert (
        results["grads_spec"],
        results["grads_on_every_device"],
        results["step_params_sharding"],
    ) == ("P()", True, "P()")


@pytest.mark.parametrize(
    "call", ["auto_m10", "step_m10", "shard_batch_m10", "data_parallel_fn_m10"]
)
def test_m_not_a_multiple_of_devices_is_a_clear_shape_error(results, call):
    kind, message = results["errors"][call]
    assert kind == "ShapeError" and "m = 10" in message and "multiple of the 4 devices" in message


def test_single_device_jit_has_no_all_reduce(results):
    assert results["all_reduce"]["single_device"]["arrays"] == 0


@pytest.mark.parametrize("variant", ["auto", "shard_map"])
def test_all_reduce_moves_every_gradient_and_the_cost_once(results, variant):
    # one array per W[l], b[l] plus the scalar cost: 2L + 1, however XLA combines them
    stats = results["all_reduce"][variant]
    assert stats["arrays"] == results["n_param_arrays"] + 1


@pytest.mark.parametrize("variant", ["auto", "shard_map"])
def test_all_reduced_bytes_equal_the_parameter_bytes_plus_the_cost(results, variant):
    assert results["all_reduce"][variant]["bytes"] == results["param_bytes"] + 8


def test_data_parallel_fn_in_a_jitted_loop_all_reduces(results):
    # 2 scanned steps; each step's 2L + 1 arrays are reduced inside the loop body
    assert results["data_parallel_fn_all_reduce"]["arrays"] >= results["n_param_arrays"] + 1


def test_multihost_job_has_two_processes_and_a_global_mesh(multihost):
    assert [
        (r["processes"], r["devices"], r["local_devices"], r["global_shape"]) for r in multihost
    ] == [(2, 4, 2, [3, 8])] * 2


@pytest.mark.parametrize("case", ["auto", "shard_map", "step_sgd_2_steps"])
def test_multihost_from_local_data_equals_single_device_float64(multihost, case):
    assert max(r["agreement"][case] for r in multihost) <= 1e-12


def test_per_example_norms_stay_split_over_the_devices(results):
    assert results["norms_spec"] == "P('batch',)"


def test_per_example_norms_need_no_all_reduce(results):
    # ‖g_i‖ uses column i of every dZ[l] and A[l-1] only: nothing crosses devices
    assert results["per_example_all_reduce"]["norms"]["ops"] == 0


@pytest.mark.parametrize("variant", ["clipped", "shard_map_clipped"])
def test_clipped_grads_all_reduce_only_the_clipped_sums_of_2(results, variant):
    # exactly the 2L arrays dW[l], db[l] (no norm, no clip factor, no cost), i.e. the
    # parameter bytes, however XLA groups them into all-reduce instructions
    stats = results["per_example_all_reduce"][variant]
    assert (stats["arrays"], stats["bytes"]) == (results["n_param_arrays"], results["param_bytes"])


def test_train_devices_option_rejects_batches_that_do_not_split(results):
    # 320 examples in batches of 30: batches of 30 and 20, neither a multiple of 4
    kind, message = results["train_devices_error"]
    assert kind == "ConfigError" and "batches of 20 and 30" in message
