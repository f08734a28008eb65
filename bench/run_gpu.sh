#!/usr/bin/env bash
# Issue 5 on one GPU (H100/H200), in under 5 minutes: the fp32-highest, tf32-default and bf16
# matmul ceilings and the gradient-step grid (manual vs jax.grad vs the custom_vjp bridge).
# Each policy runs in its own process under `timeout`, so one failure cannot stop the others;
# then bench/per_example.py if it exists, and the optimised HLO of the course shape. Writes
# JSON lines, a log and a summary to $OUT (./out if unset); prints the summary table last.
# MANUALGRAD_BENCH_TINY=1 runs a seconds-long grid instead (to test the script on CPU).
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
OUT="${OUT:-./out}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
LOG="$OUT/run.log"
: > "$LOG"

SMALL=(--grid 12288,20,7,5,1@209 --grid 784,256,128,1@4096 --grid 1024,1024,1024,1@8192
       --grid 1024,4096,4096,4096,1@8192)
BIG=(--grid 1024,4096,4096,4096,1@65536)
EXTRA=(--reps 100 --budget 1.5 --ceiling-n 8192)
T_SMALL=120; T_BIG=100; T_OTHER=100
if [ "${MANUALGRAD_BENCH_TINY:-0}" = "1" ]; then
    SMALL=(--grid 8,4,1@16); BIG=(--grid 12,6,3,1@32)
    EXTRA=(--reps 3 --budget 0.05 --ceiling-n 64)
fi

echo "== device"
"$PY" -c "import jax, sys; print('python', sys.version.split()[0], 'jax', jax.__version__, jax.devices())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

bench() {  # bench NAME SECONDS ARGS...: one process, JSON lines to $OUT/bench_NAME.jsonl
    local name=$1 seconds=$2; shift 2
    echo "== bench $name" | tee -a "$LOG"
    timeout -k 10 "$seconds" "$PY" -m manualgrad._cli.bench "$@" "${EXTRA[@]}" \
        --json "$OUT/bench_$name.jsonl" >> "$LOG" 2>&1
    local rc=$?
    [ $rc -eq 0 ] || echo "bench $name: exit $rc (124 = timed out; see run.log)" | tee -a "$LOG"
}
bench f32-highest "$T_SMALL" --precision f32-highest "${SMALL[@]}"
bench f32-highest-big "$T_BIG" --precision f32-highest "${BIG[@]}"
bench f32-default "$T_OTHER" --precision f32-default "${SMALL[@]}" "${BIG[@]}"
bench bf16 "$T_OTHER" --precision bf16 "${SMALL[@]}" "${BIG[@]}"

PER_EXAMPLE=(--gpu)
[ "${MANUALGRAD_BENCH_TINY:-0}" = "1" ] && PER_EXAMPLE=(--quick)
if [ -f bench/per_example.py ]; then
    echo "== bench/per_example.py ${PER_EXAMPLE[*]}" | tee -a "$LOG"
    timeout -k 10 90 "$PY" bench/per_example.py "${PER_EXAMPLE[@]}" --json "$OUT/per_example.json" \
        >> "$LOG" 2>&1 || echo "per_example.py: exit $? (see run.log)" | tee -a "$LOG"
fi

echo "== HLO of the course shape" | tee -a "$LOG"
timeout -k 5 60 "$PY" - "$OUT/hlo_course.txt" >> "$LOG" 2>&1 <<'PYEOF' || echo "HLO dump failed" | tee -a "$LOG"
import sys, jax
from manualgrad import benchmark as B
dims, m = (12288, 20, 7, 5, 1), 209
params, X, Y = B.problem(dims, m, jax.numpy.float32)
with open(sys.argv[1], "w") as f:
    for name, fn in B._variant_fns(("relu",) * 3 + ("sigmoid",), "highest").items():
        f.write(f"==== {name}\n{jax.jit(fn).lower(params, X, Y).compile().as_text()}\n")
PYEOF

echo "== summary"
"$PY" - "$OUT" <<'PYEOF' | tee "$OUT/summary.txt"
import glob, json, sys
from rich.console import Console
from manualgrad import benchmark
rows = []
for path in sorted(glob.glob(f"{sys.argv[1]}/bench_*.jsonl")):
    with open(path) as f:
        rows += [json.loads(line) for line in f if line.strip()]
if not rows:
    print("no benchmark rows were written"); sys.exit(1)
Console(width=220).print(benchmark.table(rows))
grid = [r for r in rows if r["kind"] == "grid" and "ratio" in r]
for r in grid:
    dims = ",".join(map(str, r["layer_dims"]))
    print(f"{r['policy']:<12} {dims:>22} m={r['m']:<6} ratio {r['ratio']:.3f}  "
          f"bridge {r['bridge_ratio']:.3f}  ceiling manual "
          f"{100 * r.get('manual_frac_ceiling', float('nan')):.1f}% autodiff "
          f"{100 * r.get('autodiff_frac_ceiling', float('nan')):.1f}%  temp MiB "
          f"{(r['manual_temp_bytes'] or 0) / 2**20:.1f}/{(r['autodiff_temp_bytes'] or 0) / 2**20:.1f}")
errors = [r for r in rows if "error" in r]
for r in errors:
    print("ERROR", r["policy"], r.get("layer_dims"), r.get("m"), r["error"][:200])
if grid:
    print(f"worst manual/autodiff ratio {max(r['ratio'] for r in grid):.3f} over {len(grid)} "
          f"points; rows with errors: {len(errors)}")
PYEOF
