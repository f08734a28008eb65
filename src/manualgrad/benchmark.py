r"""Benchmark one gradient step of the hand-written backward against `jax.grad`.

For each grid point (layer_dims, m) and each precision policy, three jitted functions
of (params, X, Y) -> (C, grads) are compiled ahead of time and timed side by side:

| variant    | what runs                                                           |
|------------|---------------------------------------------------------------------|
| `manual`   | :func:`manualgrad.value_and_grad` (forward + hand-written backward)  |
| `autodiff` | `jax.value_and_grad(manualgrad.cost)` (XLA's reverse mode)           |
| `bridge`   | `jax.value_and_grad(mg.network(...).custom_vjp_cost)` (custom_vjp bridge)     |

Method: `jax.jit(f).lower(...).compile()` (compile time reported separately); the
gradients of `manual` and `bridge` are checked against `autodiff` before any timing;
then the variants are run interleaved (A B C, B C A, …, so drift and load on a shared
machine hit all of them alike), each call ended by `jax.block_until_ready`, and the
median is reported, with the minimum and the median of the per-round ratios
manual/autodiff (`ratio_paired`: calls of one round ran back to back, so load on a shared
machine cancels). FLOPs of one step are counted from the shapes,

    F = 2m Σ_l n_l n_{l-1}  (forward)  + 2m Σ_l n_l n_{l-1}  (dW, (2))
        + 2m Σ_{l≥2} n_l n_{l-1}  (dA[l-1], (4); dA[0] is not needed),

and XLA's own count from `compiled.cost_analysis()` is reported beside it. Achieved
TFLOP/s = F / median time; the matmul ceiling is a square n×n product measured in the
same run at the same dtype and precision. Temp memory is
`compiled.memory_analysis().temp_size_in_bytes`.

| policy        | params/data | matmul                                        |
|---------------|-------------|-----------------------------------------------|
| `f32-highest` | float32     | `precision="highest"` (true float32)          |
| `f32-default` | float32     | `precision="default"` (TF32 on recent NVIDIA) |
| `bf16`        | float32     | `precision="bf16"` (bf16 operands, f32 acc.)  |
| `f64`         | float64     | `precision="highest"` (CPU)                   |

With `torch=True` (`manualgrad bench --torch`) and PyTorch importable, its autograd on
the same network and data is timed as an extra column (`torch_ms`); it is never a
dependency.
"""

from __future__ import annotations

import contextlib
import math
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from manualgrad._errors import ConfigError
from manualgrad._network import network
from manualgrad.functional import cost, init_params, value_and_grad

Array = jax.Array

#: policy name -> (dtype name, manualgrad precision)
POLICIES: dict[str, tuple[str, str]] = {
    "f32-highest": ("float32", "highest"),
    "f32-default": ("float32", "default"),
    "bf16": ("float32", "bf16"),
    "f64": ("float64", "highest"),
}

#: max |manual − autodiff| / max |autodiff| over each gradient, allowed per policy
TOLERANCES = {"f32-highest": 1e-4, "f32-default": 2e-2, "bf16": 5e-2, "f64": 1e-10}

VARIANTS = ("manual", "autodiff", "bridge")


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
#: a seconds-long grid for smoke tests
TINY_GRID = (Case((8, 4, 1), 16), Case((12, 6, 3, 1), 32))


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


