"""Strict JAX settings for the whole test session, and a scoped float64 fixture.

Rank promotion raises, so accidental broadcasting fails loudly. float64 is switched
on only inside tests that ask for the `x64` fixture (`jax.enable_x64` is a context
manager), so it cannot leak into float32 tests.
"""

from __future__ import annotations

import os

import jax
import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]  # tests/test_testing.py runs the pytest plugin in a sandbox

jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture
def x64():
    """Run the test body with float64 enabled; restored afterwards."""
    with jax.enable_x64(True):
        yield
