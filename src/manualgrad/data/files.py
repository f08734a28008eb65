r"""Loading user data at the boundary: `.npz` and `.csv` files, value checks, a train/test split.

Everything the formulas cannot check at trace time is checked here, once, on the
host: that files parse, that every cell is a finite number, and that the labels fit
the loss. Every failure raises :class:`manualgrad.DataError` (a missing file raises
`FileNotFoundError`) with one line that says what is wrong and where.

Files may hold examples as rows (the usual table layout; `examples="rows"`) or as
columns (manualgrad's convention; `examples="columns"`); the loaders always return
X: (n_x, m) and Y: (n_y, m) float64 with examples as columns.

| format | contents                                                               |
|--------|------------------------------------------------------------------------|
| `.npz` | arrays named `X` and `Y`; Y may be 1-D (one label per example)         |
| `.csv` | a header of column names (rows layout) or a first cell naming each row |
|        | (columns layout); the label column/row is picked by name               |

>>> import numpy as np
>>> X, Y = as_targets(np.zeros((2, 3)), np.array([[0, 1, 1]]), loss="bce")
>>> Y.tolist()
[[0.0, 1.0, 1.0]]
"""

from __future__ import annotations

import csv
import inspect
import os
from typing import Literal

import numpy as np

from manualgrad._core.losses import get_loss, one_hot_labels
from manualgrad._errors import ConfigError, DataError, plural
from manualgrad.data.datasets import DATASETS, get_dataset, train_test_split

Examples = Literal["rows", "columns"]

__all__ = [
    "as_targets",
    "check_finite",
    "load",
    "load_csv",
    "load_data",
    "load_npz",
    "one_hot",
    "train_test_split",
]


def _check_examples(examples: str) -> None:
    if examples not in ("rows", "columns"):
        raise DataError(f"`examples` must be 'rows' or 'columns', got {examples!r}")


def _orient(X: np.ndarray, Y: np.ndarray, examples: str, source: str) -> tuple[np.ndarray, ...]:
    """Return X: (n_x, m), Y: (n_y, m) from arrays laid out as `examples` says."""
    if X.ndim == 1:
        X = X[:, None] if examples == "rows" else X[None, :]
    if X.ndim != 2:
        raise DataError(f"{source}: expected a 2-D `X`, got shape {X.shape}")
    if Y.ndim == 1:
        Y = Y[None, :]
    elif Y.ndim == 2 and examples == "rows":
        Y = Y.T
    elif Y.ndim != 2:
        raise DataError(f"{source}: expected a 1-D or 2-D `Y`, got shape {Y.shape}")
    if examples == "rows":
        X = X.T
    if X.shape[1] != Y.shape[1]:
        raise DataError(
            f"{source}: X has {X.shape[1]} examples but Y has {Y.shape[1]} "
            f"(examples are {examples}; X {X.shape}, Y {Y.shape}) — is `--examples` right?"
        )
    if X.shape[1] == 0:
        raise DataError(f"{source}: the data has no examples")
    return X, Y


def check_finite(X: np.ndarray, Y: np.ndarray, source: str = "data") -> None:
    """Raise DataError naming the first NaN or ±Inf in X or Y (arrays with examples as columns)."""
    for name, arr in (("X", X), ("Y", Y)):
        bad = ~np.isfinite(arr)
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise DataError(
                f"{source}: {plural(int(bad.sum()), 'non-finite value')} in {name}, the first "
                f"{arr[row, col]} at feature {row}, example {col}; remove or impute them"
            )


def _to_float(arr: np.ndarray, name: str, source: str) -> np.ndarray:
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise DataError(f"{source}: `{name}` has dtype {arr.dtype}; expected numbers")
    return arr.astype(np.float64)


def _existing(path: str | os.PathLike) -> str:
    source = os.fspath(path)
    if not os.path.exists(source):
        raise FileNotFoundError(2, "no such data file", source)
    return source