def device_name() -> str:
    """The first device's kind; on CPU the processor's model name from /proc/cpuinfo."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        return f"{dev.platform}: {dev.device_kind}"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()}"
    return f"cpu: {platform.processor() or platform.machine()}"


@contextlib.contextmanager
def policy_context(policy: str) -> Iterator[Any]:
    """float64 switched on for the `f64` policy only; yields the jnp dtype."""
    dtype_name, _ = POLICIES[policy]
    context = jax.enable_x64(True) if dtype_name == "float64" else contextlib.nullcontext()
    with context:
        yield jnp.dtype(dtype_name)


def _xla_flops(compiled: Any) -> float | None:
    """`cost_analysis()` flops: a dict (jax ≥ 0.4.30), a list of dicts (older), or None."""
    try:
        ca = compiled.cost_analysis()
    except Exception:
        return None
    if isinstance(ca, list | tuple):
        ca = ca[0] if ca else None
    if not ca or "flops" not in ca:
        return None
    return float(ca["flops"])


def _temp_bytes(compiled: Any) -> int | None:
    try:
        mem = compiled.memory_analysis()
    except Exception:
        return None
    return None if mem is None else int(getattr(mem, "temp_size_in_bytes", 0) or 0)


def _max_rel_err(got: Any, want: Any) -> float:
    """max over leaves of max |got − want| / max |want| (float64 on the host)."""
    errs = [
        float(np.max(np.abs(np.asarray(g, np.float64) - np.asarray(w, np.float64))))
        / max(float(np.max(np.abs(np.asarray(w, np.float64)))), 1e-300)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
    ]
    return max(errs)


def time_interleaved(
    fns: dict[str, Callable[[], Any]], *, reps: int, warmup: int = 2, budget_s: float = 2.0
) -> dict[str, list[float]]:
    """Seconds per call of each thunk, run round-robin with a rotating order.

    Each call is ended by `jax.block_until_ready`. After `warmup` rounds the number of
    rounds is `reps`, cut down so the total stays near `budget_s` (at least 3 rounds).
    """
    names = list(fns)
    first = {}
    for _ in range(max(warmup, 1)):
        for name in names:
            t0 = time.perf_counter()
            jax.block_until_ready(fns[name]())
            first[name] = time.perf_counter() - t0
    per_round = sum(first.values())
    rounds = max(3, min(reps, int(budget_s / max(per_round, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            jax.block_until_ready(fns[name]())
            times[name].append(time.perf_counter() - t0)
    return times


def matmul_ceiling(policy: str, n: int, *, reps: int = 20, budget_s: float = 2.0) -> dict:
    """TFLOP/s of one n×n by n×n product at the policy's dtype and precision.

    For `bf16` the operands are bfloat16 already and the product accumulates in float32
    (`preferred_element_type`), as in :func:`manualgrad.precision.matmul`.
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
        times = time_interleaved({"mm": lambda: compiled(a, b)}, reps=reps, budget_s=budget_s)
    t = statistics.median(times["mm"])
    return {
        "kind": "ceiling",
        "policy": policy,
        "n": n,
        "ms": t * 1e3,
        "tflops": 2 * n**3 / t / 1e12,
        "reps": len(times["mm"]),
    }


def _variant_fns(activations: tuple[str, ...], precision: str) -> dict[str, Callable]:
    kw = {"activations": activations, "loss": "bce", "precision": precision}

    def manual(p, X, Y):
        return value_and_grad(p, X, Y, **kw)

    def autodiff(p, X, Y):
        return jax.value_and_grad(lambda p_: cost(p_, X, Y, **kw))(p)

    bridge_cost = network(activations, "bce", precision=precision).custom_vjp_cost

    def bridge(p, X, Y):
        return jax.value_and_grad(bridge_cost)(p, X, Y)

    return {"manual": manual, "autodiff": autodiff, "bridge": bridge}


def _torch_ms(case: Case, policy: str, params: dict, X: Array, Y: Array, reps: int) -> float | None:
    """Median ms of PyTorch autograd on the same network and data, or None without torch."""
    try:
        import torch
    except Exception:
        return None
    try:
        cuda = torch.cuda.is_available() and jax.devices()[0].platform == "gpu"
        dev = torch.device("cuda" if cuda else "cpu")
        tdtype = torch.float64 if policy == "f64" else torch.float32
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = policy == "f32-default"
        ps = [
            torch.tensor(np.asarray(params[k]), dtype=tdtype, device=dev).requires_grad_()
            for k in params
        ]
        tX = torch.tensor(np.asarray(X), dtype=tdtype, device=dev)
        tY = torch.tensor(np.asarray(Y), dtype=tdtype, device=dev)
        n_layers = len(case.layer_dims) - 1

        def step():
            with torch.autocast(dev.type, torch.bfloat16, enabled=policy == "bf16"):
                A = tX
                for l in range(n_layers):
                    Z = ps[2 * l] @ A + ps[2 * l + 1]
                    A = torch.relu(Z) if l < n_layers - 1 else Z
                C = torch.nn.functional.binary_cross_entropy_with_logits(A.float(), tY.float())
            grads = torch.autograd.grad(C, ps)
            if cuda:
                torch.cuda.synchronize()
            return grads

        for _ in range(2):
            step()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3
    except Exception:
        return None


