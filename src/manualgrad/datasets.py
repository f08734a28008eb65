r"""Small, embedded, deterministic data sets: generated from a seed, never downloaded.

Every generator returns NumPy float64 arrays with examples as columns,
X of shape (n_x, m) and Y of shape (n_L, m), ready for :func:`manualgrad.value_and_grad`
(cast with `X.astype(np.float32)` for float32 work).

| function   | X        | Y       | origin                                                       |
|------------|----------|---------|--------------------------------------------------------------|
| `flower`   | (2, m)   | (1, m)  | the planar "flower" of the Deep Learning Specialization,     |
|            |          |         | course 1 week 3 (`load_planar_dataset`)                      |
"""

from __future__ import annotations

import numpy as np

from manualgrad._errors import ConfigError


def flower(m: int = 400, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    r"""The planar "flower": two classes of 2-D points on the petals of a rose curve.

    Following the course's `load_planar_dataset`, class j ∈ {0, 1} has N = m/2 points
    with angle and radius

    $$t = \mathrm{linspace}(3.12\,j,\ 3.12\,(j+1),\ N) + 0.2\,\varepsilon_1, \qquad
      r = a \sin(4t) + 0.2\,\varepsilon_2, \qquad a = 4,$$

    ε ~ N(0, 1), and coordinates x = (r sin t, r cos t). The noise comes from
    `np.random.default_rng(seed)`, so the same (m, seed) always gives the same data
    (the course's own numbers came from `np.random.seed(1)`, a different stream). For
    odd m, class 0 gets the extra point.

    Returns X: (2, m) float64 and Y: (1, m) float64 with labels 0.0 and 1.0.

    >>> X, Y = flower(6, seed=0)
    >>> X.shape, Y.shape, Y.tolist()
    ((2, 6), (1, 6), [[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]])
    """
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 1:
        raise ConfigError(f"`m` must be a positive int (number of examples), got {m!r}")
    rng = np.random.default_rng(seed)
    a = 4.0
    sizes = (m - m // 2, m // 2)
    xs, ys = [], []
    for j, n in enumerate(sizes):
        t = np.linspace(j * 3.12, (j + 1) * 3.12, n) + rng.standard_normal(n) * 0.2  # angle
        r = a * np.sin(4 * t) + rng.standard_normal(n) * 0.2  # radius
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)]))
        ys.append(np.full((1, n), float(j)))
    return np.concatenate(xs, axis=1), np.concatenate(ys, axis=1)