def load_npz(path: str | os.PathLike, *, examples: Examples = "columns") -> tuple[np.ndarray, ...]:
    """Arrays `X` and `Y` from an `.npz` file, as X: (n_x, m), Y: (n_y, m) float64.

    With `examples="rows"`, X is stored (m, n_x) and Y (m, n_y) or (m,).
    """
    _check_examples(examples)
    source = _existing(path)
    with open(source, "rb") as f:
        magic = f.read(6)
    if not magic.startswith(b"PK"):
        what = (
            "a .npy file (one array): save X and Y together with np.savez(path, X=X, Y=Y)"
            if magic == b"\x93NUMPY"
            else f"it starts with {magic!r}, not with a zip header: write it with "
            "np.savez(path, X=X, Y=Y)"
        )
        raise DataError(f"{source}: not a .npz file (a zip archive of arrays X and Y); {what}")
    try:
        with np.load(source, allow_pickle=False) as f:
            names = list(f.files)
            if "X" not in names or "Y" not in names:
                raise DataError(f"{source}: expected arrays named 'X' and 'Y', found {names}")
            X, Y = f["X"], f["Y"]
    except DataError:
        raise
    except Exception as err:  # zipfile.BadZipFile, ValueError, EOFError, OSError, ...
        raise DataError(
            f"{source}: not a readable .npz file ({type(err).__name__}: {err})"
        ) from None
    X, Y = _to_float(X, "X", source), _to_float(Y, "Y", source)
    X, Y = _orient(X, Y, examples, source)
    check_finite(X, Y, source)
    return X, Y


def load_csv(
    path: str | os.PathLike, *, label_column: str = "y", examples: Examples = "rows"
) -> tuple[np.ndarray, ...]:
    """Features and labels from a `.csv` file, as X: (n_x, m), Y: (1, m) float64.

    `examples="rows"`: the first line names the columns, each further line is one
    example. `examples="columns"`: the first cell of each line names that line,
    each further column is one example. The label column (row) is `label_column`;
    all others are features. Every cell must parse as a number.
    """
    _check_examples(examples)
    source = _existing(path)
    with open(source, newline="") as f:
        try:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
        except (csv.Error, UnicodeDecodeError) as err:
            raise DataError(f"{source}: not a readable CSV file ({err})") from None
    if len(rows) < 2:
        raise DataError(
            f"{source}: expected a header and at least one example, got "
            f"{plural(len(rows), 'non-empty line')}"
        )
    if examples == "rows":
        names = [c.strip() for c in rows[0]]
        body = rows[1:]
        width = len(names)
        for i, r in enumerate(body, start=2):
            if len(r) != width:
                raise DataError(f"{source}: line {i} has {len(r)} cells, the header has {width}")
        cells = [list(col) for col in zip(*body, strict=True)]  # one list per named column
        where = [(lambda j, n=n: f"line {j + 2}, column {n!r}") for n in names]
    else:
        names = [r[0].strip() for r in rows]
        width = len(rows[0])
        for i, r in enumerate(rows, start=1):
            if len(r) != width:
                raise DataError(f"{source}: line {i} has {len(r)} cells, line 1 has {width}")
        cells = [r[1:] for r in rows]
        where = [
            (lambda j, i=i, n=n: f"line {i + 1} ({n!r}), cell {j + 2}") for i, n in enumerate(names)
        ]
    if label_column not in names:
        shown = names if len(names) <= 8 else [*names[:6], "…"]
        kind = "columns" if examples == "rows" else "rows (first cell of each line)"
        if examples == "columns" and sum(_is_number(n) for n in names) > len(names) // 2:
            hint = (
                "the lines start with numbers, so the file probably holds one example per "
                "line: leave out --examples columns (examples='rows')"
            )
        else:
            hint = "pass the right name with --label-column"
        raise DataError(
            f"{source}: no label column {label_column!r}; the {len(names)} {kind} are named "
            f"{shown} — {hint}"
        )
    values = []
    for k, col in enumerate(cells):
        out = np.empty(len(col))
        for j, cell in enumerate(col):
            try:
                out[j] = float(cell)
            except ValueError:
                hint = (
                    ": encode the classes as integers 0 … K-1 (e.g. cat → 0, dog → 1) and "
                    "use loss 'ce' for more than two"
                    if names[k] == label_column
                    else ""
                )
                raise DataError(
                    f"{source}: {where[k](j)}: {cell.strip()!r} is not a number{hint}"
                ) from None
        values.append(out)
    label = names.index(label_column)
    X = np.stack([v for k, v in enumerate(values) if k != label])
    Y = values[label][None, :]
    check_finite(X, Y, source)
    return X, Y


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_data(
    path: str | os.PathLike, *, examples: Examples | None = None, label_column: str = "y"
) -> tuple[np.ndarray, ...]:
    """Load `.npz` or `.csv` by extension; `examples` defaults to each format's usual layout."""
    source = os.fspath(path)
    ext = os.path.splitext(source)[1].lower()
    if ext == ".npz":
        return load_npz(source, examples=examples or "columns")
    if ext == ".csv":
        return load_csv(source, label_column=label_column, examples=examples or "rows")
    raise DataError(f"{source}: unknown data file type {ext!r}; expected .npz or .csv")


