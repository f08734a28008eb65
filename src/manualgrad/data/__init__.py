"""Data: file loaders, label checks, the train/test split, and the built-in data sets.

| module     | holds                                                         |
|------------|---------------------------------------------------------------|
| `files`    | `.csv` / `.npz` loaders and label rules                       |
| `datasets` | seeded toy sets (flower, moons, circles, spiral), digits, and `train_test_split` |
| `names`    | real surnames of ten languages as character ids (T, m), from faker |
"""

from manualgrad.data import datasets, names
from manualgrad.data.files import (
    as_targets,
    check_finite,
    load,
    load_csv,
    load_data,
    load_npz,
    one_hot,
    train_test_split,
)

__all__ = [
    "as_targets",
    "check_finite",
    "datasets",
    "load",
    "load_csv",
    "load_data",
    "load_npz",
    "names",
    "one_hot",
    "train_test_split",
]
