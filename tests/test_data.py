"""Data at the boundary: loaders, value checks, label checks, split, and the built-in data sets."""

from __future__ import annotations

import numpy as np
import pytest

from manualgrad.data.datasets import DATASETS, circles, flower, moons, spiral
from manualgrad.data.files import (
    as_targets,
    load_csv,
    load_data,
    load_npz,
    one_hot,
    train_test_split,
)
from manualgrad.errors import DataError

X_COLS = np.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])  # (n_x, m) = (2, 3)
Y_COLS = np.array([[1.0, 0.0, 1.0]])


@pytest.mark.parametrize("examples", ["rows", "columns"])
def test_npz_loads_as_columns_whatever_the_stored_layout(tmp_path, examples):
    path = tmp_path / "d.npz"
    if examples == "rows":
        np.savez(path, X=X_COLS.T, Y=Y_COLS.reshape(-1))
    else:
        np.savez(path, X=X_COLS, Y=Y_COLS)
    X, Y = load_npz(path, examples=examples)
    np.testing.assert_array_equal(X, X_COLS)
    np.testing.assert_array_equal(Y, Y_COLS)


def test_csv_rows_and_columns_layouts_give_the_same_arrays(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("x1,y,x2\n0.5,1,1.5\n-1,0,0\n2,1,-0.5\n")
    cols = tmp_path / "cols.csv"
    cols.write_text("x1,0.5,-1,2\nx2,1.5,0,-0.5\ny,1,0,1\n")
    for X, Y in (load_csv(rows), load_data(cols, examples="columns")):
        np.testing.assert_array_equal(X, X_COLS)
        np.testing.assert_array_equal(Y, Y_COLS)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_data(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError):
        load_data(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a zip at all", r"not a \.npz file"),
        (b"PK\x03\x04 truncated", r"not a readable \.npz"),
    ],
    ids=["garbage", "truncated"],
)
def test_corrupt_npz_raises_data_error(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_npz(path)


def test_npz_without_X_and_Y_names_what_it_found(tmp_path):
    np.savez(tmp_path / "d.npz", features=X_COLS)
    with pytest.raises(DataError, match=r"found \['features'\]"):
        load_npz(tmp_path / "d.npz")


def test_non_numeric_csv_cell_is_located(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("x1,x2,y\n1,2,0\n3,abc,1\n")
    with pytest.raises(DataError, match=r"line 3, column 'x2': 'abc' is not a number"):
        load_csv(path)


def test_csv_without_the_label_column_lists_the_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"no label column 'y'.*\['a', 'b'\]"):
        load_csv(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected_at_load(tmp_path, bad):
    X = X_COLS.copy()
    X[1, 2] = bad
    np.savez(tmp_path / "d.npz", X=X, Y=Y_COLS)
    with pytest.raises(DataError, match="feature 1, example 2"):
        load_npz(tmp_path / "d.npz")


def test_mismatched_example_counts_suggest_the_examples_option(tmp_path):
    np.savez(tmp_path / "d.npz", X=X_COLS, Y=Y_COLS)
    with pytest.raises(DataError, match="--examples"):
        load_npz(tmp_path / "d.npz", examples="rows")


def test_bce_labels_must_be_0_or_1():
    with pytest.raises(DataError, match=r"\{0, 1\}, found 2"):
        as_targets(X_COLS, np.array([[0, 2, 1]]), loss="bce")


def test_ce_needs_one_hot_columns_or_integer_labels():
    with pytest.raises(DataError, match="example 1"):
        as_targets(X_COLS, np.array([[1, 1, 0], [0, 1, 1]]), loss="ce")
    _, Y = as_targets(X_COLS, np.array([[2, 0, 1]]), loss="ce")
    np.testing.assert_array_equal(Y, [[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    with pytest.raises(DataError, match="integers"):
        one_hot(np.array([0.5, 1.0]))


def test_split_is_a_partition_of_the_columns_and_reproducible():
    X = np.arange(20.0).reshape(2, 10)
    Y = np.arange(10.0).reshape(1, 10)
    Xa, Ya, Xb, Yb = train_test_split(X, Y, test_fraction=0.3, seed=4)
    assert Xa.shape == (2, 7) and Xb.shape == (2, 3)
    assert sorted(np.concatenate([Ya[0], Yb[0]]).tolist()) == list(range(10))
    np.testing.assert_array_equal(Xa[1], Ya[0] + 10)  # columns stay together
    np.testing.assert_array_equal(train_test_split(X, Y, test_fraction=0.3, seed=4)[0], Xa)


@pytest.mark.parametrize("name", [name for name in DATASETS if name not in ("digits", "names")])
def test_datasets_are_deterministic_balanced_and_seed_dependent(name):
    X, Y = DATASETS[name](seed=3)
    X2, Y2 = DATASETS[name](seed=3)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(Y, Y2)
    assert not np.array_equal(DATASETS[name](seed=4)[0], X)
    assert X.shape[0] == 2 and X.shape[1] == Y.shape[1] and np.all(np.isfinite(X))
    counts = Y.sum(axis=1) if Y.shape[0] > 1 else np.array([Y.sum(), (1 - Y).sum()])
    assert np.all(counts == counts[0])


def test_flower_follows_the_course_recipe():
    """Independent restatement of load_planar_dataset with default_rng(seed)."""
    X, Y = flower(m=10, seed=5)
    rng = np.random.default_rng(5)
    t0 = np.linspace(0, 3.12, 5) + rng.standard_normal(5) * 0.2
    r0 = 4 * np.sin(4 * t0) + rng.standard_normal(5) * 0.2
    np.testing.assert_allclose(X[:, :5], np.stack([r0 * np.sin(t0), r0 * np.cos(t0)]))
    assert Y.shape == (1, 10) and Y[0].tolist() == [0] * 5 + [1] * 5


def test_two_class_sets_have_binary_labels_and_spiral_is_one_hot():
    for fn in (flower, moons, circles):
        assert set(np.unique(fn()[1]).tolist()) == {0, 1}
    _, Y = spiral(m=30, n_classes=3)
    assert Y.shape == (3, 30) and np.all(Y.sum(axis=0) == 1)


def test_digits_as_images_are_scikit_learns_8x8_images_with_their_labels():
    """Oracle: `load_digits().images` (n, 8, 8), scikit-learn's own image layout."""
    datasets = pytest.importorskip("sklearn.datasets")
    from manualgrad.data.datasets import digits, digits_split

    bunch = datasets.load_digits()
    label_of = {img.tobytes(): t for img, t in zip(bunch.images / 16.0, bunch.target, strict=True)}
    X, Y = digits(m=50, seed=2, images=True)
    assert X.shape == (8, 8, 1, 50) and Y.shape == (10, 50)
    for i in range(50):
        assert label_of[np.ascontiguousarray(X[:, :, 0, i]).tobytes()] == np.argmax(Y[:, i])
    flat, images = digits_split(), digits_split(images=True)
    assert images[0].shape == (8, 8, 1, 1438) and images[2].shape == (8, 8, 1, 359)
    for a, b in zip(flat, images, strict=True):  # the same split, examples last
        np.testing.assert_array_equal(a, b.reshape(-1, b.shape[-1]))