def problem(layer_dims: Sequence[int], m: int, dtype: Any) -> tuple[dict, Array, Array]:
    """He-initialised params with small random biases, X ~ N(0, 1), Y ~ Bernoulli(0.5).

    The biases are not zero so that no pre-activation is exactly 0, where relu's
    derivative is a convention (0 here, as in the course; 0.5 in `jax.grad` of
    `jnp.maximum`): a unit dead on every example of a layer would otherwise give
    Z = 0 in the next one and a spurious disagreement.
    """
    kp, kb, kx, ky = jax.random.split(jax.random.key(0), 4)
    params = init_params(layer_dims, kp, dtype=dtype)
    for l, k in enumerate(jax.random.split(kb, len(layer_dims) - 1), start=1):
        b = params[f"b{l}"]
        params[f"b{l}"] = 0.1 * jax.random.normal(k, b.shape, dtype)
    X = jax.random.normal(kx, (layer_dims[0], m), dtype)
    Y = jax.random.bernoulli(ky, 0.5, (layer_dims[-1], m)).astype(dtype)
    return params, X, Y


def bench_case(
    case: Case,
    policy: str,
    *,
    reps: int = 50,
    budget_s: float = 3.0,
    ceiling_tflops: float | None = None,
    torch: bool = False,
) -> dict:
    """Compile, check and time the three variants at one grid point; one JSON-able row."""
    dtype_name, precision = POLICIES[policy]
    layer_dims, m = tuple(case.layer_dims), case.m
    n_layers = len(layer_dims) - 1
    activations = ("relu",) * (n_layers - 1) + ("sigmoid",)
    row: dict[str, Any] = {
        "kind": "grid",
        "policy": policy,
        "dtype": dtype_name,
        "precision": precision,
        "layer_dims": list(layer_dims),
        "m": m,
        "flops_model": model_flops(layer_dims, m),
    }
    with policy_context(policy) as dtype:
        params, X, Y = problem(layer_dims, m, dtype)
        compiled = {}
        for name, fn in _variant_fns(activations, precision).items():
            t0 = time.perf_counter()
            compiled[name] = jax.jit(fn).lower(params, X, Y).compile()
            row[f"{name}_compile_s"] = time.perf_counter() - t0
            row[f"{name}_temp_bytes"] = _temp_bytes(compiled[name])
            row[f"{name}_flops_xla"] = _xla_flops(compiled[name])
        outs = {name: c(params, X, Y) for name, c in compiled.items()}
        ref_C, ref_grads = outs["autodiff"]
        agree = True
        for name in ("manual", "bridge"):
            C, grads = outs[name]
            err = max(_max_rel_err(grads, ref_grads), _max_rel_err(C, ref_C))
            row[f"{name}_max_rel_err"] = err
            agree &= bool(err <= TOLERANCES[policy])
        row["agree"] = agree
        del outs
        if not agree:
            row["error"] = f"gradients disagree beyond {TOLERANCES[policy]:g}: not timed"
            return row
        times = time_interleaved(
            {name: (lambda c=c: c(params, X, Y)) for name, c in compiled.items()},
            reps=reps,
            budget_s=budget_s,
        )
        row["reps"] = len(times["manual"])
        for name in VARIANTS:
            t = statistics.median(times[name])
            row[f"{name}_ms"] = t * 1e3
            row[f"{name}_min_ms"] = min(times[name]) * 1e3
            row[f"{name}_tflops"] = row["flops_model"] / t / 1e12
            if ceiling_tflops:
                row[f"{name}_frac_ceiling"] = row[f"{name}_tflops"] / ceiling_tflops
        row["ratio"] = row["manual_ms"] / row["autodiff_ms"]
        row["bridge_ratio"] = row["bridge_ms"] / row["autodiff_ms"]
        row["ratio_min"] = row["manual_min_ms"] / row["autodiff_min_ms"]
        row["ratio_paired"] = statistics.median(
            a / b for a, b in zip(times["manual"], times["autodiff"], strict=True)
        )
        torch_ms = (
            _torch_ms(case, policy, params, X, Y, reps=min(row["reps"], 20)) if torch else None
        )
        if torch_ms is not None:
            row["torch_ms"] = torch_ms
    return row


