r"""Check the course's conv, pool, RNN and LSTM backward functions against `jax.vjp`.

The later assignments of the course have backward functions of their own layers, in their
own layouts (examples first for images, (n_x, m, T_x) for sequences):

| assignment | your function                  | it returns                                   |
|------------|--------------------------------|----------------------------------------------|
| C4W1 conv  | `conv_backward(dZ, cache)`     | `(dA_prev, dW, db)`                          |
| C4W1 pool  | `pool_backward(dA, cache, mode)` | `dA_prev`                                  |
| C5W1 RNN   | `rnn_backward(da, caches)`     | {"dx", "da0", "dWax", "dWaa", "dba"}         |
| C5W1 LSTM  | `lstm_backward(da, caches)`    | {"dx", "da0", "dWf", "dbf", "dWi", …, "dbo"} |

with the caches of the course's forwards: conv `(A_prev, W, b, {"stride", "pad"})`, pool
`(A_prev, {"f", "stride"})`, RNN `([(a_next, a_prev, xt, parameters), …], x)`, LSTM
`([(a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters), …], x)`.
:func:`check_layer_backward` runs the function on several random configurations (stride 1
and 2, pad 0 and 2, f 2 and 3, max and average; sequences of 1 to 4 steps), compares each key
with the vjp of the forward written with jax's primitives
(:mod:`manualgrad.checking._layer_oracles`), and names each key that disagrees after the
classic mistake it equals (:mod:`manualgrad.checking._layer_mistakes`): "padding not cropped",
"stride ignored", "da_prev not carried", …. As in the course, dW and db are sums over the m
examples (no 1/m) and every gradient is the vjp with the upstream dZ, dA or da passed.

>>> from manualgrad import course
>>> report = check_layer_backward(course.rnn_backward, kind="rnn")
>>> report.passed, len(report.results)
(True, 3)
"""

from __future__ import annotations

import functools
import inspect
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from manualgrad._errors import ConfigError, plural
from manualgrad.checking._layer_mistakes import BY_ID, mistakes_of
from manualgrad.checking._layer_mistakes import conv_backward as conv_with_mistake
from manualgrad.checking._layer_mistakes import lstm_backward as lstm_with_mistake
from manualgrad.checking._layer_mistakes import pool_backward as pool_with_mistake
from manualgrad.checking._layer_mistakes import rnn_backward as rnn_with_mistake
from manualgrad.checking._layer_oracles import conv_vjp, pool_vjp, sequence_vjp
from manualgrad.checking._user_code import exception_line
from manualgrad.checking.gradcheck import relative_difference

#: The assignments checked here, each by the name of its backward function.
LAYER_KINDS = ("conv", "pool", "rnn", "lstm")
#: A key passes at this relative difference to jax.vjp or below (float64).
TOL = 1e-10
#: A mistake explains a key when the key is this close to what the mistake gives.
MATCH_TOL = 1e-8

_KEYS = {
    "conv": ("dA_prev", "dW", "db"),
    "pool": ("dA_prev",),
    "rnn": ("dx", "da0", "dWax", "dWaa", "dba"),
    "lstm": ("dx", "da0", *(f"d{w}{g}" for g in "fico" for w in "Wb")),
}
_ARGS = {"conv": "dZ, cache", "pool": "dA, cache, mode", "rnn": "da, caches", "lstm": "da, caches"}


def layer_kind(name: str) -> str | None:
    """The assignment a function name is from: "conv" for …conv_backward, "pool", "rnn",
    "lstm"; None for any other name."""
    last = name.rsplit(".", 1)[-1].lower()
    for kind in LAYER_KINDS:
        if last.startswith(f"{kind}_backward"):
            return kind
    return None


class LayerCase(NamedTuple):
    """One configuration a layer's backward is checked on: its arguments, the truth, and what
    each applicable mistake of the catalogue returns on it."""

    name: str
    description: str
    args: tuple[Any, ...]
    truth: dict[str, np.ndarray]
    wrong: dict[str, dict[str, np.ndarray]]  # mistake id -> the keys it returns


