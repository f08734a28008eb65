"""Smoke test of an installed manualgrad, run by .ci/run in a fresh venv with the built wheel.

Run it with `python -I` so that neither PYTHONPATH nor the current directory can put the
checkout's src/ on the path: it must find the installed package, and it checks that it did.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

import manualgrad

installed = Path(manualgrad.__file__).resolve()
site_packages = Path(sys.prefix).resolve()
assert site_packages in installed.parents, f"imported {installed}, not the wheel in {sys.prefix}"
version = importlib.metadata.version("manualgrad")
assert manualgrad.__version__ == version, (manualgrad.__version__, version)
assert (installed.parent / "py.typed").is_file(), "the wheel lacks py.typed"
dist = importlib.metadata.distribution("manualgrad")
assert any(f.name == "LICENSE" for f in dist.files or []), "the wheel lacks its LICENSE"

# The hand-written gradient of a small network equals jax.grad of the same cost.
X = jax.random.normal(jax.random.key(0), (3, 8))
Y = (X[:1] > 0).astype(jnp.float32)
net = manualgrad.network(["tanh", "sigmoid"])
params = net.init([3, 4, 1], jax.random.key(1))
with jax.default_matmul_precision("highest"):
    C, grads = jax.jit(net.value_and_grad)(params, X, Y)
    auto = jax.grad(lambda p: net.cost(p, X, Y))(params)
for k in params:
    assert jnp.allclose(grads[k], auto[k], rtol=1e-5, atol=1e-7), k

# The console script is installed and runs its main job.
check = Path(sys.executable).parent / "manualgrad"
run = subprocess.run([check, "check"], capture_output=True, text=True, check=False)
assert run.returncode == 0, run.stdout + run.stderr

print(f"smoke test passed: manualgrad {version} from {installed.parent}")
