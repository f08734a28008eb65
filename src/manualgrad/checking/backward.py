r"""Check your own backward pass against `jax.grad`, with a diagnosis of what is wrong.

You wrote backprop by hand — the course's `L_model_backward` in numpy, say — and want
to know whether it is right, and if not, what is wrong with it.
:func:`check_backward` runs your function on several small float64 networks
([LINEAR → RELU] × (L − 1) → LINEAR → SIGMOID, the course's model), compares every key it
returns with `jax.grad` of an independently written cost, and explains each key that
disagrees (:mod:`manualgrad.checking._mistakes`): "dW2 is m times too large: the 1/m of formula
(2) is missing". :func:`assert_backward_matches` does the same inside a test and raises
an `AssertionError` with the per-key table; the pytest plugin
(:mod:`manualgrad.pytest_plugin`) hands it to your test as a fixture.

| convention | your function                     | it returns                          |
|------------|-----------------------------------|-------------------------------------|
| `"course"` | `L_model_backward(AL, Y, caches)` | {"dA0"…, "dW1"…, "db1"…}            |
| `"core"`   | `grads(params, X, Y)`             | {"dW1", "db1", …} or {"W1", "b1", …} |

`caches` is the course's list of L caches `((A_prev, W, b), Z)`, as
:func:`manualgrad.course.L_model_forward` makes them; all arrays are numpy float64, so
numpy code (in-place `dZ[Z <= 0] = 0` included) and jax.numpy code both work.

What the keys are compared with (per network of m examples, cost C = (1/m) Σ_i L_i):

| key       | the truth                                      | formula |
|-----------|------------------------------------------------|---------|
| `dW{l}`   | ∂C/∂W[l]                                       | (2)     |
| `db{l}`   | ∂C/∂b[l], shape (n_l, 1)                       | (2)     |
| `dA{l}`   | m ∂C/∂A[l]: each example's own ∂L_i/∂a[l](i)   | (4)     |

as the course defines them (its dA carry no 1/m; dA0 is with respect to X). A key
passes when its relative difference ‖g − g̃‖ / (‖g‖ + ‖g̃‖) is at most `tol` (1e-10; a
correct float64 backward measures about 1e-16). `loss="mse"` checks a backward of the
squared error ½ (a − y)² instead of the cross-entropy, same network.

>>> from manualgrad import course
>>> report = check_backward(course.L_model_backward)
>>> report.passed, len(report.results)
(True, 5)
"""

from __future__ import annotations

import functools
import importlib.util
import io
import re
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from manualgrad._errors import ConfigError, DTypeError, ShapeError, plural
from manualgrad.checking._mistakes import (
    Finding,
    Layer,
    diagnose,
    explain_ids,
    harmonize,
    label,
    sigmoid,
    summarize,
)
from manualgrad.checking._user_code import exception_line

CONVENTIONS = ("course", "core", "flat")
#: The losses a checked backward may differentiate (both after a sigmoid output).
#: (Names of `manualgrad.LOSSES`, the loss records, which this is not.)
CHECKED_LOSSES = ("bce", "mse")
#: A key passes at this relative difference to jax.grad or below (float64).
TOL = 1e-10
#: The function name `load_function` looks for when the spec names none.
DEFAULT_FUNCTION = "L_model_backward"


class BackwardCase(NamedTuple):
    """One network a backward pass is checked on: relu hidden layers, a sigmoid output.

    `layers` is [n_x, n_1, …, n_L] with n_L = 1; `seed` draws W, b, X and Y. With
    `tie`, example 1 is all zeros and the hidden biases are 0, so every hidden Z is
    exactly 0 in that column: there relu'(0) decides (it is 0).
    """

    name: str
    layers: tuple[int, ...]
    m: int
    seed: int
    tie: bool = False

    def describe(self) -> str:
        acts = ", ".join(["relu"] * (len(self.layers) - 2) + ["sigmoid"])
        tie = "; example 1 puts every hidden Z exactly at 0" if self.tie else ""
        return (
            f"network {self.name!r}: layers {','.join(map(str, self.layers))} ({acts}), "
            f"m = {self.m}{tie}"
        )


def default_cases(seed: int = 0) -> tuple[BackwardCase, ...]:
    """The course's shape of network, an all-square one, a relu tie, and two random ones.

    Square widths let a dW transposed, or a dA[l-1] computed with W[l-1], still run and
    show in the values; the random networks (depth 1–4, widths 1–6, m 3–9) come from
    `seed`, so a run is reproducible.
    """
    rng = np.random.default_rng(seed)
    random_cases = []
    for i in (1, 2):
        depth = int(rng.integers(1, 5))
        widths = tuple(int(n) for n in rng.integers(1, 7, size=depth))  # n_x, n_1 … n_{L-1}
        random_cases.append(
            BackwardCase(f"random {i}", (*widths, 1), int(rng.integers(3, 10)), seed + 10 + i)
        )
    return (
        BackwardCase("course", (5, 4, 3, 1), 8, seed),
        BackwardCase("square", (4, 4, 4, 4, 1), 6, seed + 1),
        BackwardCase("relu tie", (3, 5, 2, 1), 5, seed + 2, tie=True),
        *random_cases,
    )


