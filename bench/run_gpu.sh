#!/usr/bin/env bash
# The GPU benchmarks on one card (H100/H200), 11 minutes at most (the sum of the timeouts): `manualgrad bench` over the
# GPU grid for the fp32-highest, tf32-default and bf16 policies (manual vs (a) jax.grad of an
# idiomatic cost, with (b) equinox and (c) torch where installed),
# then bench/per_example.py --gpu, then the optimised HLO of the course shape. Each part runs
# in its own process under `timeout`, so one failure cannot stop the others. Writes JSON
# lines, a log and a summary to $OUT (./out if unset); prints the summary table last.
# Only public entry points: `python -m manualgrad bench`, `manualgrad.benchmark`.
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
EXTRA=(--rounds 15 --slot 0.03 --ceiling-n 8192 --equinox --torch)
T_SMALL=150; T_BIG=100; T_OTHER=120
if [ "${MANUALGRAD_BENCH_TINY:-0}" = "1" ]; then
    SMALL=(--grid 8,4,1@16); BIG=(--grid 12,6,3,1@32)
    EXTRA=(--rounds 3 --slot 0.005 --ceiling-n 64 --equinox --torch --diagnostics)
fi

echo "== device"
"$PY" -c "import jax, sys; print('python', sys.version.split()[0], 'jax', jax.__version__, jax.devices())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

bench() {  # bench NAME SECONDS ARGS...: one process, JSON lines to $OUT/bench_NAME.jsonl
    local name=$1 seconds=$2; shift 2
    echo "== bench $name" | tee -a "$LOG"
    timeout -k 10 "$seconds" "$PY" -m manualgrad bench "$@" "${EXTRA[@]}" \
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
    timeout -k 10 120 "$PY" bench/per_example.py "${PER_EXAMPLE[@]}" --json "$OUT/per_example.jsonl" \
        >> "$LOG" 2>&1 || echo "per_example.py: exit $? (see run.log)" | tee -a "$LOG"
fi

echo "== HLO of the course shape" | tee -a "$LOG"
timeout -k 5 60 "$PY" - "$OUT/hlo_course.txt" >> "$LOG" 2>&1 <<'PYEOF' || echo "HLO dump failed" | tee -a "$LOG"
import sys, jax
from manualgrad import benchmark as B
dims, m = (12288, 20, 7, 5, 1), 209
params, X, Y = B.problem(dims, m, jax.numpy.float32)
fns = B.step_functions(("relu",) * 3 + ("sigmoid",), "highest", diagnostics=True)
with open(sys.argv[1], "w") as f:
    for name, fn in fns.items():
        f.write(f"==== {name}\n{B.aot_compile(fn, params, X, Y).as_text()}\n")
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
Console(width=250).print(benchmark.table(rows, wide=True))
for r in rows:
    if "error" in r:
        print("ERROR", r.get("policy"), r.get("layer_dims"), r.get("m"), r["error"][:200])
print(benchmark.summary(rows))
PYEOF