def _conv_case(rng, name, m, n, f, stride, pad, n_C_prev, n_C) -> LayerCase:
    A_prev = rng.standard_normal((m, n, n, n_C_prev))
    W = rng.standard_normal((f, f, n_C_prev, n_C))
    b = rng.standard_normal((1, 1, 1, n_C))
    n_out = (n + 2 * pad - f) // stride + 1
    dZ = rng.standard_normal((m, n_out, n_out, n_C))
    cache = (A_prev, W, b, {"stride": stride, "pad": pad})
    wrong = {
        mistake.id: conv_with_mistake(dZ, A_prev, W, b, stride, pad, mistake.id)
        for mistake in mistakes_of("conv")
    }
    return LayerCase(
        name,
        f"A_prev {m}×{n}×{n}×{n_C_prev}, W {f}×{f}×{n_C_prev}×{n_C}, stride {stride}, pad {pad}",
        (dZ, cache),
        conv_vjp(A_prev, W, b, dZ, stride, pad),
        {k: v for k, v in wrong.items() if v is not None},
    )


def _pool_case(rng, name, m, n, f, stride, n_C, mode) -> LayerCase:
    A_prev = rng.standard_normal((m, n, n, n_C))  # no ties: one maximum per window
    n_out = (n - f) // stride + 1
    dA = rng.standard_normal((m, n_out, n_out, n_C))
    cache = (A_prev, {"f": f, "stride": stride})
    wrong = {
        mistake.id: pool_with_mistake(dA, A_prev, f, stride, mode, mistake.id)
        for mistake in mistakes_of("pool")
    }
    return LayerCase(
        name,
        f"{mode}, A_prev {m}×{n}×{n}×{n_C}, f {f}, stride {stride}",
        (dA, cache, mode),
        pool_vjp(A_prev, dA, f, stride, mode),
        {k: v for k, v in wrong.items() if v is not None},
    )


def _sequence_case(rng, kind, name, n_x, n_a, m, T_x) -> LayerCase:
    x = rng.standard_normal((n_x, m, T_x))
    a0 = rng.standard_normal((n_a, m))
    if kind == "rnn":
        weights = {"Wax": (n_a, n_x), "Waa": (n_a, n_a), "ba": (n_a, 1)}
    else:
        weights = {f"{w}{g}": (n_a, n_a + n_x) if w == "W" else (n_a, 1)
                   for g in "fico" for w in "Wb"}  # fmt: skip
    p = {k: 0.8 * rng.standard_normal(s) for k, s in weights.items()}
    n_y = 2
    extra = (
        {"Wya": (n_y, n_a), "by": (n_y, 1)} if kind == "rnn" else {"Wy": (n_y, n_a), "by": (n_y, 1)}
    )
    parameters = p | {k: rng.standard_normal(s) for k, s in extra.items()}
    backward = rnn_with_mistake if kind == "rnn" else lstm_with_mistake
    caches = _course_caches(kind, x, a0, parameters)
    da = rng.standard_normal((n_a, m, T_x))
    wrong = {mistake.id: backward(da, caches, mistake.id) for mistake in mistakes_of(kind)}
    return LayerCase(
        name,
        f"n_x {n_x}, n_a {n_a}, m {m}, T_x {T_x}",
        (da, caches),
        sequence_vjp(kind, x, a0, p, da),
        wrong,
    )


def _course_caches(kind: str, x, a0, parameters) -> tuple[list[tuple[Any, ...]], np.ndarray]:
    """The caches of :func:`manualgrad.course.rnn_forward` (or `lstm_forward`), the course's
    ([per-step cache, …], x), as numpy float64 (the parameters dict as given)."""
    import jax

    from manualgrad import course

    with jax.enable_x64(True):
        forward = course.rnn_forward if kind == "rnn" else course.lstm_forward
        steps, x_out = forward(x, a0, parameters)[-1]
        steps = [
            tuple(v if isinstance(v, dict) else np.asarray(v, np.float64) for v in step)
            for step in steps
        ]
    return steps, np.asarray(x_out, np.float64)