def run(
    cases: Sequence[Case],
    policies: Sequence[str],
    *,
    reps: int = 50,
    budget_s: float = 3.0,
    ceiling_n: int | None = None,
    emit: Callable[[dict], None] | None = None,
    torch: bool = False,
) -> list[dict]:
    """Ceilings, then every (policy, case); a failing case becomes a row with `error`.

    `emit` is called with each row as soon as it exists (e.g. to write a JSON line);
    `torch=True` adds PyTorch's autograd step time where `import torch` works.
    """
    for policy in policies:
        if policy not in POLICIES:
            raise ConfigError(f"unknown policy {policy!r}; expected one of {list(POLICIES)}")
    device = device_name()
    if ceiling_n is None:
        ceiling_n = 1024 if jax.devices()[0].platform == "cpu" else 8192
    rows: list[dict] = []

    def add(row: dict) -> None:
        row = {"device": device, "jax": jax.__version__, **row}
        rows.append(row)
        if emit is not None:
            emit(row)

    ceilings: dict[str, float] = {}
    for policy in policies:
        try:
            c = matmul_ceiling(policy, ceiling_n, budget_s=budget_s)
            ceilings[policy] = c["tflops"]
            add(c)
        except Exception as err:  # one failing case must not stop the others
            add({"kind": "ceiling", "policy": policy, "n": ceiling_n, "error": repr(err)})
    for policy in policies:
        for case in cases:
            try:
                add(
                    bench_case(
                        case,
                        policy,
                        reps=reps,
                        budget_s=budget_s,
                        ceiling_tflops=ceilings.get(policy),
                        torch=torch,
                    )
                )
            except Exception as err:
                add(
                    {
                        "kind": "grid",
                        "policy": policy,
                        "layer_dims": list(case.layer_dims),
                        "m": case.m,
                        "error": repr(err)[:500],
                    }
                )
    return rows


def _fmt(x: Any, spec: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return format(x, spec)


def table(rows: Sequence[dict]):
    """A `rich.table.Table` of the grid rows (ceilings in the caption)."""
    from rich.table import Table

    grid = [r for r in rows if r.get("kind") == "grid"]
    ceilings = [r for r in rows if r.get("kind") == "ceiling"]
    caption = "matmul ceiling: " + ", ".join(
        f"{c['policy']} {_fmt(c.get('tflops'), '.3g')} TFLOP/s (n={c['n']})" for c in ceilings
    )
    device = rows[0]["device"] if rows else ""
    t = Table(title=f"gradient step, manual vs jax.grad — {device}", caption=caption)
    has_torch = any("torch_ms" in r for r in grid)
    for col in (
        "policy",
        "layer_dims",
        "m",
        "manual ms",
        "autodiff ms",
        "bridge ms",
        "manual/autodiff",
        "paired m/a",
        "bridge/autodiff",
        "TFLOP/s m/a",
        "% ceiling m/a",
        "temp MiB m/a",
        "compile s m/a",
        "max rel err",
    ):
        t.add_column(col, justify="left" if col in ("policy", "layer_dims") else "right")
    if has_torch:
        t.add_column("torch ms", justify="right")
    for r in grid:
        dims = ",".join(map(str, r["layer_dims"]))
        if "error" in r:
            t.add_row(r["policy"], dims, str(r["m"]), f"[red]{r['error'][:60]}[/red]")
            continue

        def pair(key, spec, scale=1.0, r=r):
            a, b = r.get(f"manual_{key}"), r.get(f"autodiff_{key}")
            a = None if a is None else a * scale
            b = None if b is None else b * scale
            return f"{_fmt(a, spec)} / {_fmt(b, spec)}"

        ratio = r["ratio"]
        style = "green" if ratio <= 1.0 else "red"
        cells = [
            r["policy"],
            dims,
            str(r["m"]),
            _fmt(r["manual_ms"], ".3f"),
            _fmt(r["autodiff_ms"], ".3f"),
            _fmt(r["bridge_ms"], ".3f"),
            f"[{style}]{ratio:.3f}[/{style}]",
            _fmt(r.get("ratio_paired"), ".3f"),
            _fmt(r["bridge_ratio"], ".3f"),
            pair("tflops", ".3g"),
            pair("frac_ceiling", ".1f", 100.0),
            pair("temp_bytes", ".2f", 1 / 2**20),
            pair("compile_s", ".2f"),
            _fmt(max(r["manual_max_rel_err"], r["bridge_max_rel_err"]), ".1e"),
        ]
        if has_torch:
            cells.append(_fmt(r.get("torch_ms"), ".3f"))
        t.add_row(*cells)
    return t
