r"""The gradient-step benchmark behind `manualgrad bench`: manualgrad against what a user writes.

For each grid point (layer_dims, m) and precision policy, one full gradient step
(params, X, Y) -> (C, ∂C/∂params) of a relu … relu, sigmoid network with the bce loss:

| step          | what runs                                                       | role        |
|---------------|-----------------------------------------------------------------|-------------|
| `manual`      | `net.value_and_grad`, `net = mg.network(acts, "bce", precision=…)` | measured  |
| `jax`         | (a) `jax.value_and_grad` of an idiomatic cost (`jax.nn`, optax)  | baseline    |
| `eqx`         | (b) equinox MLP + optax loss (`equinox=True`)                    | baseline    |
| `torch`       | (c) PyTorch autograd (`torch=True`)                              | baseline    |
| `mg_autodiff` | `jax.value_and_grad(net.cost)` (`diagnostics=True`)              | diagnostic  |
| `bridge`      | `jax.value_and_grad(net.custom_vjp_cost)` (`diagnostics=True`)   | diagnostic  |

Every step is compiled ahead of time and its gradients are checked against (a)'s
(:data:`TOLERANCES`) before anything is timed; a step that disagrees is reported and
not timed. Each step is then timed against (a) in its own paired rotation
(:func:`manualgrad.benchmark.compare`); the headline is manual / (a) with its 95 %
interval. FLOPs of one step are counted from the shapes,

    F = 2m Σ_l n_l n_{l-1}  (forward)  + 2m Σ_l n_l n_{l-1}  (dW, (2))
        + 2m Σ_{l≥2} n_l n_{l-1}  (dA[l-1], (4); dA[0] is not needed),

and "% peak" is the fraction of the rate of a square n×n matmul at the same dtype and
precision that the step reaches, (F / t_step) / (2n³ / t_mm), measured in paired rounds
(median over rounds; `{step}_frac_peak` holds its interval too).

| policy        | params/data | matmul                                        |
|---------------|-------------|-----------------------------------------------|
| `f32-highest` | float32     | `precision="highest"` (true float32)          |
| `f32-default` | float32     | `precision="default"` (TF32 on recent NVIDIA) |
| `bf16`        | float32     | `precision="bf16"` (bf16 operands, f32 acc.)  |
| `f64`         | float64     | `precision="highest"` (CPU)                   |
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from manualgrad import network
from manualgrad.benchmark._baselines import (
    Step,
    equinox_step,
    idiomatic_value_and_grad,
    jax_step,
    torch_step,
)
from manualgrad.benchmark._measure import (
    compare,
    machine,
    max_rel_err,
    paired_rounds,
    ratio_interval,
)
from manualgrad.errors import ConfigError

Array = jax.Array

#: policy name -> (dtype name, manualgrad precision)
POLICIES: dict[str, tuple[str, str]] = {
    "f32-highest": ("float32", "highest"),
    "f32-default": ("float32", "default"),
    "bf16": ("float32", "bf16"),
    "f64": ("float64", "highest"),
}

#: max |step − (a)| / max |(a)| over every gradient and the cost, allowed per policy
TOLERANCES = {"f32-highest": 1e-4, "f32-default": 2e-2, "bf16": 5e-2, "f64": 1e-10}

#: every step a grid row can hold, in table order; `jax` is the baseline (a)
STEPS = ("manual", "jax", "eqx", "torch", "mg_autodiff", "bridge")

#: column titles
LABELS = {
    "manual": "manual",
    "jax": "jax.grad",
    "eqx": "eqx",
    "torch": "torch",
    "mg_autodiff": "jax.grad(mg.cost)",
    "bridge": "bridge",
}


class Case(NamedTuple):
    """One grid point: network [n_x, n_1, …, n_L] and batch size m."""

    layer_dims: tuple[int, ...]
    m: int


COURSE = Case((12288, 20, 7, 5, 1), 209)
QUICK_GRID = (COURSE, Case((784, 128, 64, 1), 256))
CPU_GRID = (
    COURSE,
    Case((2, 20, 20, 1), 400),
    Case((784, 256, 128, 1), 1024),
    Case((1024, 1024, 1024, 1), 1024),
)
GPU_GRID = (
    COURSE,
    Case((784, 256, 128, 1), 4096),
    Case((1024, 1024, 1024, 1), 8192),
    Case((1024, 4096, 4096, 4096, 1), 8192),
    Case((1024, 4096, 4096, 4096, 1), 65536),
)


def parse_case(text: str) -> Case:
    """'12288,20,7,5,1@209' -> Case((12288, 20, 7, 5, 1), 209)."""
    try:
        dims_text, m_text = text.split("@")
        dims = tuple(int(n) for n in dims_text.split(","))
        m = int(m_text)
    except ValueError:
        raise ConfigError(
            f"expected a grid point like '12288,20,7,5,1@209' (layer dims @ m), got {text!r}"
        ) from None
    if len(dims) < 2 or min(dims) < 1 or m < 1:
        raise ConfigError(f"grid point {text!r} needs ≥ 2 positive layer sizes and m ≥ 1")
    return Case(dims, m)


def model_flops(layer_dims: Sequence[int], m: int) -> int:
    """FLOPs of one step: forward 2mΣ n_l n_{l-1}, dW (2) the same, dA (4) for l ≥ 2."""
    sizes = [a * b for a, b in zip(layer_dims[1:], layer_dims[:-1], strict=False)]
    return 2 * m * (2 * sum(sizes) + sum(sizes[1:]))


@contextlib.contextmanager
def policy_context(policy: str) -> Iterator[Any]:
    """float64 switched on for the `f64` policy only; yields the jnp dtype."""
    if policy not in POLICIES:
        raise ConfigError(f"unknown policy {policy!r}; expected one of {list(POLICIES)}")
    dtype_name, _ = POLICIES[policy]
    context = jax.enable_x64(True) if dtype_name == "float64" else contextlib.nullcontext()
    with context:
        yield jnp.dtype(dtype_name)


def matmul_step(policy: str, n: int) -> tuple[Callable[[], Any], int]:
    """A compiled n×n by n×n product at the policy's dtype and precision, and its 2n³ FLOPs.

    For `bf16` the operands are bfloat16 and the product accumulates in float32.
    """
    _, precision = POLICIES[policy]
    with policy_context(policy) as dtype:
        ka, kb = jax.random.split(jax.random.key(0))
        a = jax.random.normal(ka, (n, n), dtype)
        b = jax.random.normal(kb, (n, n), dtype)
        dims = (((1,), (0,)), ((), ()))
        if precision == "bf16":
            a, b = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)

            def f(a, b):
                return lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)
        else:
            lax_precision = lax.Precision.HIGHEST if precision == "highest" else None

            def f(a, b):
                return lax.dot_general(a, b, dims, precision=lax_precision)

        compiled = jax.jit(f).lower(a, b).compile()
    return (lambda: compiled(a, b)), 2 * n**3


def matmul_ceiling(policy: str, n: int, *, rounds: int = 7) -> dict[str, Any]:
    """The machine's matmul rate: TFLOP/s of :func:`matmul_step` at the policy.

    `tflops` is the best of `rounds` rounds (what the machine can do; load from other
    jobs lowers the median, reported as `median_tflops`).
    """
    thunk, flops = matmul_step(policy, n)
    seconds = paired_rounds({"mm": thunk}, rounds=rounds).seconds["mm"]
    best, median = min(seconds), float(np.median(seconds))
    return {"kind": "ceiling", "policy": policy, "n": n, "ms": best * 1e3,
            "tflops": flops / best / 1e12, "median_tflops": flops / median / 1e12,
            "rounds": rounds}  # fmt: skip


def problem(layer_dims: Sequence[int], m: int, dtype: Any) -> tuple[dict, Array, Array]:
    """He-initialised params with small random biases, X ~ N(0, 1), Y ~ Bernoulli(0.5).

    The biases are not zero so that no pre-activation is exactly 0, where relu's
    derivative is a convention: a unit dead on every example of a layer would
    otherwise give Z = 0 in the next one.
    """
    kp, kb, kx, ky = jax.random.split(jax.random.key(0), 4)
    shapes_only = network(["linear"] * (len(layer_dims) - 1), "mse")  # init ignores activations
    params = shapes_only.init(layer_dims, kp, "he", dtype)
    for l, k in enumerate(jax.random.split(kb, len(layer_dims) - 1), start=1):
        b = params[f"b{l}"]
        params[f"b{l}"] = 0.1 * jax.random.normal(k, b.shape, dtype)
    X = jax.random.normal(kx, (layer_dims[0], m), dtype)
    Y = jax.random.bernoulli(ky, 0.5, (layer_dims[-1], m)).astype(dtype)
    return params, X, Y


def step_functions(
    activations: Sequence[str], precision: str, *, diagnostics: bool = False
) -> dict[str, Callable]:
    """The jax steps `(params, X, Y) -> (C, grads)`: manual, (a) and the diagnostic ones.

    manual is `mg.network(activations, "bce", precision=precision).value_and_grad`; the
    diagnostics differentiate the same network's `cost` and `custom_vjp_cost` with jax.
    """
    acts = tuple(activations)
    net = network(acts, "bce", precision=precision)
    fns: dict[str, Callable] = {
        "manual": net.value_and_grad,
        "jax": idiomatic_value_and_grad(acts, "bce", precision),
    }
    if diagnostics:
        fns["mg_autodiff"] = jax.value_and_grad(net.cost)
        fns["bridge"] = jax.value_and_grad(net.custom_vjp_cost)
    return fns


def compare_steps(
    steps: dict[str, Step],
    *,
    tol: float,
    rounds: int,
    calls: int | None = None,
    slot_s: float = 0.05,
    flops: int | None = None,
    peak: tuple[Callable[[], Any], int] | None = None,
) -> dict[str, Any]:
    """Check every step against `steps["jax"]`, then time each against it; row fields.

    A step whose (C, grads) differ from (a)'s by more than `tol` (max relative error)
    is not timed, and the row gets `agree: False` and an `error` naming it.

    With `flops` (the step's model FLOPs) and `peak` (a matmul thunk and its FLOPs, see
    :func:`matmul_step`), manual and (a) are each also paired with the matmul: per round,
    the fraction of the matmul's rate the step reaches, (F / t_step) / (F_mm / t_mm); its
    median and interval are `{name}_frac_peak`. Pairing keeps the fraction honest on a
    loaded machine, where a ceiling measured once and a step time measured later are
    slowed by different amounts.
    """
    row: dict[str, Any] = {}
    ref = steps["jax"].result()
    disagree = []
    for name, step in steps.items():
        row[f"{name}_compile_s"] = step.compile_s
        row[f"{name}_temp_bytes"] = step.temp_bytes
        row[f"{name}_flops_xla"] = step.flops_xla
        if name == "jax":
            continue
        err = max_rel_err(step.result(), ref)
        row[f"{name}_max_rel_err"] = err
        if not err <= tol:
            disagree.append(f"{name} ({err:.2e})")
    row["agree"] = not disagree
    if disagree:
        row["error"] = f"disagree with (a) beyond {tol:g}: {', '.join(disagree)}; not timed"
        return row
    others = {name: step.call for name, step in steps.items() if name != "jax"}
    results = compare(others, steps["jax"].call, rounds=rounds, calls=calls, slot_s=slot_s)
    for i, (name, (ratio, timings)) in enumerate(results.items()):
        row[f"{name}_ms"] = 1e3 * float(np.median(timings.seconds[name]))
        row[f"{name}_vs_jax"] = ratio.as_json()
        if i == 0:  # the headline rotation gives (a)'s time and the round count
            row["jax_ms"] = 1e3 * float(np.median(timings.seconds["baseline"]))
            row["rounds"], row["calls"] = timings.rounds, timings.calls
    if flops:
        for name in steps:
            if f"{name}_ms" in row:
                row[f"{name}_tflops"] = flops / (row[f"{name}_ms"] / 1e3) / 1e12
    if flops and peak is not None:
        mm, mm_flops = peak
        for name in ("manual", "jax"):
            if name not in steps:
                continue
            timings = paired_rounds({name: steps[name].call, "mm": mm}, rounds=rounds,
                                    calls=calls, slot_s=slot_s)  # fmt: skip
            frac = ratio_interval(
                [flops * t for t in timings.seconds["mm"]],
                [mm_flops * t for t in timings.seconds[name]],
            )
            row[f"{name}_frac_peak"] = frac._asdict()
    return row


def bench_case(
    case: Case,
    policy: str,
    *,
    rounds: int = 21,
    calls: int | None = None,
    slot_s: float = 0.05,
    peak: tuple[Callable[[], Any], int] | None = None,
    equinox: bool = False,
    torch: bool = False,
    diagnostics: bool = False,
) -> dict[str, Any]:
    """Compile, check and time the steps at one grid point; one JSON-able row.

    `peak`: a matmul thunk and its FLOPs (:func:`matmul_step`) for the `*_frac_peak` fields.

    A baseline that cannot run here (not installed, no such policy) is left out and
    named in the row's `skipped`.
    """
    dtype_name, precision = POLICIES[policy]
    layer_dims, m = tuple(case.layer_dims), case.m
    activations = ("relu",) * (len(layer_dims) - 2) + ("sigmoid",)
    flops = model_flops(layer_dims, m)
    row: dict[str, Any] = {
        "kind": "grid",
        "policy": policy,
        "dtype": dtype_name,
        "precision": precision,
        "layer_dims": list(layer_dims),
        "m": m,
        "activations": list(activations),
        "flops_model": flops,
    }
    with policy_context(policy) as dtype:
        params, X, Y = problem(layer_dims, m, dtype)
        steps = {
            name: jax_step(fn, params, X, Y)
            for name, fn in step_functions(activations, precision, diagnostics=diagnostics).items()
        }
        skipped = {}
        for name, wanted, build in (("eqx", equinox, equinox_step), ("torch", torch, torch_step)):
            if not wanted:
                continue
            try:
                steps[name] = build(params, X, Y, activations=activations, precision=precision)
            except (ImportError, ValueError) as err:
                skipped[name] = str(err)
        if skipped:
            row["skipped"] = skipped
        order = [name for name in STEPS if name in steps]
        row |= compare_steps(
            {name: steps[name] for name in order},
            tol=TOLERANCES[policy],
            rounds=rounds,
            calls=calls,
            slot_s=slot_s,
            flops=flops,
            peak=peak,
        )
    return row


def run(
    cases: Sequence[Case],
    policies: Sequence[str],
    *,
    rounds: int = 21,
    calls: int | None = None,
    slot_s: float = 0.05,
    ceiling_n: int | None = None,
    emit: Callable[[dict], None] | None = None,
    equinox: bool = False,
    torch: bool = False,
    diagnostics: bool = False,
) -> list[dict]:
    """The machine, the matmul ceilings, then every (policy, case); one dict per row.

    Rows have `kind` "machine", "ceiling" or "grid"; a failing case becomes a row with
    `error` (the others still run). `emit` is called with each row as soon as it exists.
    """
    for policy in policies:
        if policy not in POLICIES:
            raise ConfigError(f"unknown policy {policy!r}; expected one of {list(POLICIES)}")
    if ceiling_n is None:
        ceiling_n = 1024 if jax.devices()[0].platform == "cpu" else 8192
    rows: list[dict] = []
    info = machine()

    def add(row: dict) -> None:
        row = row if row["kind"] == "machine" else {"device": info["device"], **row}
        rows.append(row)
        if emit is not None:
            emit(row)

    add({"kind": "machine", **info, "rounds": rounds, "slot_s": slot_s})
    peaks: dict[str, tuple[Callable[[], Any], int]] = {}
    for policy in policies:
        try:
            peaks[policy] = matmul_step(policy, ceiling_n)
            add(matmul_ceiling(policy, ceiling_n))
        except Exception as err:  # one failing case must not stop the others
            add({"kind": "ceiling", "policy": policy, "n": ceiling_n, "error": repr(err)})
    for policy in policies:
        for case in cases:
            try:
                row = bench_case(
                    case,
                    policy,
                    rounds=rounds,
                    calls=calls,
                    slot_s=slot_s,
                    peak=peaks.get(policy),
                    equinox=equinox,
                    torch=torch,
                    diagnostics=diagnostics,
                )
            except Exception as err:
                row = {"kind": "grid", "policy": policy, "layer_dims": list(case.layer_dims),
                       "m": case.m, "agree": False, "error": repr(err)[:500]}  # fmt: skip
            add(row)
    return rows


# --------------------------------------------------------------------------- output


def results_table(
    title: str, caption: str, columns: Sequence[str] = (), *, left: Sequence[str] | None = None
) -> Any:
    """An empty `rich.table.Table` in the style of every benchmark report, with `columns`.

    A rule under the header, no outer edge, one space between columns, no wrapping. The
    columns named in `left` (default: the first) are left-aligned, the rest right-aligned;
    add more with `add_column` as usual.
    """
    from rich import box
    from rich.table import Table

    table = Table(
        title=title,
        caption=caption,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1),
        pad_edge=False,
    )
    left = columns[:1] if left is None else left
    for col in columns:
        table.add_column(col, justify="left" if col in left else "right", no_wrap=True)
    return table


def network_label(layer_dims: Sequence[int], m: int) -> str:
    """'12288,20,7,5,1 @209'; runs of equal widths are written once: '1024,4096×3,1 @8192'."""
    parts: list[str] = []
    dims = list(layer_dims)
    i = 0
    while i < len(dims):
        j = i
        while j + 1 < len(dims) and dims[j + 1] == dims[i]:
            j += 1
        n = j - i + 1
        parts.append(f"{dims[i]}×{n}" if n > 2 else ",".join([str(dims[i])] * n))
        i = j + 1
    return f"{','.join(parts)} @{m}"


def _fmt(x: Any, spec: str, scale: float = 1.0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return format(x * scale, spec)


def _rate(tflops: float | None) -> str:
    if tflops is None:
        return "—"
    return f"{tflops:.3g} TFLOP/s" if tflops >= 1 else f"{1e3 * tflops:.3g} GFLOP/s"


def _ratio_cell(r: dict, name: str) -> str:
    ratio = r.get(f"{name}_vs_jax")
    if not ratio:
        return "—"
    colour = {"faster": "green", "slower": "red", "tie": "default"}[ratio["verdict"]]
    text = f"{ratio['median']:.3f} [{ratio['low']:.3f}, {ratio['high']:.3f}]"
    return f"[{colour}]{text}[/{colour}]"


def table(rows: Sequence[dict], *, wide: bool = False):
    """A `rich.table.Table` of the grid rows; fits 100 columns unless `wide`.

    Default columns: policy, network @ m, manual and (a) ms, manual / (a) with its
    95 % interval, the verdict, and manual's % of the matmul ceiling. `wide` adds the
    other baselines and diagnostics (each / (a)), temp memory, compile time, the
    largest relative disagreement with (a), and rounds × calls. A point that failed
    shows "error" in its row and its message under the table (the caption wraps).
    """
    grid = [r for r in rows if r.get("kind") == "grid"]
    info = next((r for r in rows if r.get("kind") == "machine"), {})
    ceilings = [r for r in rows if r.get("kind") == "ceiling"]
    peaks = ", ".join(f"{c['policy']} {_rate(c.get('tflops'))}" for c in ceilings)
    title = "gradient step: manual vs (a) = jax.value_and_grad of an idiomatic cost"
    caption = (
        f"{info.get('device', '')}, {info.get('cores', '?')} cores, {info.get('date', '')}; "
        f"% peak: of an n×n matmul ({peaks})"
    )
    errors = [
        f"error at {r['policy']} {network_label(r['layer_dims'], r['m'])}: {r['error'][:160]}"
        for r in grid
        if "error" in r
    ]
    t = results_table(
        title,
        "\n".join([caption, *errors]),
        ("policy", "network @m", "manual ms", "(a) ms", "manual/(a) [95% CI]", "verdict", "% peak"),
        left=("policy", "network @m", "verdict"),
    )
    extra = [name for name in STEPS[2:] if any(f"{name}_vs_jax" in r for r in grid)]
    if wide:
        for name in extra:
            t.add_column(f"{LABELS[name]}/(a)", justify="right", no_wrap=True)
        for col in ("temp MiB m/(a)", "compile s m/(a)", "max rel err", "rounds×calls"):
            t.add_column(col, justify="right", no_wrap=True)
    for r in grid:
        label = network_label(r["layer_dims"], r["m"])
        if "error" in r:  # the message goes under the table, where it may wrap
            t.add_row(r["policy"], label, "—", "—", "—", "[red]error[/red]", "—")
            continue
        ratio = r.get("manual_vs_jax", {})
        cells = [
            r["policy"],
            label,
            _fmt(r.get("manual_ms"), ".3f"),
            _fmt(r.get("jax_ms"), ".3f"),
            _ratio_cell(r, "manual"),
            ratio.get("verdict", "—"),
            _fmt((r.get("manual_frac_peak") or {}).get("median"), ".1f", 100.0),
        ]
        if wide:
            cells += [_ratio_cell(r, name) for name in extra]
            mib = 1 / 2**20
            errs = [v for k, v in r.items() if k.endswith("_max_rel_err")]
            cells += [
                f"{_fmt(r.get('manual_temp_bytes'), '.2f', mib)}"
                f"/{_fmt(r.get('jax_temp_bytes'), '.2f', mib)}",
                f"{_fmt(r.get('manual_compile_s'), '.2f')}/{_fmt(r.get('jax_compile_s'), '.2f')}",
                _fmt(max(errs, default=None), ".1e"),
                f"{r.get('rounds', '—')}×{r.get('calls', '—')}",
            ]
        t.add_row(*cells)
    return t


def summary(rows: Sequence[dict]) -> str:
    """One line: how many points are faster / tied / slower than (a), and the worst bound."""
    ratios = [r["manual_vs_jax"] for r in rows if r.get("kind") == "grid" and "manual_vs_jax" in r]
    if not ratios:
        return "no grid point was timed"
    counts = {v: sum(r["verdict"] == v for r in ratios) for v in ("faster", "tie", "slower")}
    worst = max(ratios, key=lambda r: r["high"])
    return (
        f"manual vs (a) over {len(ratios)} points: {counts['faster']} faster, {counts['tie']} "
        f"tied, {counts['slower']} slower; largest upper bound {worst['high']:.3f} "
        f"(median {worst['median']:.3f})"
    )