def flat_cases(seed: int = 0) -> tuple[BackwardCase, ...]:
    """The regularization assignment's fixed depth, LINEAR → RELU → LINEAR → RELU → LINEAR →
    SIGMOID: its own (2, 20, 3, 1), a square one, the relu tie and two random widths."""
    rng = np.random.default_rng(seed)
    random_cases = []
    for i in (1, 2):
        widths = tuple(int(n) for n in rng.integers(1, 7, size=3))  # n_x, n_1, n_2
        random_cases.append(
            BackwardCase(f"random {i}", (*widths, 1), int(rng.integers(3, 10)), seed + 10 + i)
        )
    return (
        BackwardCase("course", (2, 20, 3, 1), 8, seed),
        BackwardCase("square", (4, 4, 4, 1), 6, seed + 1),
        BackwardCase("relu tie", (3, 5, 2, 1), 5, seed + 2, tie=True),
        *random_cases,
    )


def flat_cache(net: _Network) -> tuple[np.ndarray, ...]:
    """The regularization assignment's flat cache of a 3-layer network (numpy float64):
    (Z1, A1, W1, b1, Z2, A2, W2, b2, Z3, A3, W3, b3), or with dropout
    (Z1, D1, A1, W1, b1, Z2, D2, A2, W2, b2, Z3, A3, W3, b3) — A1 and A2 dropped,
    relu(Z) ⊙ D / keep_prob, and the masks as its `forward_propagation_with_dropout` makes
    them (D1 of 0/1 ints, D2 of booleans)."""
    cache: list[np.ndarray] = []
    for layer in net.layers:
        masks = {1: np.int64, 2: np.bool_}
        D = [] if layer.D is None else [layer.D.astype(masks.get(layer.l, np.int64))]
        b = net.params[f"b{layer.l}"]
        cache += [layer.Z.copy(), *D, layer.A.copy(), layer.W.copy(), b.copy()]
    return tuple(cache)


class _Network(NamedTuple):
    """A drawn case: params, data, forward values and the true gradients (numpy float64)."""

    case: BackwardCase
    params: dict[str, np.ndarray]
    X: np.ndarray
    Y: np.ndarray
    layers: tuple[Layer, ...]
    truth: dict[str, np.ndarray]
    true_dA: dict[int, np.ndarray]
    AL: np.ndarray
    caches: list[tuple[tuple[np.ndarray, ...], np.ndarray]]  # the course's ((A_prev, W, b), Z)
    masks: dict[int, np.ndarray]  # dropout's 0/1 D[l] on the hidden layers (empty: none)
    keep_prob: float = 1.0


def _forward_layers(params, X, Y, loss, l2=0.0, masks=None, keep_prob=1.0) -> tuple[Layer, ...]:
    """Each layer's forward values; with `masks`, hidden A[l] = relu(Z[l]) ⊙ D[l] / keep_prob."""
    masks = masks or {}
    n_layers = len(params) // 2
    layers, A = [], X
    for l in range(1, n_layers + 1):
        W, b = params[f"W{l}"], params[f"b{l}"]
        Z = W @ A + b
        activation = "relu" if l < n_layers else "sigmoid"
        A_next = np.maximum(Z, 0) if activation == "relu" else sigmoid(Z)
        D = masks.get(l)
        if D is not None:
            A_next = A_next * D / keep_prob
        W_below = params[f"W{l - 1}"] if l > 1 else None
        layers.append(
            Layer(
                l,
                n_layers,
                activation,
                A,
                W,
                W_below,
                Z,
                A_next,
                Y,
                loss,
                l2,
                D,
                masks.get(l - 1),
                keep_prob,
            )
        )
        A = A_next
    return tuple(layers)


def _oracle(params, X, Y, loss, l2=0.0, masks=None, keep_prob=1.0):
    """jax.grad of the cost with respect to params, every Z[l] and every A[l] (A[0] = X).

    Written with jax.nn, independently of manualgrad's backward: relu hidden layers
    (jax.nn.relu, relu'(0) = 0), a sigmoid output, and the loss on A[L] —
    −[y log a + (1 − y) log(1 − a)] or ½ (a − y)² — averaged over the m columns, plus
    the course's L2 term (λ/(2m)) Σ_l ‖W[l]‖²_F with λ = `l2`. With `masks`, the hidden
    layer l's output is inverted dropout with the fixed mask D[l], relu(Z) ⊙ D[l] /
    keep_prob; its A[l] tap is before the mask (the course's dA[l] is the masked one).
    """
    import jax
    import jax.numpy as jnp

    n_layers = len(params) // 2
    m = X.shape[1]
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v) for k, v in params.items()}
        shapes = [X.shape] + [(params[f"W{l}"].shape[0], m) for l in range(1, n_layers + 1)]
        taps_A = [jnp.zeros(s, jnp.float64) for s in shapes]
        taps_Z = taps_A[1:]
        D = [jnp.asarray((masks or {}).get(l, np.ones(shapes[l])), jnp.float64)
             for l in range(1, n_layers)]  # fmt: skip
        data = (jnp.asarray(X), jnp.asarray(Y), D, jnp.float64(l2), jnp.float64(keep_prob))
        g_params, g_Z, g_A = _oracle_grad()(p, taps_Z, taps_A, *data, loss=loss)
        return (
            {k: np.asarray(v, np.float64) for k, v in g_params.items()},
            [np.asarray(a, np.float64) for a in g_A],
            [np.asarray(z, np.float64) for z in g_Z],
        )


