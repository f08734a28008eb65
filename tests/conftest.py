"""Strict JAX settings for the whole test session, hypothesis profiles, a float64 fixture.

Rank promotion and dtype promotion are strict, so accidental broadcasting and silent
dtype mixing fail loudly. float64 is switched on only inside tests that ask for the
`x64` fixture (`jax.enable_x64` is a context manager), so it cannot leak into float32
tests. Hypothesis runs the "ci" profile when `CI` is set (derandomized: the same
examples on every run, so CI is reproducible) and the faster, random "dev" profile
otherwise; `HYPOTHESIS_PROFILE` overrides both. The profile decides every test's
`max_examples` except the fuzz tests' (tests/test_fuzz.py), which set their own budget.

The suite compiles for the CPU with LLVM's optimisation level 0 and XLA's classic fusion
emitters (`XLA_FLAGS`, :data:`FAST_COMPILE_FLAGS`): most of its time is spent compiling
small programs once, not running them, and these two flags take about a third off the
run on a 2-core machine. Both sides of every comparison (manualgrad and its oracle) are
compiled alike. The flags are tried once in a subprocess before they are used (an XLA
that does not know a flag aborts); set `MANUALGRAD_TEST_XLA_FLAGS=default` to test
with jax's own settings, as users run.

One persistent XLA compilation cache serves the whole run: the xdist workers and the
subprocesses the tests start (CLI runs, the multi-device workers) reuse each other's
compiled programs instead of compiling the same step again. It starts empty in a
fresh temporary folder and is deleted at the end, so nothing carries over between runs
(set `JAX_COMPILATION_CACHE_DIR` to keep one of your own).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import jax
import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]  # tests/test_testing.py runs the pytest plugin in a sandbox

#: Compile fast rather than well (see the module docstring); CPU code generation only.
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")


def _xla_accepts(flags: str) -> bool:
    """Whether a fresh process starts jax's CPU backend with these XLA_FLAGS (unknown: abort)."""
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    probe = [sys.executable, "-c", "import jax; jax.devices()"]
    try:
        return subprocess.run(probe, env=env, capture_output=True, timeout=120).returncode == 0
    except subprocess.TimeoutExpired:
        return False


# Decided once, by the first process (pytest or xdist's controller): the workers and the
# subprocesses the tests start inherit XLA_FLAGS and the decision. jax reads XLA_FLAGS
# when its backend starts, which no import before this point has done.
if "MANUALGRAD_TEST_XLA_FLAGS" not in os.environ:
    _chosen = "default"
    _user = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in _user:
        _fast = " ".join((_user, *FAST_COMPILE_FLAGS)).strip()
        if _xla_accepts(_fast):
            os.environ["XLA_FLAGS"] = _fast
            _chosen = "fast"
    os.environ["MANUALGRAD_TEST_XLA_FLAGS"] = _chosen

# The first process to load this file (pytest itself, or xdist's controller) makes the
# cache folder; the workers and subprocesses it starts inherit the variables.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="manualgrad-tests-xla-")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
# jax was imported (by the manualgrad pytest plugin) before this file set them
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update(
    "jax_persistent_cache_min_compile_time_secs",
    float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")),
)
jax.config.update(
    "jax_persistent_cache_min_entry_size_bytes",
    int(os.environ.get("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")),
)


def pytest_unconfigure(config):
    if _OWN_CACHE:  # only the process that made the folder removes it
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

# Scripts the tests start in subprocesses: importing them (as --doctest-modules would)
# would switch on float64 and change the device count for the whole worker. The student
# gallery is the input of `check --against` tests, and some of it works at import.
collect_ignore_glob = ["_*worker.py", "student_gallery/*.py"]

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("ci", max_examples=20, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=10, **_COMMON)
settings.register_profile("thorough", max_examples=200, **_COMMON)
_DEFAULT_PROFILE = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or _DEFAULT_PROFILE)


@pytest.fixture
def x64():
    """Run the test body with float64 enabled; restored afterwards."""
    with jax.enable_x64(True):
        yield
