"""Option rules shared by the sub-commands, so `check` and `train` read them alike."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from manualgrad._core.activations import ACTIVATIONS
from manualgrad._core.losses import output_activation
from manualgrad._errors import ConfigError, plural

ACTIVATIONS_HELP = (
    "one hidden activation for every hidden layer (the output layer follows the loss: "
    "sigmoid for bce, softmax for ce, linear for mse), or one name per layer"
)


def activations(
    text: str | None, n_layers: int, loss: str, default_hidden: Sequence[str]
) -> tuple[str, ...]:
    """The `--activations NAME[,NAME...]` rule: one name per layer, or one hidden name.

    With one name per layer (n_layers names) they are taken as given. With one name,
    every hidden layer gets it and the output layer gets the loss's activation
    (:func:`manualgrad._core.losses.output_activation`); no option means `default_hidden`
    (n_layers - 1 names) plus that output. A name that is not an activation is the
    error, before any count.
    """
    output = output_activation(loss)
    if text is None:
        return (*default_hidden, output)
    names = tuple(name.strip() for name in text.split(","))
    for name in names:
        if name not in ACTIVATIONS:
            raise ConfigError(
                f"--activations: unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}"
            )
    if len(names) == n_layers:
        return names
    if len(names) == 1:
        return names * (n_layers - 1) + (output,)
    raise ConfigError(
        f"--activations takes 1 name (every hidden layer; the output gets {output} for loss "
        f"{loss!r}) or {n_layers} (one per layer), got {plural(len(names), 'name')}: {text!r}"
    )


def positive_int(text: str) -> int:
    """An argparse type: an int ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


def declare(
    parser: argparse.ArgumentParser,
    arguments: Mapping[str, Mapping[str, Any]],
    title: str | None = None,
) -> None:
    """Add a table of options, `{"--flag": add_argument keywords}`, to `parser`.

    With a `title` they form an argument group of that name in `--help`.
    """
    target = parser if title is None else parser.add_argument_group(title)
    for flag, keywords in arguments.items():
        target.add_argument(flag, **keywords)