@functools.cache
def _oracle_grad() -> Callable[..., Any]:
    """The jitted jax.grad of :func:`_oracle`'s cost: one compile per network shape (X, Y,
    the masks, λ and keep_prob are arguments, so networks of one shape share it)."""
    import jax
    import jax.numpy as jnp

    def cost(params, taps_Z, taps_A, X, Y, masks, l2, keep_prob, loss):
        n_layers = len(params) // 2
        A = X + taps_A[0]
        for l in range(1, n_layers + 1):
            Z = jnp.matmul(params[f"W{l}"], A, precision="highest") + params[f"b{l}"]
            Z = Z + taps_Z[l - 1]
            A = (jax.nn.relu if l < n_layers else jax.nn.sigmoid)(Z) + taps_A[l]
            if l < n_layers:
                A = A * masks[l - 1] / keep_prob  # inverted dropout (masks of ones: none)
        if loss == "bce":
            losses = -(Y * jnp.log(A) + (1 - Y) * jnp.log1p(-A))
        else:
            losses = 0.5 * (A - Y) ** 2
        m = losses.shape[1]
        penalty = sum(jnp.sum(params[f"W{l}"] ** 2) for l in range(1, n_layers + 1))
        return jnp.mean(jnp.sum(losses, axis=0)) + l2 / (2 * m) * penalty

    return jax.jit(jax.grad(cost, argnums=(0, 1, 2)), static_argnames=("loss",))


def _acceptable(layers: Sequence[Layer], truth: Mapping[str, np.ndarray]) -> bool:
    """A draw that lets every mistake show: no saturated output, no zero gradient, every relu
    layer with both signs of Z (so a missing g' or a wrong one changes the numbers)."""
    AL = layers[-1].A
    if AL.min() < 0.05 or AL.max() > 0.95:
        return False
    if any(np.linalg.norm(v) < 1e-6 for v in truth.values()):
        return False
    return all((layer.Z > 0).any() and (layer.Z < 0).any() for layer in layers[:-1])


def _draw_masks(rng, dims, m, keep_prob) -> dict[int, np.ndarray]:
    """Dropout masks D[l] = [u < keep_prob] on the hidden layers, each with both a 0 and a 1
    (so a mask left out shows); none when keep_prob is 1."""
    masks = {}
    for l in range(1, len(dims) - 1) if keep_prob < 1 else ():
        D = (rng.random((dims[l], m)) < keep_prob).astype(np.float64)
        D.flat[0], D.flat[-1] = 0.0, 1.0
        masks[l] = D
    return masks


@functools.lru_cache(maxsize=64)
def _draw(case: BackwardCase, loss: str, l2: float = 0.0, keep_prob: float = 1.0) -> _Network:
    """The network of `case` (cached: its arrays are never handed out, only copies)."""
    rng = np.random.default_rng(case.seed)
    dims, m = case.layers, case.m
    n_layers = len(dims) - 1
    for _ in range(1000):
        params = {}
        for l in range(1, n_layers + 1):
            params[f"W{l}"] = rng.standard_normal((dims[l], dims[l - 1])) / np.sqrt(dims[l - 1])
            zero_b = case.tie and l < n_layers
            params[f"b{l}"] = (
                np.zeros((dims[l], 1)) if zero_b else 0.5 * rng.standard_normal((dims[l], 1))
            )
        X = rng.standard_normal((dims[0], m))
        if case.tie:
            X[:, 0] = 0.0
        Y = (rng.random((1, m)) < 0.5).astype(np.float64)
        masks = _draw_masks(rng, dims, m, keep_prob)
        layers = _forward_layers(params, X, Y, loss, l2, masks, keep_prob)
        if not _acceptable(layers, {}):
            continue
        g_params, g_A, g_Z = _oracle(params, X, Y, loss, l2, masks, keep_prob)
        truth = {f"d{k}": v for k, v in g_params.items()}
        truth |= {f"dA{l}": m * g_A[l] for l in range(n_layers)}  # (4): per-example dA
        truth |= {f"dZ{l}": m * g_Z[l - 1] for l in range(1, n_layers + 1)}  # (5), per example
        if _acceptable(layers, truth):
            true_dA = {l: m * g_A[l] for l in range(1, n_layers + 1)}
            AL, caches = layers[-1].A, [((x.A_prev, x.W, params[f"b{x.l}"]), x.Z) for x in layers]
            net = _Network(case, params, X, Y, layers, truth, true_dA, AL, caches, masks)
            return net._replace(keep_prob=keep_prob)
    raise ConfigError(f"could not draw a usable network for {case.describe()}; try another seed")


# ------------------------------------------------------------------------------ the report


class KeyNote(NamedTuple):
    """What is wrong with a network's returned keys themselves: `id` "missing", "shifted" or
    "case", and the sentence that says it."""

    id: str
    text: str


class CaseResult(NamedTuple):
    """One network's verdict: a :class:`~manualgrad.checking._mistakes.Finding` per key, in backprop
    order, or `error`, the exception the function raised on it.

    `notes`: what is wrong with the returned keys themselves (missing, shifted by one, a
    different case); the keys that are there are checked all the same, and a note fails
    the network.
    """

    case: BackwardCase
    findings: tuple[Finding, ...]
    error: str | None = None
    notes: tuple[KeyNote, ...] = ()

    @property
    def passed(self) -> bool:
        return self.error is None and not self.notes and all(f.passed for f in self.findings)


