r"""Small, embedded, deterministic data sets: generated from a seed, never downloaded.

Every generator returns NumPy float64 arrays with examples as columns,
X of shape (n_x, m) and Y of shape (n_L, m), ready for :func:`manualgrad.value_and_grad`
(cast with `X.astype(np.float32)` for float32 work); `names` returns integer token ids
X (T, m) for an embedding instead.

| function   | X        | Y       | origin                                                       |
|------------|----------|---------|--------------------------------------------------------------|
| `flower`   | (2, m)   | (1, m)  | the planar "flower" of the Deep Learning Specialization,     |
|            |          |         | course 1 week 3 (`load_planar_dataset`)                      |
| `moons`    | (2, m)   | (1, m)  | two interleaving half circles                                |
| `circles`  | (2, m)   | (1, m)  | a small circle inside a large one                            |
| `spiral`   | (2, m)   | (K, m)  | K interleaved spiral arms (CS231n), one-hot labels           |
| `digits`   | (64, m)  | (10, m) | real data: 1,797 handwritten digits of 8×8 pixels (UCI's,    |
|            |          |         | bundled in scikit-learn: `pip install "manualgrad[digits]"`) |
|            |          |         | with `images=True` X is (8, 8, 1, m), images (H, W, C, m)    |
| `names`    | (12, m)  | (10, m) | real text: 6,392 surnames of ten languages, character ids    |
|            |          |         | (int32, 0 = padding), from faker (`manualgrad.data.names`)   |

Two-class sets have labels 0.0 / 1.0 in one row (for a sigmoid output and `bce`);
`spiral` and `digits` have one-hot columns (for a softmax output and `ce`). Every generator returns
exactly m examples, the classes as equal as m allows (the first classes get the extra
points), in class order. :data:`DATASETS` maps each name to its generator
`fn(m=..., seed=...)`; :func:`get_dataset` looks one up by name.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from manualgrad._errors import ConfigError, DataError
from manualgrad.data.names import names

__all__ = [
    "DATASETS",
    "circles",
    "digits",
    "digits_split",
    "flower",
    "get_dataset",
    "moons",
    "spiral",
    "train_test_split",
]


def _check(m: Any, seed: Any, n_classes: int = 2, **scales: Any) -> None:
    """m ≥ n_classes examples (an int), a seed ≥ 0, and finite scales ≥ 0."""
    for name, value, low in (("m", m, n_classes), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            what = (
                "the number of examples, at least one per class"
                if name == "m"
                else "the seed of np.random.default_rng"
            )
            raise ConfigError(f"`{name}` must be an int ≥ {low} ({what}), got {value!r}")
    for name, value in scales.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float | np.floating)
            or not 0 <= value < math.inf
        ):
            raise ConfigError(f"`{name}` must be a finite number ≥ 0, got {value!r}")


def _class_sizes(m: int, n_classes: int) -> list[int]:
    """m split into n_classes sizes that differ by at most 1, the larger ones first."""
    return [m // n_classes + (k < m % n_classes) for k in range(n_classes)]


def flower(m: int = 400, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    r"""The planar "flower": two classes of 2-D points on the petals of a rose curve.

    Following the course's `load_planar_dataset`, class j ∈ {0, 1} has N = m/2 points
    with angle and radius

    $$t = \mathrm{linspace}(3.12\,j,\ 3.12\,(j+1),\ N) + 0.2\,\varepsilon_1, \qquad
      r = a \sin(4t) + 0.2\,\varepsilon_2, \qquad a = 4,$$

    ε ~ N(0, 1), and coordinates x = (r sin t, r cos t). The noise comes from
    `np.random.default_rng(seed)`, so the same (m, seed) always gives the same data
    (the course's own numbers came from `np.random.seed(1)`, a different stream). For
    odd m, class 0 gets the extra point; m must be at least 2.

    Returns X: (2, m) float64 and Y: (1, m) float64 with labels 0.0 and 1.0.

    >>> X, Y = flower(6, seed=0)
    >>> X.shape, Y.shape, Y.tolist()
    ((2, 6), (1, 6), [[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]])
    """
    _check(m, seed, 2)
    rng = np.random.default_rng(seed)
    a = 4.0
    sizes = _class_sizes(m, 2)
    xs, ys = [], []
    for j, n in enumerate(sizes):
        t = np.linspace(j * 3.12, (j + 1) * 3.12, n) + rng.standard_normal(n) * 0.2  # angle
        r = a * np.sin(4 * t) + rng.standard_normal(n) * 0.2  # radius
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)]))
        ys.append(np.full((1, n), float(j)))
    return np.concatenate(xs, axis=1), np.concatenate(ys, axis=1)


def moons(m: int = 400, seed: int = 1, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (class 0 on top, class 1 below and shifted), plus noise.

    Returns X: (2, m) float64 and Y: (1, m) float64 labels, ⌈m/2⌉ of class 0 first.
    """
    _check(m, seed, 2, noise=noise)
    rng = np.random.default_rng(seed)
    n0, n1 = _class_sizes(m, 2)
    t0, t1 = np.linspace(0, np.pi, n0), np.linspace(0, np.pi, n1)
    upper = np.stack([np.cos(t0), np.sin(t0)])
    lower = np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)])
    X = np.concatenate([upper, lower], axis=1) + noise * rng.standard_normal((2, m))
    Y = np.repeat(np.arange(2.0), [n0, n1])[None, :]
    return X, Y


