"""Strict JAX settings for the whole test session, hypothesis profiles, a float64 fixture.

Rank promotion and dtype promotion are strict, so accidental broadcasting and silent
dtype mixing fail loudly. float64 is switched on only inside tests that ask for the
`x64` fixture (`jax.enable_x64` is a context manager), so it cannot leak into float32
tests. Hypothesis runs the "ci" profile when `CI` is set (derandomized: the same
examples on every run, so CI is reproducible) and the faster, random "dev" profile
otherwise; `HYPOTHESIS_PROFILE` overrides both. Tests set no `max_examples` of their
own, so the profile decides.
"""

from __future__ import annotations

import os

import jax
import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]  # tests/test_testing.py runs the pytest plugin in a sandbox

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

# Scripts the tests start in subprocesses: importing them (as --doctest-modules would)
# would switch on float64 and change the device count for the whole worker.
collect_ignore_glob = ["_*worker.py"]

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
