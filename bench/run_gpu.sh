#!/usr/bin/env bash
# The GPU benchmarks on one card (H100/H200) within a total budget of 8 minutes
# (BUDGET_S=480; the device allows 10 minutes per command):
#   1. `manualgrad bench` on the GPU grid, manual vs (a) jax.grad of an idiomatic cost
#      (with (b) equinox and (c) torch where installed), policies fp32-highest, tf32-default,
#      bf16;
#   2. bench/per_example.py --gpu: the clipped step against the plain step;
#   3. bench/privacy.py: the private DP-SGD step against the plain step (no Opacus);
#   4. bench/random_normals.py: normals per second of each jax.random implementation,
#      P = 1e5 … 1e8;
#   5. the optimised HLO of the course shape; then a summary table.
# Each step runs in its own process under `timeout`, with its own limit cut to what is
# left of the budget (a step that would get under 15 s is skipped), so one failure or
# overrun cannot stop the others or the whole run from ending in time. Writes JSON lines,
# run.log, steps.txt (each step's exit status and seconds) and summary.txt to $OUT
# (./out if unset). Only public entry points: `python -m manualgrad bench`,
# `manualgrad.benchmark`, the scripts in bench/.
#
#   bash bench/run_gpu.sh              # on the GPU machine: ≈ 8 minutes
#   bash bench/run_gpu.sh --cpu-smoke  # tiny sizes on any machine: checks the script
#
# MANUALGRAD_BENCH_TINY=1 is the same as --cpu-smoke.
set -u
cd "$(dirname "$0")/.."
SMOKE="${MANUALGRAD_BENCH_TINY:-0}"
for arg in "$@"; do
    case "$arg" in
        --cpu-smoke) SMOKE=1 ;;
        *) echo "unknown argument: $arg (expected --cpu-smoke)" >&2; exit 2 ;;
    esac
done
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
OUT="${OUT:-./out}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
LOG="$OUT/run.log"
STEPS="$OUT/steps.txt"
: > "$LOG"
: > "$STEPS"
BUDGET_S="${BUDGET_S:-480}"
RESERVE_S=20  # kept for the summary at the end
START=$SECONDS

SMALL=(--grid 12288,20,7,5,1@209 --grid 784,256,128,1@4096 --grid 1024,1024,1024,1@8192
       --grid 1024,4096,4096,4096,1@8192)
BIG=(--grid 1024,4096,4096,4096,1@65536)
EXTRA=(--rounds 11 --slot 0.03 --ceiling-n 8192 --equinox --torch)
PER_EXAMPLE=(--gpu --rounds 9 --vmap-rounds 2)
PRIVACY=(--no-opacus --rounds 11 --reps 5)
NORMALS=(--sizes 1e5,1e6,1e7,1e8 --rounds 7)
#        grid f32-highest, f32-default, bf16, per-example, privacy, normals, HLO
LIMITS=(110 80 60 70 60 45 30)
if [ "$SMOKE" = "1" ]; then
    SMALL=(--grid 8,4,1@16); BIG=(--grid 12,6,3,1@32)
    EXTRA=(--rounds 3 --slot 0.005 --ceiling-n 64 --equinox)
    PER_EXAMPLE=(--quick --rounds 2 --vmap-rounds 1)
    PRIVACY=(--tiny --no-opacus --rounds 2 --reps 1)
    NORMALS=(--sizes 1e3,1e4 --rounds 2 --slot 0.005)
    LIMITS=(150 150 150 150 150 90 90)  # generous: a shared CPU may be loaded
    BUDGET_S="${BUDGET_S_SMOKE:-1000}"
fi

step() {  # step NAME LIMIT COMMAND...: run COMMAND under min(LIMIT, what is left)
    local name=$1 limit=$2; shift 2
    local left=$(( BUDGET_S - RESERVE_S - (SECONDS - START) ))
    [ "$limit" -lt "$left" ] || limit=$left
    if [ "$limit" -lt 15 ]; then
        echo "== $name: skipped, ${left}s of the budget left" | tee -a "$LOG" "$STEPS"
        return
    fi
    echo "== $name (limit ${limit}s)" | tee -a "$LOG"
    local t0=$SECONDS
    timeout -k 5 "$limit" "$@" >> "$LOG" 2>&1
    local rc=$?
    local msg="$name: exit $rc in $(( SECONDS - t0 ))s"
    [ $rc -eq 124 ] && msg="$msg (timed out at ${limit}s)"
    echo "$msg" | tee -a "$STEPS"
    [ $rc -eq 0 ] || echo "   see $LOG" | tee -a "$STEPS"
}

