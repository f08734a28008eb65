r"""Real surnames of ten languages, as character ids: the classic name → language task, offline.

The names are the surname lists that the `faker` package ships in its person providers
(`faker.providers.person.<locale>.Provider.last_names`; faker is MIT-licensed, its lists
compiled from public sources per country), one locale per language:

| label | language | locale | names kept |   | label | language | locale | names kept |
|-------|----------|--------|------------|---|-------|----------|--------|------------|
| 0     | English  | en_US  | 773        |   | 5     | Dutch    | nl_NL  | 1,025      |
| 1     | German   | de_DE  | 377        |   | 6     | Czech    | cs_CZ  | 197        |
| 2     | French   | fr_FR  | 326        |   | 7     | Finnish  | fi_FI  | 372        |
| 3     | Italian  | it_IT  | 1,152      |   | 8     | Swedish  | sv_SE  | 437        |
| 4     | Spanish  | es_ES  | 939        |   | 9     | Croatian | hr_HR  | 794        |

6,392 names in all (counts from faker 40.63; another faker version may ship other lists).
Each name is stripped and lower-cased; a name listed by several of the ten locales
("martin", "adam", …) is ambiguous and is dropped from all of them, so every name has
exactly one label.

**Encoding.** Characters are numbered 1 … V − 1 in sorted order of the characters that
occur (:func:`names_alphabet`, V = 62 with faker 40.63); **id 0 is padding**. A name
becomes its first T ids (T = 12 by default: longer names, about 2% of them, are cut),
followed by zeros up to T. X is (T, m) int32, examples last, for
`mg.layers.Embedding(V, dim)` as first layer; Y is one-hot (10, m) float64.

Needs faker: ``pip install "manualgrad[names]"``.
"""

from __future__ import annotations

import collections
import importlib
from functools import cache

import numpy as np

from manualgrad._errors import ConfigError, optional_import

__all__ = ["LANGUAGES", "PAD", "names", "names_alphabet", "names_split"]

#: language -> the faker locale whose surnames it gets; the label is the position
LANGUAGES: dict[str, str] = {
    "English": "en_US",
    "German": "de_DE",
    "French": "fr_FR",
    "Italian": "it_IT",
    "Spanish": "es_ES",
    "Dutch": "nl_NL",
    "Czech": "cs_CZ",
    "Finnish": "fi_FI",
    "Swedish": "sv_SE",
    "Croatian": "hr_HR",
}

#: the padding id after the end of a name
PAD = 0


def _labelled_names() -> tuple[tuple[str, int], ...]:
    """(name, label) for every name in exactly one locale, by label then name."""
    optional_import(
        "faker", needed_for="the names data set", install='pip install "manualgrad[names]"'
    )
    return _read_names()


@cache
def _read_names() -> tuple[tuple[str, int], ...]:
    per_language = []
    for locale in LANGUAGES.values():
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        per_language.append(sorted({str(n).strip().lower() for n in provider.last_names}))
    count = collections.Counter(n for names in per_language for n in names)
    return tuple(
        (n, label) for label, names in enumerate(per_language) for n in names if count[n] == 1
    )


def names_alphabet() -> str:
    """The characters that occur in the names, sorted: character k has id k + 1 (0 is padding)."""
    return "".join(sorted({ch for n, _ in _labelled_names() for ch in n}))


def _encode(words: list[str], alphabet: str, T: int) -> np.ndarray:
    """Names -> (T, m) int32 ids: each name's first T characters, then PAD (0)."""
    ids = {ch: k + 1 for k, ch in enumerate(alphabet)}
    X = np.full((T, len(words)), PAD, np.int32)
    for i, word in enumerate(words):
        row = [ids[ch] for ch in word[:T]]
        X[: len(row), i] = row
    return X


def names(m: int | None = None, seed: int = 1, T: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Surnames as character ids X (T, m) int32 and their languages, one-hot Y (10, m) float64.

    The columns in the order of `default_rng(seed).permutation`, the first `m` of them
    (default all 6,392). See the module docstring for the source, the classes and the
    encoding (padding id 0, names cut at T characters). For a held-out test set use
    :func:`names_split`.
    """
    data = _labelled_names()
    n = len(data)
    if m is not None and (
        isinstance(m, bool) or not isinstance(m, int | np.integer) or not 1 <= m <= n
    ):
        raise ConfigError(f"`m` must be an int in [1, {n}] for names, got {m!r}")
    if isinstance(T, bool) or not isinstance(T, int | np.integer) or T < 1:
        raise ConfigError(f"`T` must be an int ≥ 1 (characters kept per name), got {T!r}")
    perm = np.random.default_rng(seed).permutation(n)[: n if m is None else m]
    words = [data[i][0] for i in perm]
    labels = np.array([data[i][1] for i in perm], np.int64)
    X = _encode(words, names_alphabet(), int(T))
    Y = np.eye(len(LANGUAGES))[:, labels]
    return X, Y


def names_split(
    test_fraction: float = 0.2, seed: int = 1, T: int = 12
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`names` with a held-out test set: X_train, Y_train, X_test, Y_test.

    round(test_fraction · 6392) columns for test (1,278 at the default 0.2), the rest
    for training, split by :func:`manualgrad.data.datasets.train_test_split` with `seed`.
    """
    from manualgrad.data.datasets import train_test_split

    X, Y = names(seed=seed, T=T)
    return train_test_split(X, Y, test_fraction=test_fraction, seed=seed)
