"""Plots of a training run: the cost curve and, for 2-D inputs, the decision boundary.

matplotlib is an optional extra (``pip install "manualgrad[plot]"``), imported only
when a plot is drawn. Figures are rendered off-screen with the Agg canvas, so no
display and no global pyplot state are involved.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from manualgrad._errors import ConfigError
from manualgrad.functional import predict

__all__ = ["plot_training"]

INSTALL_HINT = 'plotting needs matplotlib: pip install "manualgrad[plot]"'


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return Figure, FigureCanvasAgg


def _labels(Y: np.ndarray) -> np.ndarray:
    return Y.reshape(-1) if Y.shape[0] == 1 else np.argmax(Y, axis=0)


def plot_training(
    path: str | os.PathLike,
    history: np.ndarray,
    *,
    params: Mapping[str, jax.Array] | None = None,
    X: np.ndarray | None = None,
    Y: np.ndarray | None = None,
    activations: Sequence[str] | None = None,
    resolution: int = 200,
) -> str:
    """Write a PNG with the per-epoch cost and, if X is (2, m), the decision regions.

    history: (epochs,) costs. For the boundary pass the trained `params`, their
    `activations`, and the data X: (2, m), Y: (n_L, m) to scatter on top. Returns `path`.
    """
    Figure, FigureCanvasAgg = _matplotlib()
    boundary = params is not None and X is not None and np.shape(X)[0] == 2
    fig = Figure(figsize=(11 if boundary else 6, 4.5), layout="constrained")
    ax = fig.add_subplot(1, 2 if boundary else 1, 1)
    ax.plot(np.arange(1, len(history) + 1), np.asarray(history))
    ax.set_xlabel("epoch")
    ax.set_ylabel("cost")
    ax.set_title("cost")
    if len(history) and np.all(np.asarray(history) > 0):
        ax.set_yscale("log")
    if boundary:
        ax2 = fig.add_subplot(1, 2, 2)
        X = np.asarray(X)
        pad = 0.5
        x0 = np.linspace(X[0].min() - pad, X[0].max() + pad, resolution)
        x1 = np.linspace(X[1].min() - pad, X[1].max() + pad, resolution)
        g0, g1 = np.meshgrid(x0, x1)
        grid = np.stack([g0.ravel(), g1.ravel()]).astype(np.asarray(params["W1"]).dtype)
        classes = np.asarray(predict(params, grid, activations=activations)).reshape(g0.shape)
        ax2.contourf(g0, g1, classes, alpha=0.35, cmap="Spectral")
        c = _labels(np.asarray(Y)) if Y is not None else None
        ax2.scatter(X[0], X[1], c=c, s=12, cmap="Spectral", edgecolors="k", linewidths=0.3)
        ax2.set_title("decision boundary")
        ax2.set_xlabel("$x_1$")
        ax2.set_ylabel("$x_2$")
    FigureCanvasAgg(fig).print_png(os.fspath(path))
    return os.fspath(path)