@dataclass(frozen=True)
class BackwardReport:
    """The result of :func:`check_backward`: one :class:`CaseResult` per network."""

    function: str
    convention: str
    loss: str
    tol: float
    results: tuple[CaseResult, ...]
    l2: float = 0.0
    keep_prob: float = 1.0

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def mistakes(self) -> set[str]:
        """The ids of every diagnosis made ("follows" and "unknown" included)."""
        return {i for r in self.results for f in r.findings if not f.passed for i in f.mistakes}

    def summary(self) -> list[str]:
        """One line per distinct diagnosis, naming the keys it covers, then the errors raised."""
        findings = [f for r in self.results for f in r.findings]
        lines = [f"{', '.join(keys)}: {explain_ids(ids)}" for ids, keys in summarize(findings)]
        noted: dict[str, tuple[str, list[str]]] = {}  # one line per kind, the first's words
        for r in self.results:
            for note in r.notes:
                noted.setdefault(note.id, (note.text, []))[1].append(repr(r.case.name))
        for text, names in noted.values():
            others = f" (and likewise on {', '.join(names[1:])})" if names[1:] else ""
            lines.append(f"keys on {names[0]}{others}: {text}")
        errors = [r for r in self.results if r.error is not None]
        if errors:
            names = ", ".join(repr(r.case.name) for r in errors)
            lines.append(f"raised on {names}: {errors[0].error}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""

        def finding(f: Finding) -> dict[str, Any]:
            return f._asdict() | {"shape": list(f.shape), "expected_shape": list(f.expected_shape)}

        return {
            "passed": self.passed,
            "function": self.function,
            "convention": self.convention,
            "loss": self.loss,
            "tol": self.tol,
            "l2": self.l2,
            "keep_prob": self.keep_prob,
            "summary": self.summary(),
            "networks": [
                {
                    "name": r.case.name,
                    "layers": list(r.case.layers),
                    "m": r.case.m,
                    "passed": r.passed,
                    "error": r.error,
                    "notes": [note._asdict() for note in r.notes],
                    "keys": [finding(f) for f in r.findings],
                }
                for r in self.results
            ],
        }

    def print(self, console: Any = None, *, summary_first: bool = False) -> None:
        """Print the tables and the diagnosis with `rich` (to `console`, default stdout)."""
        from rich.console import Console

        console = Console() if console is None else console
        verdict = self._verdict()
        if summary_first:
            console.print(verdict)
        networks = plural(len(self.results), "network")
        console.print(
            f"{self.function} ({self.convention} convention, loss {self.loss}"
            f"{f', L2 λ = {self.l2:g}' if self.l2 else ''}"
            f"{f', dropout keep_prob = {self.keep_prob:g}' if self.keep_prob < 1 else ''}"
            ") against jax.grad, "
            f"float64, {networks}; a key passes at a relative difference "
            f"‖g − g̃‖ / (‖g‖ + ‖g̃‖) ≤ {self.tol:.0e}"
        )
        for result in self.results:
            _print_case(console, result)
        if not summary_first:
            console.print(verdict)

    def format(self, *, summary_first: bool = False) -> str:
        """The printed report as plain text (no colour), e.g. for an assertion message."""
        from rich.console import Console

        buffer = io.StringIO()
        console = Console(file=buffer, width=110, color_system=None, soft_wrap=True)
        self.print(console, summary_first=summary_first)
        return buffer.getvalue()

    def _verdict(self) -> str:
        from rich.markup import escape

        n = len(self.results)
        if self.passed:
            return f"[green]PASS[/green]: every key of {plural(n, 'network')} agrees with jax.grad"
        failed = sum(not r.passed for r in self.results)
        networks = plural(n, "network")
        lines = [f"[bold red]FAIL[/bold red]: {failed} of {networks} disagree with jax.grad:"]
        lines += [f"- {escape(line)}" for line in self.summary()]
        return "\n".join(lines)


def _print_case(console: Any, result: CaseResult) -> None:
    from rich.markup import escape
    from rich.table import Table

    title = result.case.describe()
    if result.error is not None:
        console.print(f"{title}: [bold red]raised[/bold red] {escape(result.error)}")
        return
    n = plural(len(result.findings), "key")
    if result.passed:
        console.print(f"{title}: {n}, all agree [green]PASS[/green]")
        return
    if all(f.passed for f in result.findings):
        console.print(f"{title}: {n}, all agree, but the keys [bold red]FAIL[/bold red]:")
        for note in result.notes:
            console.print(f"  {escape(note.text)}")
        return
    console.print(f"{title}:")
    table = Table()
    table.add_column("key")
    table.add_column("shape")
    table.add_column("vs jax.grad", justify="right")
    table.add_column("verdict")
    table.add_column("diagnosis")
    for f in result.findings:
        shape = "×".join(map(str, f.shape)) or "scalar"
        if f.shape != f.expected_shape:
            shape += f" (want {'×'.join(map(str, f.expected_shape))})"
        difference = "–" if f.difference is None else f"{f.difference:.2e}"
        verdict = "[green]PASS[/green]" if f.passed else "[bold red]FAIL[/bold red]"
        table.add_row(f.key, shape, difference, verdict, escape(label(f)))
    console.print(table)
    for f in result.findings:
        if "unknown" in f.mistakes:
            console.print(f"  {f.key}: {escape(f.text or '')}")
    for note in result.notes:
        console.print(f"  {escape(note.text)}")


# ------------------------------------------------------------------- running the function


def _function_name(func: Callable[..., Any]) -> str:
    return getattr(func, "__name__", type(func).__name__)


def _exception_line(
    err: BaseException, func: Callable[..., Any], net: _Network | None, convention: str = "course"
) -> str:
    """`ValueError: … (file.py, line 12: dW = …)`, at the deepest frame in func's file.

    With `net` (the course convention), a TypeError, KeyError or IndexError raised on a
    line that reads a cache also says what the caches are (:func:`_caches_passed`).
    """
    text, line = exception_line(err, func)
    reading_a_cache = "cache" in (line or "").lower()
    if net is not None and reading_a_cache and isinstance(err, TypeError | LookupError):
        text += f" — {_flat_cache_passed(net) if convention == 'flat' else _caches_passed(net)}"
    return text


def _caches_passed(net: _Network) -> str:
    """What the course convention passes as `caches`, with this network's shapes."""

    def shape(x: np.ndarray) -> str:
        return "×".join(map(str, x.shape))

    layers = "; ".join(
        f"caches[{i}] = (({', '.join(map(shape, linear))}), {shape(Z)})"
        for i, (linear, Z) in enumerate(net.caches)
    )
    return (
        f"while reading a cache: what was passed is the course's list of "
        f"{plural(len(net.caches), 'tuple')} caches[l] = ((A_prev, W, b), Z) (a tuple of "
        f"numpy arrays, then Z), here {layers}"
    )


def _flat_cache_passed(net: _Network) -> str:
    """What the flat convention passes as `cache`, with this network's shapes."""
    names = [
        f"{k}{layer.l}"
        for layer in net.layers
        for k in ("Z", *"D" * (layer.D is not None), "A", "W", "b")
    ]
    shapes = ", ".join(
        f"{n} {'×'.join(map(str, x.shape))}" for n, x in zip(names, flat_cache(net), strict=True)
    )
    return (
        f"while reading a cache: what was passed is the regularization assignment's flat tuple "
        f"cache = ({', '.join(names)}), here {shapes}"
    )


def _expected_keys(convention: str, n_layers: int) -> list[str]:
    if convention == "flat":  # the assignment's order: dZ3, dW3, db3, dA2, dZ2, …, db1
        keys = []
        for l in range(n_layers, 0, -1):
            keys += [f"dZ{l}", f"dW{l}", f"db{l}"] + ([f"dA{l - 1}"] if l > 1 else [])
        return keys
    keys = [f"d{p}{l}" for l in range(1, n_layers + 1) for p in "Wb"]
    if convention == "course":
        keys += [f"dA{l}" for l in range(n_layers)]
    return keys


def _span(keys: Sequence[str]) -> str:
    """ "dA1" or "dA1 … dA3" (keys of one kind, in order)."""
    return keys[0] if len(keys) == 1 else f"{keys[0]} … {keys[-1]}"


def _matching_keys(
    out: dict[Any, Any], expected: Sequence[str], n_layers: int, convention: str
) -> tuple[dict[Any, Any], list[KeyNote]]:
    """The returned dict under the expected keys where it is recognisably meant, and notes.

    Keys that differ only in case ("dw1") are taken as the key they spell; course-convention
    dA keys shifted by one (dA1 … dA[L] for dA0 … dA[L-1], the output layer's dA[L-1] stored
    as "dA" + str(L)) are taken one lower. Each is said in a note; nothing is dropped.
    """
    notes = []
    by_lower = {key.lower(): key for key in expected}
    cased = {
        k: by_lower[k.lower()]
        for k in out
        if isinstance(k, str) and k not in expected and by_lower.get(k.lower(), k) not in out
    }
    if cased:
        theirs, ours = ", ".join(cased), ", ".join(cased.values())
        notes.append(
            KeyNote(
                "case",
                f"your keys {theirs} differ from {ours} only in case (checked as those): dict keys "
                f"are case-sensitive, so grads[{next(iter(cased.values()))!r}] raises KeyError",
            )
        )
        out = {cased.get(k, k): v for k, v in out.items()}
    dA = sorted(int(k[2:]) for k in out if isinstance(k, str) and re.fullmatch(r"dA[1-9]\d*", k))
    if convention == "course" and n_layers in dA and "dA0" not in out:
        theirs = [f"dA{j}" for j in dA]
        notes.append(
            KeyNote(
                "shifted",
                f"your dA{n_layers} holds what dA{n_layers - 1} should (every dA key is shifted by "
                "one; checked one lower): layer l's backward gives dA[l-1], so the output layer's "
                'is grads["dA" + str(L - 1)]',
            )
        )
        shifted = {f"dA{j - 1}": out[f"dA{j}"] for j in dA}
        out = {k: v for k, v in out.items() if k not in theirs} | shifted
    missing = [k for k in expected if k not in out]
    if missing:
        listed = ", ".join(_span(keys) for keys in _kinds(missing))
        checked = "; the keys it did return are checked" if len(missing) < len(expected) else ""
        notes.append(
            KeyNote(
                "missing",
                f"returned no {listed} (expected {', '.join(_span(k) for k in _kinds(expected))})"
                + checked,
            )
        )
    return out, notes


def _kinds(keys: Sequence[str]) -> list[list[str]]:
    """`keys` grouped by kind, dA, dZ, dW then db (the groups that are not empty)."""
    groups = [[k for k in keys if k.startswith(kind)] for kind in ("dA", "dZ", "dW", "db")]
    return [g for g in groups if g]


def _as_arrays(
    out: Any, net: _Network, convention: str, name: str
) -> tuple[dict[str, np.ndarray], tuple[KeyNote, ...]]:
    """The returned dict as numpy arrays under the course's keys, and notes on its keys.

    A missing key, dA keys shifted by one or keys in another case are notes (the rest is
    checked); what cannot be compared at all raises a one-line error.
    """
    n_layers = len(net.layers)
    expected = _expected_keys(convention, n_layers)
    hints = {
        "course": f"'dA0' … 'dA{n_layers - 1}', 'dW1' … 'dW{n_layers}', 'db1' … 'db{n_layers}'",
        "core": f"'dW1', 'db1', … 'dW{n_layers}', 'db{n_layers}' (or the params' names 'W1', …)",
        "flat": ", ".join(repr(k) for k in _expected_keys("flat", n_layers)),
    }
    hint = hints[convention]
    where = f"on the {net.case.describe()}"
    if not isinstance(out, Mapping):
        raise ShapeError(
            f"`{name}` returned {type(out).__name__} {where}; expected a dict with keys {hint}"
        )
    out = dict(out)
    if convention == "core" and all(f"W{l}" in out for l in range(1, n_layers + 1)):
        out = {f"d{k}": v for k, v in out.items()}  # params-style names
    out, notes = _matching_keys(out, expected, n_layers, convention)
    arrays = {}
    for key in expected:
        if key not in out:
            continue
        value = out[key]
        try:
            array = np.asarray(value)
        except Exception:  # an object numpy cannot convert
            array = np.asarray(None)
        if array.dtype.kind not in "fiu":
            raise DTypeError(
                f"`{name}` returned {key!r} = {type(value).__name__} {where}; expected a "
                "numeric array (numpy or jax)"
            )
        arrays[key] = array if array.dtype.kind == "f" else array.astype(np.float64)
    return arrays, tuple(notes)


def _shape_owner(key: str) -> str:
    kind, l = key[:2], int(key[2:])
    if kind == "dZ":
        return f"Z{l}'s shape (n_{l}, m)"
    if kind == "dA":
        return "X's shape (n_x, m)" if l == 0 else f"A{l}'s shape (n_{l}, m)"
    return f"{kind[1]}{l}'s shape"


def _call(func, net: _Network, convention: str, l2: float) -> Any:
    """`func` on fresh copies of the network's arrays, with float64 on for jax.numpy code;
    with L2, λ is the last argument (the course's `lambd`), with dropout keep_prob."""
    import jax

    lambd = (l2,) if l2 else (net.keep_prob,) if net.keep_prob < 1 else ()
    with jax.enable_x64(True):
        if convention == "flat":
            return func(net.X.copy(), net.Y.copy(), flat_cache(net), *lambd)
        if convention == "course":
            caches = [(tuple(x.copy() for x in linear), Z.copy()) for linear, Z in net.caches]
            return func(net.AL.copy(), net.Y.copy(), caches, *lambd)
        params = {k: v.copy() for k, v in net.params.items()}
        return func(params, net.X.copy(), net.Y.copy(), *lambd)


_ARGS = {"course": ["AL", "Y", "caches"], "core": ["params", "X", "Y"], "flat": ["X", "Y", "cache"]}


def _check_signature(
    func: Callable[..., Any], name: str, convention: str, l2: float, keep_prob: float = 1.0
) -> None:
    """A ConfigError, before any network, when `func` cannot take the arguments it will get."""
    import inspect

    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # a builtin or a callable without one: just call it
        return
    extra = ["lambd"] if l2 else ["keep_prob"] if keep_prob < 1 else []
    args = _ARGS[convention] + extra
    try:
        signature.bind(*args)
    except TypeError as err:
        call = f"{name}({', '.join(args)})"
        params = list(signature.parameters)
        fourth = params[3] if len(params) > 3 else ""
        if not extra and _binds(signature, [*args, "lambd"]) and fourth == "keep_prob":
            fix = "it takes keep_prob: check it with dropout, `--keep-prob p` (`keep_prob=p`)"
        elif not extra and _binds(signature, [*args, "lambd"]):
            fix = "it takes lambd: check it with the cost's λ, `--l2 λ` (`l2=λ` in Python)"
        elif extra:
            option = "--l2" if l2 else "--keep-prob"
            fix = (
                f"`{option}` passes {'λ' if l2 else 'keep_prob'} as a 4th argument: add "
                f"`{extra[0]}` to it, or "
                f"leave `{option}` out"
            )
        else:
            fix = f"the {convention} convention calls it so"
        raise ConfigError(
            f"`{name}{signature}` cannot be called as {call} ({err}): {fix}"
        ) from None


def detect_convention(func: Callable[..., Any]) -> str:
    """The convention `func` is written in, from its parameters and name: "flat" for the
    regularization assignment's `backward_propagation…(X, Y, cache, …)`, "core" for
    `(params, X, Y)`, else "course" (`L_model_backward(AL, Y, caches)`)."""
    import inspect

    try:
        params = [p.lower() for p in inspect.signature(func).parameters]
    except (TypeError, ValueError):
        return "course"
    if params[:3] == ["x", "y", "cache"] or (
        _function_name(func).startswith("backward_propagation") and params[2:3] == ["cache"]
    ):
        return "flat"
    if params[:3] == ["params", "x", "y"] or params[:3] == ["parameters", "x", "y"]:
        return "core"
    return "course"


def _binds(signature: Any, args: list[str]) -> bool:
    try:
        signature.bind(*args)
    except TypeError:
        return False
    return True


def check_backward(
    func: Callable[..., Any],
    *,
    convention: str | None = None,
    loss: str = "bce",
    cases: Sequence[BackwardCase] | None = None,
    tol: float = TOL,
    name: str | None = None,
    l2: float = 0.0,
    keep_prob: float = 1.0,
) -> BackwardReport:
    """Run `func` on each network of `cases` and compare every key with jax.grad.

    `convention` "course": `func(AL, Y, caches)` returns {"dA0", …, "dW1", …, "db1", …};
    "core": `func(params, X, Y)` returns the gradients under the params' keys (with or
    without the leading "d"); "flat": the regularization assignment's
    `backward_propagation(X, Y, cache)` on its 3-layer network and flat cache
    (:func:`flat_cache`), returning {"dZ3", "dW3", "db3", "dA2", "dZ2", …, "db1"}. None
    (the default) takes it from `func`'s parameters and name (:func:`detect_convention`).
    `loss` is the cost `func` differentiates: "bce" (the
    course's cross-entropy) or "mse" (½ (a − y)²), after a sigmoid output. `cases`
    defaults to :func:`default_cases`; `name` (default: `func.__name__`) names it in
    the report. With `l2` = λ > 0 the cost has the course's L2 term (λ/(2m)) Σ_l ‖W[l]‖²,
    so dW[l] gains (λ/m) W[l], and `func` gets λ as its last argument, the course's
    `L_model_backward_with_regularization(AL, Y, caches, lambd)` or
    `backward_propagation_with_regularization(X, Y, cache, lambd)`. With `keep_prob` < 1
    (the "flat" convention only: the course's L-layer caches hold no masks), the hidden
    layers have inverted dropout with masks drawn once per network, the same in the cache
    and in jax.grad's cost, and `func` gets keep_prob as its last argument,
    `backward_propagation_with_dropout(X, Y, cache, keep_prob)`. A `func` that cannot
    take the arguments is a ConfigError before any network runs, not a disagreement.

    Returns a :class:`BackwardReport`; an exception `func` raises is recorded as its
    network's failure, and so are keys that are not the course's (missing, dA keys shifted
    by one, another case: a :class:`KeyNote`; the keys that are there are checked). Raises
    :class:`~manualgrad.ShapeError` (or :class:`~manualgrad.DTypeError`) when `func`
    returns something that cannot be compared: not a dict, a non-numeric value, or a
    shape no known mistake explains (a transposed dW and a db without keepdims are
    diagnosed instead).
    """
    convention = detect_convention(func) if convention is None else convention
    if convention not in CONVENTIONS:
        raise ConfigError(f"unknown convention {convention!r}; expected one of {list(CONVENTIONS)}")
    if loss not in CHECKED_LOSSES:
        raise ConfigError(
            f"loss {loss!r} cannot be checked here; expected one of {list(CHECKED_LOSSES)} (the "
            "course's network ends in a sigmoid)"
        )
    if not l2 >= 0:
        raise ConfigError(f"`l2` is the L2 strength λ ≥ 0, got {l2}")
    _check_dropout(convention, l2, keep_prob)
    if cases is None:
        cases = flat_cases() if convention == "flat" else default_cases()
    cases = tuple(cases)
    if convention == "flat" and any(len(c.layers) != 4 for c in cases):
        raise ConfigError(
            "the flat convention's cache is that of a 3-layer network (Z1, …, b3): every case "
            "needs 4 layer sizes; see `flat_cases()`"
        )
    name = _function_name(func) if name is None else name
    _check_signature(func, name, convention, l2, keep_prob)
    results = []
    for case in cases:
        net = _draw(case, loss, float(l2), float(keep_prob))
        try:
            out = _call(func, net, convention, l2)
        except Exception as err:  # the user's code failed on this network: its verdict
            cached = net if convention in ("course", "flat") else None
            results.append(CaseResult(case, (), _exception_line(err, func, cached, convention)))
            continue
        returned, notes = _as_arrays(out, net, convention, name)
        findings = diagnose(net.layers, returned, net.truth, net.true_dA, tol=tol)
        for f in findings:
            if f.shape != f.expected_shape and f.mistakes == ("unknown",):
                raise ShapeError(
                    f"`{name}` returned {f.key!r} with shape {f.shape} on the "
                    f"{case.describe()}; expected {f.expected_shape}, {_shape_owner(f.key)}"
                )
        results.append(CaseResult(case, tuple(findings), notes=notes))
    # where a network cannot tell two mistakes apart, take the one the others pin down
    settled = iter(harmonize([f for r in results for f in r.findings]))
    results = [r._replace(findings=tuple(next(settled) for _ in r.findings)) for r in results]
    return BackwardReport(name, convention, loss, tol, tuple(results), l2, keep_prob)


def _check_dropout(convention: str, l2: float, keep_prob: float) -> None:
    if not 0 < keep_prob <= 1:
        raise ConfigError(f"`keep_prob` is a probability in (0, 1], got {keep_prob}")
    if keep_prob < 1 and convention != "flat":
        raise ConfigError(
            f"`keep_prob` checks the regularization assignment's backward_propagation_with_dropout"
            f"(X, Y, cache, keep_prob), whose flat cache holds the masks D1, D2; the {convention} "
            "convention's arguments have no dropout masks"
        )
    if keep_prob < 1 and l2:
        raise ConfigError(
            "`l2` and `keep_prob` together: the assignment's backward functions take one of "
            "lambd or keep_prob (it explores one at a time); check each on its own"
        )


def assert_backward_matches(
    func: Callable[..., Any],
    *,
    convention: str | None = None,
    loss: str = "bce",
    cases: Sequence[BackwardCase] | None = None,
    tol: float = TOL,
    l2: float = 0.0,
    keep_prob: float = 1.0,
) -> BackwardReport:
    """:func:`check_backward`, raising `AssertionError` unless every key of every network passes.

    The options are :func:`check_backward`'s: `convention` ("course" or "core"), `loss`
    ("bce" or "mse"), `cases` (the networks; :func:`default_cases` by default) and `tol`
    (relative, per key; :data:`TOL`), `l2` (the L2 strength λ, passed to `func`) and
    `keep_prob` (dropout, passed to `func`).

    The message is the report: the verdict and one line per diagnosis first, then the
    table of each failing network. A returned value that cannot be compared (not a dict,
    a wrong shape) is an `AssertionError` too, with its one-line reason.
    Returns the report when it passes.
    """
    __tracebackhide__ = True  # pytest: show the caller's line, not this one
    try:
        report = check_backward(
            func, convention=convention, loss=loss, cases=cases, tol=tol, l2=l2,
            keep_prob=keep_prob,
        )  # fmt: skip
    except (ShapeError, DTypeError) as err:
        raise AssertionError(str(err)) from err
    if not report.passed:
        raise AssertionError(report.format(summary_first=True))
    return report


def _attribute(module: Any, name: str, file: str) -> Any:
    """`module.name`, where `name` may be dotted ("NN.L_model_backward"); None if the first
    part is missing, a ConfigError naming the part that is missing after it."""
    head, *rest = name.split(".")
    value = getattr(module, head, None)
    for i, part in enumerate(rest):
        if value is None:
            break
        owner = ".".join([head, *rest[:i]])
        if not hasattr(value, part):
            attributes = sorted(a for a in dir(value) if not a.startswith("_"))[:6]
            raise ConfigError(
                f"{owner!r} in {file!r} has no attribute {part!r} (it has "
                f"{', '.join(attributes) or 'none'}): name one with FILE.py:{owner}.NAME"
            )
        value = getattr(value, part)
    return value


def load_function(spec: str, default: str = DEFAULT_FUNCTION) -> Callable[..., Any]:
    """The function `FUNCTION` of the Python file in `spec` = "FILE.py:FUNCTION" (or "FILE.py").

    FUNCTION may be dotted, for a function in a class or another object of the file:
    "FILE.py:NN.L_model_backward" (a staticmethod, or a method of an instance the file makes).

    The file is run as a module with its own folder on `sys.path` (so it can import its
    neighbours, like a notebook's `dnn_utils`). Raises :class:`~manualgrad.ConfigError`,
    with one line, when the file is missing, is not Python, fails to load, or does not
    define a callable `FUNCTION`.
    """
    path_text, sep, name = spec.rpartition(":")
    if not sep or not name or name.endswith(".py") or "/" in name or "\\" in name:
        path_text, name = spec, default
    path = Path(path_text)
    if path.suffix != ".py":
        raise ConfigError(f"expected FILE.py or FILE.py:FUNCTION, got {spec!r}")
    if not path.is_file():
        raise ConfigError(f"no such file {path_text!r} (from {spec!r})")
    module_name = f"_manualgrad_checked_{path.stem}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ConfigError(f"cannot load {path.name!r} as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[module_name] = module  # as `import` does: dataclasses and pickling need it
    try:
        loader_spec.loader.exec_module(module)
    except (Exception, SystemExit) as err:
        del sys.modules[module_name]
        if isinstance(err, SyntaxError):
            reason = f"SyntaxError: {err.msg} (line {err.lineno})"
        else:
            reason = f"{type(err).__name__}: {err}"
            frames = traceback.extract_tb(err.__traceback__)
            lines = [f.lineno for f in frames if Path(f.filename).resolve() == path.resolve()]
            if lines:
                reason += f" (line {lines[-1]})"
            if not isinstance(err, ImportError):
                reason += (
                    ": the whole file runs when it is loaded — move top-level work (loading "
                    'data, training, plotting) under `if __name__ == "__main__":`'
                )
        raise ConfigError(f"{path.name!r} does not load: {reason}") from None
    finally:
        sys.path.remove(folder)
    func = _attribute(module, name, path.name)
    if func is None:
        defined = sorted(
            k
            for k, v in vars(module).items()
            if callable(v) and getattr(v, "__module__", None) == module_name and k[0] != "_"
        )
        listed = ", ".join(defined[:6]) + (", …" if len(defined) > 6 else "")
        raise ConfigError(
            f"{path.name!r} defines no function {name!r} (it has {listed or 'none'}): "
            "name one with FILE.py:FUNCTION"
        )
    if not callable(func):
        raise ConfigError(f"{name!r} in {path.name!r} is a {type(func).__name__}, not a function")
    return func


__all__ = [
    "CHECKED_LOSSES",
    "CONVENTIONS",
    "TOL",
    "BackwardCase",
    "BackwardReport",
    "CaseResult",
    "KeyNote",
    "assert_backward_matches",
    "check_backward",
    "default_cases",
    "load_function",
]