def load(
    source: str | os.PathLike,
    *,
    m: int | None = None,
    examples: Examples | None = None,
    label_column: str = "y",
    images: bool = False,
) -> tuple[np.ndarray, ...]:
    """A built-in data set by name, or a `.npz`/`.csv` file: X (n_x, m), Y (n_y, m) float64.

    A name (no extension, not an existing file) must be one of
    :data:`manualgrad.data.datasets.DATASETS`; a near miss says which one it resembles.
    `m` sets a built-in set's size (its default if None) and is an error for a file.
    `images=True` asks a built-in set of images (digits) for X as images (H, W, C, m),
    for a convolutional network; other sets and files refuse it.
    """
    source = os.fspath(source)
    is_file = bool(os.path.splitext(source)[1]) or os.path.exists(source)
    generator = None if is_file else get_dataset(source)
    if images and (generator is None or "images" not in inspect.signature(generator).parameters):
        image_sets = [k for k, g in DATASETS.items() if "images" in inspect.signature(g).parameters]
        raise ConfigError(
            f"a convolutional network takes images (H, W, C, m), but {source!r} "
            f"{'is a file of feature vectors' if is_file else 'has feature vectors only'}: "
            f"use a built-in image data set ({', '.join(image_sets)}), or a dense network"
        )
    if generator is None:
        if m is not None:
            raise ConfigError(
                f"`m` sets the size of a built-in data set, but {source} is a file with its own "
                "examples: leave `m` (--m) out"
            )
        return load_data(source, examples=examples, label_column=label_column)
    kwargs = {"images": True} if images else {}
    return generator(**kwargs) if m is None else generator(m=m, **kwargs)


def one_hot(labels: np.ndarray, n_classes: int | None = None, source: str = "data") -> np.ndarray:
    """Integer class labels of shape (m,) or (1, m) -> one-hot Y of shape (K, m)."""
    return one_hot_labels(labels, n_classes, source)


def as_targets(X: np.ndarray, Y: np.ndarray, *, loss: str, source: str = "data"):
    """Check (and for `ce` with one label row, one-hot encode) Y for `loss`; return (X, Y).

    | loss  | Y expected                                                  |
    |-------|-------------------------------------------------------------|
    | `bce` | (n_y, m) with values in {0, 1}                              |
    | `ce`  | one-hot (K, m) (each column one 1, zeros elsewhere), or one |
    |       | row of integer labels 0 … K-1, which is encoded here        |
    | `mse` | any finite values                                           |

    The rule is the loss record's `prepare_labels` (:mod:`manualgrad._core.losses`).
    """
    Y = np.asarray(Y, dtype=np.float64)
    rule = get_loss(loss).prepare_labels
    return X, (Y if rule is None else rule(Y, source))
