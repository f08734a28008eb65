"""The training plot: every class visible, train and test points, and a legend."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import manualgrad as mg
from manualgrad.data.datasets import spiral
from manualgrad.data.files import train_test_split

pytest.importorskip("matplotlib")
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection

from manualgrad.training.plot import training_figure


def test_decision_regions_show_every_class_the_test_points_and_a_legend():
    X, Y = spiral(90)
    X_tr, Y_tr, X_te, Y_te = train_test_split(X, Y, test_fraction=0.2, seed=0)
    net = mg.network(["tanh", "softmax"], "ce")
    params = net.init([2, 8, 3], jax.random.key(0), method="xavier")  # untrained will do
    fig = training_figure(
        np.array([1.1, 0.7]),
        net=net,
        params=params,
        X=X_tr,
        Y=Y_tr,
        X_test=X_te,
        Y_test=Y_te,
    )
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[1]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["class 0", "class 1", "class 2", "train (72)", "test (18)"]
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [len(c.get_offsets()) for c in points] == [72, 18]
    for collection in points:  # no class is drawn in a colour that vanishes on white
        rgb = collection.get_facecolors()[:, :3]
        assert np.max(rgb @ np.array([0.2126, 0.7152, 0.0722])) < 0.75
