"""The exceptions manualgrad raises: every one is a :class:`ManualgradError`.

| exception         | also a       | raised for                                          |
|-------------------|--------------|-----------------------------------------------------|
| `ShapeError`      | `ValueError` | shapes that do not fit (X transposed, Y not (n_L, m)) |
| `DTypeError`      | `TypeError`  | dtypes that do not fit (integer X, mixed precision)   |
| `ConfigError`     | `ValueError` | unknown names, options out of range                  |
| `DataError`       | `ValueError` | data files and labels                                |
| `CheckpointError` | `ValueError` | checkpoints that do not match the run                |
| `MissingDependencyError` | `ImportError` | an optional package a feature needs is absent |

Every message says what was expected, what arrived and how to fix it; the catalogue
of cases is in the documentation ("Errors").
"""

from manualgrad._errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DTypeError,
    ManualgradError,
    MissingDependencyError,
    ShapeError,
)

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DTypeError",
    "DataError",
    "ManualgradError",
    "MissingDependencyError",
    "ShapeError",
]