echo "== device" | tee -a "$LOG"
timeout -k 5 60 "$PY" -c "import jax, sys; print('python', sys.version.split()[0], 'jax', jax.__version__, jax.devices())" 2>&1 | tee -a "$LOG"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee -a "$LOG" || true

bench() {  # bench NAME LIMIT ARGS...: one grid, JSON lines to $OUT/bench_NAME.jsonl
    local name=$1 limit=$2; shift 2
    step "bench $name" "$limit" "$PY" -m manualgrad bench "$@" "${EXTRA[@]}" \
        --json "$OUT/bench_$name.jsonl"
}
bench f32-highest "${LIMITS[0]}" --precision f32-highest "${SMALL[@]}" "${BIG[@]}"
bench f32-default "${LIMITS[1]}" --precision f32-default "${SMALL[@]}" "${BIG[@]}"
bench bf16 "${LIMITS[2]}" --precision bf16 "${SMALL[@]}" "${BIG[@]}"
step "per_example.py" "${LIMITS[3]}" "$PY" bench/per_example.py "${PER_EXAMPLE[@]}" \
    --json "$OUT/per_example.jsonl"
step "privacy.py" "${LIMITS[4]}" "$PY" bench/privacy.py "${PRIVACY[@]}" \
    --json "$OUT/privacy.jsonl"
step "random_normals.py" "${LIMITS[5]}" "$PY" bench/random_normals.py "${NORMALS[@]}" \
    --json "$OUT/random_normals.jsonl"
step "HLO of the course shape" "${LIMITS[6]}" "$PY" - "$OUT/hlo_course.txt" <<'PYEOF'
import sys, jax
from manualgrad import benchmark as B
dims, m = (12288, 20, 7, 5, 1), 209
params, X, Y = B.problem(dims, m, jax.numpy.float32)
fns = B.step_functions(("relu",) * 3 + ("sigmoid",), "highest", diagnostics=True)
with open(sys.argv[1], "w") as f:
    for name, fn in fns.items():
        f.write(f"==== {name}\n{B.aot_compile(fn, params, X, Y).as_text()}\n")
PYEOF

echo "== summary ($(( SECONDS - START ))s so far)"
timeout -k 5 "$RESERVE_S" "$PY" - "$OUT" <<'PYEOF' 2>&1 | tee "$OUT/summary.txt"
import glob, json, sys
from rich.console import Console
from manualgrad import benchmark
out = sys.argv[1]
rows = []
for path in sorted(glob.glob(f"{out}/bench_*.jsonl")):
    with open(path) as f:
        rows += [json.loads(line) for line in f if line.strip()]
if rows:
    Console(width=250).print(benchmark.table(rows, wide=True))
    for r in rows:
        if "error" in r:
            print("ERROR", r.get("policy"), r.get("layer_dims"), r.get("m"), r["error"][:200])
    print(benchmark.summary(rows))
else:
    print("no grid rows were written")
for name in ("privacy", "random_normals"):
    try:
        with open(f"{out}/{name}.jsonl") as f:
            lines = [json.loads(line) for line in f if line.strip()]
    except OSError:
        print(f"{name}: no results")
        continue
    for r in lines:
        if name == "privacy":
            ratios = ", ".join(f"{k} {m:.2f} [{lo:.2f}, {hi:.2f}]"
                               for k, (m, lo, hi) in r["ratios"].items())
            print(f"private step, {r['case']}: K = {r['K']}, {ratios}")
        elif "P" in r:
            ratio = r["ratio_to_threefry"]
            print(f"normals P = {r['P']:.0e} {r['impl']}: {r['per_second']:.3g}/s, "
                  f"/ threefry {ratio['median']:.2f} [{ratio['low']:.2f}, {ratio['high']:.2f}]")
PYEOF
echo "== steps" && cat "$STEPS"
echo "total $(( SECONDS - START ))s of a ${BUDGET_S}s budget"
