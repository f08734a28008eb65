"""pytest plugin: the `assert_backward_matches` fixture, for checking your own backward pass.

Installed with manualgrad (entry point `pytest11`), so a test file needs no import of
manualgrad at all:

    from my_network import L_model_backward

    def test_my_backward(assert_backward_matches):
        assert_backward_matches(L_model_backward)

The fixture is :func:`manualgrad.checking.backward.assert_backward_matches`: the test fails with
the per-key table and the diagnosis of each key that disagrees with jax.grad. Pass
`convention="core"` for a `grads(params, X, Y)` function, `loss="mse"` for a backward
of the squared error. Nothing is imported until a test asks for the fixture, so the
plugin costs other test suites nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

__all__ = [
    "assert_backward_matches",
]


@pytest.fixture
def assert_backward_matches() -> Callable[..., Any]:
    """:func:`manualgrad.checking.backward.assert_backward_matches`: call it with your backward."""
    from manualgrad.checking.backward import assert_backward_matches as check

    return check
