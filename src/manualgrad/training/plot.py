"""Plots of a training run: the cost curve and, for 2-D inputs, the decision boundary.

matplotlib is an optional extra (``pip install "manualgrad[plot]"``, which the
README's set-up command installs), imported only when a plot is drawn. Figures are
rendered off-screen with the Agg canvas, so no display and no global pyplot state are
involved.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from manualgrad._errors import ConfigError

if TYPE_CHECKING:
    from manualgrad._network import Network

__all__ = ["ensure_matplotlib", "plot_training", "training_figure"]

INSTALL_HINT = 'plotting needs matplotlib: pip install "manualgrad[plot]"'


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return Figure, FigureCanvasAgg


def ensure_matplotlib() -> None:
    """Raise ConfigError with the install line if matplotlib is missing (check before a run)."""
    _matplotlib()


def _labels(Y: np.ndarray) -> np.ndarray:
    return Y.reshape(-1) if Y.shape[0] == 1 else np.argmax(Y, axis=0)


def training_figure(
    history: np.ndarray,
    *,
    net: Network | None = None,
    params: Mapping[str, jax.Array] | None = None,
    X: np.ndarray | None = None,
    Y: np.ndarray | None = None,
    X_test: np.ndarray | None = None,
    Y_test: np.ndarray | None = None,
    resolution: int = 200,
):
    """A matplotlib Figure of the per-epoch cost and, if X is (2, m), the decision regions.

    history: (epochs,) costs. For the regions pass the network `net`, its trained
    `params`, and the training data X: (2, m), Y: (n_L, m) (dots); the test data
    X_test, Y_test, if given, are drawn as triangles. Each class has one colour of
    matplotlib's "tab10" cycle, in its region (light) and its points (full), and a
    legend names the classes and the two markers.
    """
    Figure, _ = _matplotlib()
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D

    boundary = params is not None and X is not None and np.ndim(X) == 2 and np.shape(X)[0] == 2
    if boundary and net is None:
        raise ConfigError("pass the params' network `net` to draw the decision regions")
    fig = Figure(figsize=(11 if boundary else 6, 4.5), layout="constrained")
    ax = fig.add_subplot(1, 2 if boundary else 1, 1)
    ax.plot(np.arange(1, len(history) + 1), np.asarray(history))
    ax.set_xlabel("epoch")
    ax.set_ylabel("cost")
    ax.set_title("cost")
    if len(history) and np.all(np.asarray(history) > 0):
        ax.set_yscale("log")
    if not boundary:
        return fig
    assert params is not None and X is not None and net is not None
    ax2 = fig.add_subplot(1, 2, 2)
    X = np.asarray(X)
    points = [(X, Y, "o", "train")]
    if X_test is not None and np.shape(X_test)[-1]:
        points.append((np.asarray(X_test), Y_test, "^", "test"))
    every = np.concatenate([p[0] for p in points], axis=1)
    pad = 0.5
    x0 = np.linspace(every[0].min() - pad, every[0].max() + pad, resolution)
    x1 = np.linspace(every[1].min() - pad, every[1].max() + pad, resolution)
    g0, g1 = np.meshgrid(x0, x1)
    grid = np.stack([g0.ravel(), g1.ravel()]).astype(np.asarray(params["W1"]).dtype)
    classes = np.asarray(net.predict(params, jnp.asarray(grid)))
    classes = classes.reshape(g0.shape)
    n_L = int(np.shape(params[f"W{len(params) // 2}"])[0])
    K = 2 if n_L == 1 else n_L
    colors = [f"C{k % 10}" for k in range(K)]
    cmap = ListedColormap(colors)
    levels = np.arange(K + 1) - 0.5
    ax2.contourf(g0, g1, classes, levels=levels, cmap=cmap, alpha=0.25)
    for A, labels, marker, _ in points:
        c = _labels(np.asarray(labels)) if labels is not None else np.zeros(A.shape[1])
        ax2.scatter(
            A[0],
            A[1],
            c=c,
            cmap=cmap,
            vmin=-0.5,
            vmax=K - 0.5,
            marker=marker,
            s=16,
            edgecolors="k",
            linewidths=0.3,
        )
    handles = [
        Line2D([], [], color=col, marker="s", linestyle="", label=f"class {k}")
        for k, col in enumerate(colors)
    ]
    handles += [
        Line2D(
            [],
            [],
            color="grey",
            marker=marker,
            linestyle="",
            markeredgecolor="k",
            label=f"{name} ({A.shape[1]})",
        )
        for A, _, marker, name in points
    ]
    ax2.legend(handles=handles, loc="best", fontsize="small", framealpha=0.8)
    ax2.set_title("decision regions")
    ax2.set_xlabel("$x_1$")
    ax2.set_ylabel("$x_2$")
    return fig


def plot_training(
    path: str | os.PathLike,
    history: np.ndarray,
    **kwargs,
) -> str:
    """Write :func:`training_figure` (`history` and the same keyword arguments) to a PNG; return
    `path`."""
    _, FigureCanvasAgg = _matplotlib()
    FigureCanvasAgg(training_figure(history, **kwargs)).print_png(os.fspath(path))
    return os.fspath(path)