@functools.lru_cache(maxsize=16)
def layer_cases(kind: str, seed: int = 0) -> tuple[LayerCase, ...]:
    """The configurations of one assignment, drawn from `seed`.

    conv: stride 1 and 2, pad 0 and 2, f 2 and 3, n_C = n_C_prev on two (so W's channel axes
    swapped still runs); pool: max and average, f 2 and 3, stride 1 (windows overlap) and 2;
    RNN and LSTM: 1 to 4 time steps, n_a ≠ n_x. Cached: the arrays are copied before any
    function sees them.
    """
    if kind not in LAYER_KINDS:
        raise ConfigError(f"unknown layer {kind!r}; expected one of {list(LAYER_KINDS)}")
    rng = np.random.default_rng(seed)
    if kind == "conv":
        return (
            _conv_case(rng, "stride 1, pad 0", 2, 4, 3, 1, 0, 2, 3),
            _conv_case(rng, "stride 2, pad 2", 2, 5, 3, 2, 2, 3, 3),
            _conv_case(rng, "stride 1, pad 2", 2, 4, 2, 1, 2, 2, 2),
            _conv_case(rng, "stride 2, pad 0", 3, 6, 2, 2, 0, 3, 2),
        )
    if kind == "pool":
        return (
            _pool_case(rng, "max 2/2", 2, 4, 2, 2, 3, "max"),
            _pool_case(rng, "max 3/1", 2, 5, 3, 1, 2, "max"),
            _pool_case(rng, "average 2/2", 2, 4, 2, 2, 3, "average"),
            _pool_case(rng, "average 3/1", 2, 5, 3, 1, 2, "average"),
        )
    return (
        _sequence_case(rng, kind, "T_x 4", 3, 5, 4, 4),
        _sequence_case(rng, kind, "T_x 1", 3, 2, 3, 1),
        _sequence_case(rng, kind, "T_x 3, n_a 1, m 1", 2, 1, 1, 3),
    )


# ------------------------------------------------------------------------------ the report


class KeyFinding(NamedTuple):
    """The verdict on one returned key: `difference` to the truth (None when the shapes
    differ), and the mistake ids that explain it ("unknown": none)."""

    key: str
    shape: tuple[int, ...]
    expected_shape: tuple[int, ...]
    difference: float | None
    passed: bool
    mistakes: tuple[str, ...] = ()


class LayerResult(NamedTuple):
    """One configuration's verdict; `error` when the function raised, `missing` keys it did
    not return."""

    case: LayerCase
    findings: tuple[KeyFinding, ...]
    error: str | None = None
    missing: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.error is None and not self.missing and all(f.passed for f in self.findings)


