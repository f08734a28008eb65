"""The error types manualgrad raises.

Every public entry point checks its inputs at trace time and raises one of these,
never a raw XLA or ``TypeError`` from deep inside JAX. All of them derive from
:class:`ManualgradError`, so ``except manualgrad.ManualgradError`` catches them all,
and from the matching built-in (``ValueError`` or ``TypeError``), so existing
``except ValueError`` code keeps working.
"""

from __future__ import annotations

import importlib
from typing import Any


class ManualgradError(Exception):
    """Base class of every error manualgrad raises on bad input."""


class ShapeError(ManualgradError, ValueError):
    """An array's shape does not fit the conventions (X: (n_x, m), W[l]: (n_l, n_{l-1}), ...)."""


class ConfigError(ManualgradError, ValueError):
    """An option is unknown or out of range (activation or loss name, keep_prob, l2, ...)."""


class DTypeError(ManualgradError, TypeError):
    """An array has a dtype the formulas cannot use (integer X, mixed float widths, ...)."""


class DataError(ManualgradError, ValueError):
    """Data at the boundary is unusable: unreadable file, non-numeric cell, NaN/Inf, bad labels."""


class CheckpointError(ManualgradError, ValueError):
    """A checkpoint is corrupt, truncated, or was written for a different run."""


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """`n` with its noun in the right number, for messages: "1 label", "3 labels"."""
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"


class MissingDependencyError(ManualgradError, ImportError):
    """An optional package a feature needs is not installed; the message says what to install."""


def optional_import(module: str, *, needed_for: str, install: str) -> Any:
    """Import the optional package `module`, or raise :class:`MissingDependencyError` with a hint.

    Optional packages (equinox, torch, matplotlib, dp-accounting, scikit-learn) are imported
    by name when a feature first needs them, so that neither `import manualgrad` nor the type
    checker requires them. `needed_for` says which feature asked; `install` the command.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"{needed_for} needs the optional package `{module}`, which is not installed: {install}"
        ) from err
