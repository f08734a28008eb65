r"""The one benchmark harness: `manualgrad bench` and every script in bench/ use it.

What it guarantees, for every figure it produces:

1. **A baseline a user would pick.** (a) `jax.value_and_grad` of an idiomatic cost
   (:func:`idiomatic_cost`: `jax.nn` activations, an `optax.losses` loss; it never
   calls manualgrad); (b) an equinox MLP (:func:`equinox_step`) and (c) PyTorch
   autograd (:func:`torch_step`) where installed. manual / (a) is the headline.
2. **Compiled ahead of time, warmed up, checked.** :func:`aot_compile`; every step's
   result is compared with (a)'s (:func:`max_rel_err`) before anything is timed.
3. **Paired, interleaved rounds.** :func:`paired_rounds` alternates the order every
   round; :func:`ratio_interval` gives the median of the per-round ratios with a
   bootstrap 95 % interval; an interval that contains 1.00 is a tie (:class:`Ratio`).
4. **Recorded context.** :func:`machine` (device, cores, load, versions, date), the
   rounds and calls per round, and the matmul ceiling of the same run.

>>> r = ratio_interval([1.0, 0.98, 0.97, 1.01, 0.99], [1.0, 1.0, 1.0, 1.0, 1.0])
>>> r.median, r.verdict
(0.99, 'tie')
"""

from manualgrad.benchmark._baselines import (
    JAX_ACTIVATIONS,
    Step,
    equinox_step,
    idiomatic_cost,
    idiomatic_value_and_grad,
    jax_step,
    torch_step,
)
from manualgrad.benchmark._grid import (
    COURSE,
    CPU_GRID,
    GPU_GRID,
    LABELS,
    POLICIES,
    QUICK_GRID,
    STEPS,
    TOLERANCES,
    Case,
    bench_case,
    compare_steps,
    matmul_ceiling,
    model_flops,
    network_label,
    parse_case,
    policy_context,
    problem,
    results_table,
    run,
    step_functions,
    summary,
    table,
)
from manualgrad.benchmark._hlo import AllReduceStats, all_reduce_stats
from manualgrad.benchmark._measure import (
    Pairing,
    Ratio,
    Timings,
    aot_compile,
    append_json_lines,
    check_agreement,
    compare,
    device_memory_bytes,
    device_name,
    machine,
    max_rel_err,
    paired_ratio,
    paired_rounds,
    ratio_interval,
    temp_bytes,
    xla_flops,
)

__all__ = [
    "COURSE",
    "CPU_GRID",
    "GPU_GRID",
    "JAX_ACTIVATIONS",
    "LABELS",
    "POLICIES",
    "QUICK_GRID",
    "STEPS",
    "TOLERANCES",
    "AllReduceStats",
    "Case",
    "Pairing",
    "Ratio",
    "Step",
    "Timings",
    "all_reduce_stats",
    "aot_compile",
    "append_json_lines",
    "bench_case",
    "check_agreement",
    "compare",
    "compare_steps",
    "device_memory_bytes",
    "device_name",
    "equinox_step",
    "idiomatic_cost",
    "idiomatic_value_and_grad",
    "jax_step",
    "machine",
    "matmul_ceiling",
    "max_rel_err",
    "model_flops",
    "network_label",
    "paired_ratio",
    "paired_rounds",
    "parse_case",
    "policy_context",
    "problem",
    "ratio_interval",
    "results_table",
    "run",
    "step_functions",
    "summary",
    "table",
    "temp_bytes",
    "torch_step",
    "xla_flops",
]