@dataclass(frozen=True)
class LayerReport:
    """The result of :func:`check_layer_backward`: one :class:`LayerResult` per configuration."""

    function: str
    kind: str
    tol: float
    results: tuple[LayerResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def mistakes(self) -> set[str]:
        """The ids of every diagnosis made ("unknown" included)."""
        return {i for r in self.results for f in r.findings if not f.passed for i in f.mistakes}

    def summary(self) -> list[str]:
        """One line per diagnosis with the keys it covers, then missing keys and errors."""
        keys: dict[str, list[str]] = {}
        for r in self.results:
            for f in r.findings:
                if not f.passed:
                    for i in f.mistakes:
                        keys.setdefault(i, [])
                        if f.key not in keys[i]:
                            keys[i].append(f.key)
        lines = [f"{', '.join(k)}: {_explain(i)}" for i, k in keys.items()]
        missing = sorted({k for r in self.results for k in r.missing})
        if missing:
            lines.append(
                f"returned no {', '.join(missing)} (expected {', '.join(_KEYS[self.kind])})"
            )
        errors = [r for r in self.results if r.error is not None]
        if errors:
            names = ", ".join(repr(r.case.name) for r in errors)
            lines.append(f"raised on {names}: {errors[0].error}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "passed": self.passed,
            "function": self.function,
            "convention": self.kind,
            "tol": self.tol,
            "summary": self.summary(),
            "networks": [
                {
                    "name": r.case.name,
                    "description": r.case.description,
                    "passed": r.passed,
                    "error": r.error,
                    "missing": list(r.missing),
                    "keys": [
                        f._asdict()
                        | {"shape": list(f.shape), "expected_shape": list(f.expected_shape)}
                        for f in r.findings
                    ],
                }
                for r in self.results
            ],
        }

    def print(self, console: Any = None) -> None:
        """Print a table per configuration and the verdict with `rich` (default stdout)."""
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        console = Console() if console is None else console
        console.print(
            f"{self.function} ({self.kind}, the course's layout) against jax.vjp, float64, "
            f"{plural(len(self.results), 'configuration')}; a key passes at a relative "
            f"difference ‖g − g̃‖ / (‖g‖ + ‖g̃‖) ≤ {self.tol:.0e}"
        )
        for r in self.results:
            title = f"{r.case.name}: {r.case.description}"
            if r.error is not None:
                console.print(f"{title}: [bold red]raised[/bold red] {escape(r.error)}")
                continue
            if r.passed:
                console.print(
                    f"{title}: {plural(len(r.findings), 'key')}, all agree [green]PASS[/green]"
                )
                continue
            console.print(f"{title}:")
            table = Table()
            for column in ("key", "shape", "vs jax.vjp", "verdict", "diagnosis"):
                table.add_column(column, justify="right" if column == "vs jax.vjp" else "left")
            for f in r.findings:
                shape = "×".join(map(str, f.shape)) or "scalar"
                if f.shape != f.expected_shape:
                    shape += f" (want {'×'.join(map(str, f.expected_shape))})"
                difference = "–" if f.difference is None else f"{f.difference:.2e}"
                verdict = "[green]PASS[/green]" if f.passed else "[bold red]FAIL[/bold red]"
                words = " + ".join(_label(i) for i in f.mistakes)
                table.add_row(f.key, shape, difference, verdict, escape(words))
            console.print(table)
            if r.missing:
                console.print(f"  returned no {', '.join(r.missing)}")
        n = plural(len(self.results), "configuration")
        if self.passed:
            console.print(f"[green]PASS[/green]: every key of {n} agrees with jax.vjp")
            return
        failed = sum(not r.passed for r in self.results)
        console.print(f"[bold red]FAIL[/bold red]: {failed} of {n} disagree with jax.vjp:")
        for line in self.summary():
            console.print(f"- {escape(line)}")

    def format(self) -> str:
        """The printed report as plain text (no colour)."""
        from rich.console import Console

        buffer = io.StringIO()
        self.print(Console(file=buffer, width=110, color_system=None, soft_wrap=True))
        return buffer.getvalue()


_UNNAMED = {
    "unknown": ("no known mistake", "no known mistake fits (compare your loop with the course's, "
                "key by key)"),
    "float32": ("float32", "computed in float32 (about 1e-7 relative): compute in float64, as "
                "the check does — numpy's default, or jax.numpy under jax.enable_x64"),
}  # fmt: skip


def _label(i: str) -> str:
    return _UNNAMED[i][0] if i in _UNNAMED else BY_ID[i].label


def _explain(i: str) -> str:
    return _UNNAMED[i][1] if i in _UNNAMED else BY_ID[i].text


# ------------------------------------------------------------------------------ running it


def _returned(out: Any, kind: str, name: str) -> dict[str, Any]:
    """The function's return value as {key: value}: conv's tuple, pool's array, a dict."""
    keys = _KEYS[kind]
    if kind == "conv":
        if not isinstance(out, tuple | list) or len(out) != 3:
            what = (
                f"{type(out).__name__} of {len(out)}"
                if isinstance(out, tuple | list)
                else type(out).__name__
            )
            raise ConfigError(f"`{name}` returned {what}; expected the course's (dA_prev, dW, db)")
        return dict(zip(keys, out, strict=True))
    if kind == "pool":
        return {"dA_prev": out}
    if not isinstance(out, Mapping):
        raise ConfigError(
            f"`{name}` returned {type(out).__name__}; expected the course's gradients dict with "
            f"keys {', '.join(keys)}"
        )
    return dict(out)


def _finding(key: str, value: Any, case: LayerCase) -> KeyFinding:
    low_precision = np.asarray(value).dtype in (np.float32, np.float16)
    user = np.asarray(value, dtype=np.float64)
    right = case.truth[key]
    same = user.shape == right.shape
    difference = relative_difference(user, right) if same else None
    if same and difference is not None and difference <= TOL:
        return KeyFinding(key, user.shape, right.shape, difference, True)
    fits = tuple(
        i
        for i, wrong in case.wrong.items()
        if key in wrong
        and wrong[key].shape == user.shape
        and not np.array_equal(wrong[key], right)
        and relative_difference(user, wrong[key]) <= MATCH_TOL
    )
    unknown = ("float32",) if low_precision else ("unknown",)
    return KeyFinding(key, user.shape, right.shape, difference, False, fits[:1] or unknown)


def check_layer_backward(
    func: Callable[..., Any],
    *,
    kind: str | None = None,
    seed: int = 0,
    name: str | None = None,
) -> LayerReport:
    """Run the course's `conv_backward`, `pool_backward`, `rnn_backward` or `lstm_backward`
    (`kind` "conv", "pool", "rnn", "lstm"; by default from `func`'s name) on
    :func:`layer_cases` and compare every key with jax.vjp of the layer's forward.

    Returns a :class:`LayerReport`; an exception `func` raises is its configuration's failure.
    Raises ConfigError when the kind is unknown, when `func` cannot take the course's
    arguments, or when what it returns is not the course's (a tuple for conv, a dict for
    the sequences).
    """
    if name is None:
        name = str(getattr(func, "__name__", type(func).__name__))
    kind = layer_kind(name) if kind is None else kind
    if kind not in LAYER_KINDS:
        raise ConfigError(
            f"`{name}` is not one of the course's layer backward functions; name the kind: "
            f"one of {list(LAYER_KINDS)} (`--convention`)"
        )
    try:
        inspect.signature(func).bind(*_ARGS[kind].split(", "))
    except TypeError as err:
        raise ConfigError(
            f"`{name}` cannot be called as {name}({_ARGS[kind]}) ({err}): the course's "
            f"{kind}_backward takes ({_ARGS[kind]})"
        ) from None
    except ValueError:  # no signature: just call it
        pass
    import jax

    results = []
    for case in layer_cases(kind, seed):
        args = _copy(case.args)
        try:
            with jax.enable_x64(True):  # jax.numpy code computes in float64, as numpy does
                out = func(*args)
        except Exception as err:  # the user's code failed on this configuration: its verdict
            results.append(LayerResult(case, (), exception_line(err, func)[0]))
            continue
        returned = _returned(out, kind, name)
        findings = tuple(_finding(k, returned[k], case) for k in _KEYS[kind] if k in returned)
        missing = tuple(k for k in _KEYS[kind] if k not in returned)
        results.append(LayerResult(case, findings, missing=missing))
    return LayerReport(name, kind, TOL, tuple(results))


def _copy(tree: Any) -> Any:
    """Fresh copies of every array in the arguments (the user's code may write into them)."""
    if isinstance(tree, np.ndarray):
        return tree.copy()
    if isinstance(tree, dict):
        return {k: _copy(v) for k, v in tree.items()}
    if isinstance(tree, tuple | list):
        return type(tree)(_copy(v) for v in tree)
    return tree


__all__ = [
    "LAYER_KINDS",
    "TOL",
    "LayerCase",
    "LayerReport",
    "LayerResult",
    "check_layer_backward",
    "layer_cases",
    "layer_kind",
]
