"""The names data set (real surnames from faker's person providers) and `train --data names`.

The oracle is faker's own lists, read here directly from the provider modules.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import manualgrad as mg
from manualgrad.data import names as nm

pytest.importorskip("faker")


def _surnames(locale):
    provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
    return {str(n).strip().lower() for n in provider.last_names}


def _decode(column, alphabet):
    return "".join(alphabet[i - 1] for i in column if i != nm.PAD)


def test_names_are_faker_surnames_of_exactly_their_own_language_padded_with_zeros():
    X, Y = nm.names(seed=2)
    alphabet = nm.names_alphabet()
    assert X.dtype == np.int32 and X.shape == (12, Y.shape[1]) and Y.shape[0] == 10
    assert np.all(Y.sum(axis=0) == 1) and X.min() == 0 and X.max() == len(alphabet)
    lists = [_surnames(locale) for locale in nm.LANGUAGES.values()]
    for i in range(0, X.shape[1], 97):  # every 97th name: faker's list of its label, no other
        word, label = _decode(X[:, i], alphabet), int(np.argmax(Y[:, i]))
        owners = [k for k, names in enumerate(lists) if any(n[:12] == word for n in names)]
        assert owners == [label], (word, owners, label)
        nonzero = np.flatnonzero(X[:, i])
        assert nonzero.tolist() == list(range(len(nonzero)))  # padding only after the name


def test_names_are_deterministic_and_the_split_is_disjoint():
    X, _Y = nm.names(m=50, seed=3)
    np.testing.assert_array_equal(X, nm.names(m=50, seed=3)[0])
    assert not np.array_equal(X, nm.names(m=50, seed=4)[0])
    X_tr, Y_tr, X_te, _Y_te = nm.names_split(test_fraction=0.2, seed=1, T=40)  # none cut
    n = X_tr.shape[1] + X_te.shape[1]
    assert X_te.shape[1] == round(0.2 * n) and Y_tr.shape == (10, X_tr.shape[1])
    train = {X_tr[:, i].tobytes() for i in range(X_tr.shape[1])}
    assert not any(X_te[:, i].tobytes() in train for i in range(X_te.shape[1]))


def test_cli_trains_the_token_model_on_names(capsys):
    from manualgrad.cli import main

    argv = ["train", "--quiet", "--data", "names", "--epochs", "3", "--batch-size", "512"]
    rc = main([*argv, "--optimizer", "adam", "--lr", "0.02"])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert "Embedding(" in out and "test accuracy" in out
    accuracy = float(out.split("test accuracy")[1].split("%")[0].strip(" │|"))
    assert accuracy > 30  # 10 classes, the largest 18%: the model learns from the ids
    # --model lstm: Embedding → LSTM → Dense, one tiny epoch (it runs and reports)
    rc = main(["train", "--quiet", "--data", "names", "--model", "lstm", "--m", "300",
               "--epochs", "1", "--batch-size", "120"])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert "LSTM(64" in out and "test accuracy" in out


def test_names_loader_is_a_built_in_data_set():
    assert mg.data.datasets.get_dataset("names") is nm.names
