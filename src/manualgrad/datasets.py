r"""Small deterministic 2-D data sets, embedded: no download, same arrays for the same seed.

Every generator returns ``(X, Y)`` as numpy arrays with examples as columns:
X of shape (2, m), float64. Two-class sets return labels Y of shape (1, m) with
values in {0, 1} (uint8, as the course's ``load_planar_dataset``); `spiral` returns
one-hot Y of shape (K, m) (float64) for a softmax output layer.

| name      | classes | Y          | what it is                                          |
|-----------|---------|------------|-----------------------------------------------------|
| `flower`  | 2       | (1, m)     | the course's planar "flower" (load_planar_dataset)  |
| `moons`   | 2       | (1, m)     | two interleaving half circles                       |
| `circles` | 2       | (1, m)     | a small circle inside a large one                   |
| `spiral`  | K = 3   | (K, m)     | K interleaved spiral arms (CS231n), one-hot labels  |

All use ``numpy.random.default_rng(seed)``.

>>> X, Y = flower()
>>> X.shape, Y.shape, int(Y.sum())
((2, 400), (1, 400), 200)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["DATASETS", "circles", "flower", "moons", "spiral"]


def flower(m: int = 400, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The course's planar flower: two classes of petals, r = a sin 4t plus noise.

    N = m // 2 points per class j ∈ {0, 1}, a = 4,
    t = linspace(3.12 j, 3.12 (j + 1), N) + 0.2 ε,  r = a sin(4t) + 0.2 ε,
    x = (r sin t, r cos t). Returns X: (2, 2N) float64, Y: (1, 2N) uint8.
    """
    rng = np.random.default_rng(seed)
    N = m // 2
    a = 4
    X = np.zeros((2 * N, 2))
    Y = np.zeros((2 * N, 1), dtype=np.uint8)
    for j in range(2):
        ix = range(N * j, N * (j + 1))
        t = np.linspace(j * 3.12, (j + 1) * 3.12, N) + rng.standard_normal(N) * 0.2
        r = a * np.sin(4 * t) + rng.standard_normal(N) * 0.2
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        Y[ix] = j
    return X.T, Y.T


def moons(m: int = 400, seed: int = 1, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (class 0 on top, class 1 below, shifted), plus noise.

    Returns X: (2, 2N) float64, Y: (1, 2N) uint8 with N = m // 2.
    """
    rng = np.random.default_rng(seed)
    N = m // 2
    t = np.linspace(0, np.pi, N)
    upper = np.stack([np.cos(t), np.sin(t)])
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)])
    X = np.concatenate([upper, lower], axis=1) + noise * rng.standard_normal((2, 2 * N))
    Y = np.repeat(np.arange(2, dtype=np.uint8), N)[None, :]
    return X, Y


def circles(
    m: int = 400, seed: int = 1, noise: float = 0.05, factor: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """An outer circle (class 0) of radius 1 around an inner one (class 1) of radius `factor`.

    Returns X: (2, 2N) float64, Y: (1, 2N) uint8 with N = m // 2.
    """
    rng = np.random.default_rng(seed)
    N = m // 2
    t = np.linspace(0, 2 * np.pi, N, endpoint=False)
    ring = np.stack([np.cos(t), np.sin(t)])
    X = np.concatenate([ring, factor * ring], axis=1) + noise * rng.standard_normal((2, 2 * N))
    Y = np.repeat(np.arange(2, dtype=np.uint8), N)[None, :]
    return X, Y


def spiral(m: int = 300, seed: int = 1, n_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """K spiral arms (CS231n): r = linspace(0, 1, N), t = linspace(4k, 4(k+1), N) + 0.2 ε.

    N = m // K points per class k. Returns X: (2, K N) float64 and one-hot
    Y: (K, K N) float64 (Y[k, i] = 1 iff example i is in class k).
    """
    rng = np.random.default_rng(seed)
    N = m // n_classes
    X = np.zeros((2, N * n_classes))
    labels = np.repeat(np.arange(n_classes), N)
    for k in range(n_classes):
        r = np.linspace(0.0, 1.0, N)
        t = np.linspace(k * 4, (k + 1) * 4, N) + rng.standard_normal(N) * 0.2
        X[:, k * N : (k + 1) * N] = np.stack([r * np.sin(t), r * np.cos(t)])
    Y = np.eye(n_classes)[:, labels]
    return X, Y


#: name -> generator(m, seed) -> (X, Y)
DATASETS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "flower": flower,
    "moons": moons,
    "circles": circles,
    "spiral": spiral,
}
