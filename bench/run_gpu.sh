#!/usr/bin/env bash
# Issue 5 on one GPU (H100/H200), in well under 5 minutes: the fp32-highest, tf32-default and
# bf16 matmul ceilings and the gradient-step grid (manual vs jax.grad vs custom_vjp bridge),
# each policy in its own process under `timeout` so one failure cannot stop the others; then
# bench/per_example.py if it exists. JSON lines go to $OUT (./out if unset); a summary table
# is printed last. MANUALGRAD_BENCH_TINY=1 runs a seconds-long grid (to test on CPU).
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
OUT="${OUT:-./out}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"

if [ "${MANUALGRAD_BENCH_TINY:-0}" = "1" ]; then
    GRID=(--grid 8,4,1@16 --grid 12,6,3,1@32)
    POLICIES=(f32-highest f32-default bf16)
    EXTRA=(--reps 3 --budget 0.05 --ceiling-n 64)
    STEP_TIMEOUT=120
else
    GRID=(--grid 12288,20,7,5,1@209 --grid 784,256,128,1@4096 --grid 1024,1024,1024,1@8192
          --grid 1024,4096,4096,4096,1@8192 --grid 1024,4096,4096,4096,1@65536)
    POLICIES=(f32-highest f32-default bf16)
    EXTRA=(--reps 100 --budget 3 --ceiling-n 8192)
    STEP_TIMEOUT=150
fi

echo "== device"
"$PY" -c "import jax, sys; print(sys.version.split()[0], 'jax', jax.__version__, jax.devices())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

for policy in "${POLICIES[@]}"; do
    echo "== bench $policy"
    timeout -k 10 "$STEP_TIMEOUT" "$PY" -m manualgrad._cli.bench --precision "$policy" \
        "${GRID[@]}" "${EXTRA[@]}" --json "$OUT/bench_$policy.jsonl" > "$OUT/bench_$policy.log" 2>&1
    rc=$?
    grep -E "^  (f32|bf16|f64)|worst" "$OUT/bench_$policy.log" || true
    [ $rc -eq 0 ] || { echo "bench $policy: exit $rc (last lines of its log:)"; tail -5 "$OUT/bench_$policy.log"; }
done

if [ -f bench/per_example.py ]; then
    echo "== bench/per_example.py"
    timeout -k 10 90 "$PY" bench/per_example.py --gpu --json "$OUT/per_example.json" \
        > "$OUT/per_example.log" 2>&1 || echo "per_example.py: exit $? (see $OUT/per_example.log)"
    tail -15 "$OUT/per_example.log"
fi

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
    print(f"{r['policy']:<12} {','.join(map(str, r['layer_dims'])):>22} m={r['m']:<6} "
          f"ratio {r['ratio']:.3f}  bridge {r['bridge_ratio']:.3f}  "
          f"ceiling manual {100 * r.get('manual_frac_ceiling', float('nan')):.1f}% "
          f"autodiff {100 * r.get('autodiff_frac_ceiling', float('nan')):.1f}%  "
          f"temp MiB {(r['manual_temp_bytes'] or 0) / 2**20:.1f}/{(r['autodiff_temp_bytes'] or 0) / 2**20:.1f}")
if grid:
    print(f"worst manual/autodiff ratio {max(r['ratio'] for r in grid):.3f} over {len(grid)} points; "
          f"errors: {sum('error' in r for r in rows)}")
PYEOF
