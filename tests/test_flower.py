"""`manualgrad.data.datasets.flower`: the course's planar data set, generated from a seed."""

from __future__ import annotations

import numpy as np
import pytest

from manualgrad._errors import ConfigError
from manualgrad.data.datasets import flower


def test_flower_has_examples_as_columns_and_float64_arrays():
    X, Y = flower()
    assert X.shape == (2, 400) and Y.shape == (1, 400)
    assert X.dtype == np.float64 and Y.dtype == np.float64


def test_flower_has_m_over_2_examples_of_each_class_in_order():
    _, Y = flower(10)
    np.testing.assert_array_equal(Y, [[0.0] * 5 + [1.0] * 5])
    _, Y = flower(7)  # odd m: class 0 gets the extra point
    np.testing.assert_array_equal(Y, [[0.0] * 4 + [1.0] * 3])


def test_flower_points_lie_near_the_rose_curve_of_radius_4():
    # |r| ≤ a + noise = 4 + 0.2·|ε|: with 400 draws |ε| < 5 surely, so every radius < 5
    X, _ = flower(400, seed=0)
    radius = np.hypot(X[0], X[1])
    assert radius.max() < 5.0
    assert radius.max() > 3.5  # the petals reach out to about a = 4


@pytest.mark.parametrize("m", [0, -3, 2.5, True])
def test_flower_rejects_bad_m(m):
    with pytest.raises(ConfigError, match=r"`m` must be an int ≥ 2"):
        flower(m)