def circles(
    m: int = 400, seed: int = 1, noise: float = 0.05, factor: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """An outer circle (class 0) of radius 1 around an inner one (class 1) of radius `factor`.

    Returns X: (2, m) float64 and Y: (1, m) float64 labels, ⌈m/2⌉ of class 0 first.
    """
    _check(m, seed, 2, noise=noise, factor=factor)
    rng = np.random.default_rng(seed)
    n0, n1 = _class_sizes(m, 2)
    t0 = np.linspace(0, 2 * np.pi, n0, endpoint=False)
    t1 = np.linspace(0, 2 * np.pi, n1, endpoint=False)
    rings = [np.stack([np.cos(t0), np.sin(t0)]), factor * np.stack([np.cos(t1), np.sin(t1)])]
    X = np.concatenate(rings, axis=1) + noise * rng.standard_normal((2, m))
    Y = np.repeat(np.arange(2.0), [n0, n1])[None, :]
    return X, Y


def spiral(m: int = 300, seed: int = 1, n_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """K spiral arms (CS231n): r = linspace(0, 1, N_k), t = linspace(4k, 4(k+1), N_k) + 0.2 ε.

    N_k ≈ m / K points for class k (the first m mod K classes get one more). Returns
    X: (2, m) float64 and one-hot Y: (K, m) float64 (Y[k, i] = 1 iff example i is in
    class k).
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 2:
        raise ConfigError(f"`n_classes` must be an int ≥ 2, got {n_classes!r}")
    _check(m, seed, n_classes)
    rng = np.random.default_rng(seed)
    sizes = _class_sizes(m, n_classes)
    arms = []
    for k, N in enumerate(sizes):
        r = np.linspace(0.0, 1.0, N)
        t = np.linspace(k * 4, (k + 1) * 4, N) + rng.standard_normal(N) * 0.2
        arms.append(np.stack([r * np.sin(t), r * np.cos(t)]))
    Y = np.eye(n_classes)[:, np.repeat(np.arange(n_classes), sizes)]
    return np.concatenate(arms, axis=1), Y


def digits(
    m: int | None = None, seed: int = 1, *, images: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The 8×8 handwritten digits: 1,797 real images of 0–9, pixels scaled to [0, 1].

    The test set of UCI's "Optical Recognition of Handwritten Digits" (Alpaydin and
    Kaynak, 1998; 32×32 bitmaps from 13 writers, each 4×4 block's count of on pixels,
    0 … 16), as bundled inside scikit-learn (`sklearn.datasets.load_digits`, no
    download). Needs scikit-learn: ``pip install "manualgrad[digits]"``.

    Returns X: (64, m) float64, pixel counts / 16 in [0, 1], and one-hot
    Y: (10, m) float64; the columns in the order of `default_rng(seed).permutation`,
    the first `m` of them (default all 1,797). With `images=True`, X is the same pixels
    as images (8, 8, 1, m), (H, W, C, m) examples last, for a convolutional network:
    feature 8·r + c of a column is pixel (r, c). For a held-out test set use
    :func:`digits_split` (or :func:`train_test_split`).

    >>> X, Y = digits(m=5, images=True)
    >>> X.shape, Y.shape
    ((8, 8, 1, 5), (10, 5))
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ConfigError(
            "the digits data set ships inside scikit-learn, which is not installed: "
            'pip install "manualgrad[digits]" (or pip install scikit-learn)'
        ) from None
    pixels, target = load_digits(return_X_y=True)
    n = pixels.shape[0]
    if m is not None and (
        isinstance(m, bool) or not isinstance(m, int | np.integer) or not 1 <= m <= n
    ):
        raise ConfigError(f"`m` must be an int in [1, {n}] for digits, got {m!r}")
    perm = np.random.default_rng(seed).permutation(n)[: n if m is None else m]
    X = np.asarray(pixels)[perm].T.astype(np.float64) / 16.0
    Y = np.eye(10)[:, np.asarray(target)[perm]]
    return (X.reshape(8, 8, 1, -1) if images else X), Y


def digits_split(
    test_fraction: float = 0.2, seed: int = 1, *, images: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`digits` with a held-out test set: X_train, Y_train, X_test, Y_test.

    round(test_fraction · 1797) examples for test (359 at the default 0.2), the rest
    (1,438) for training, split by :func:`train_test_split` with `seed`; with
    `images=True` the X's are images (8, 8, 1, m), the same split.

    >>> X, Y, X_test, Y_test = digits_split()
    >>> X.shape, Y.shape, X_test.shape
    ((64, 1438), (10, 1438), (64, 359))
    >>> digits_split(images=True)[0].shape
    (8, 8, 1, 1438)
    """

    X, Y = digits(seed=seed, images=images)
    return train_test_split(X, Y, test_fraction=test_fraction, seed=seed)


#: name -> generator(m=..., seed=...) -> (X, Y)
DATASETS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "flower": flower,
    "moons": moons,
    "circles": circles,
    "spiral": spiral,
    "digits": digits,
    "names": names,
}


def get_dataset(name: str) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """The generator of the built-in data set `name`; an unknown name lists them all.

    >>> get_dataset("moons") is moons
    True
    """
    if isinstance(name, str) and name in DATASETS:
        return DATASETS[name]
    close = difflib.get_close_matches(str(name).lower(), DATASETS, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"unknown data set {name!r}{hint}: the built-in sets are {', '.join(DATASETS)}; "
        "a data file needs the extension .npz or .csv"
    )


def train_test_split(
    X: np.ndarray, Y: np.ndarray, *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle the m examples with `default_rng(seed)` and keep round(test_fraction · m) for test.

    Returns X_train, Y_train, X_test, Y_test (examples on the last axis: columns of
    (n_x, m), or images (H, W, C, m); the test set may be empty when test_fraction = 0).
    """
    if not 0 <= test_fraction < 1:
        raise DataError(f"`test_fraction` must be in [0, 1), got {test_fraction}")
    m = X.shape[-1]
    perm = np.random.default_rng(seed).permutation(m)
    n_test = round(test_fraction * m)
    test, train = perm[:n_test], perm[n_test:]
    return X[..., train], Y[..., train], X[..., test], Y[..., test]
