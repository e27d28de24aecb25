#!/usr/bin/env bash
# CPU time per training step at 1 thread, for A/B choices on a loaded machine (CPU time barely
# moves with load, wall time does): bench_train under `perf stat -e task-clock` at 1 and N+1
# timed steps, the difference / N, for the GEMM backend x kernel ISA combinations, alternating,
# ROUNDS times, medians. docs/cpu_dispatch.md has a table it made.
#   scripts/bench_cpu_time.sh PRESET [STEPS=10] [ROUNDS=3] [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
preset=${1:?preset} steps=${2:-10} rounds=${3:-3} build=${4:-$root/build}
command -v perf >/dev/null || { echo "bench_cpu_time.sh: needs perf" >&2; exit 2; }
out=$(mktemp)
configs=("TAPEGRAD_GEMM=openblas TAPEGRAD_ISA=sse2" "TAPEGRAD_GEMM=openblas" "TAPEGRAD_ISA=sse2" "TAPEGRAD_DEFAULTS=1")
for _ in $(seq "$rounds"); do
  for cfg in "${configs[@]}"; do
    for n in 1 $((steps + 1)); do
      t=$(env $cfg perf stat -x, -e task-clock "$build/bench/bench_train" --presets "$preset" --threads 1 --steps "$n" \
        --warmup 1 2>&1 >/dev/null | grep task-clock | cut -d, -f1)
      echo "$cfg|$n|$t" >> "$out"
    done
  done
done
python3 - "$out" "$preset" <<'PY'
import statistics, sys
from collections import defaultdict
runs = defaultdict(lambda: defaultdict(list))
for line in open(sys.argv[1]):
    cfg, n, ms = line.strip().split("|")
    runs[cfg][int(n)].append(float(ms))
for cfg, by_n in runs.items():
    a, b = sorted(by_n)
    per_step = (statistics.median(by_n[b]) - statistics.median(by_n[a])) / (b - a)
    print(f"{sys.argv[2]} | {cfg.replace('TAPEGRAD_DEFAULTS=1', 'as installed')} | {per_step:.1f} ms CPU per step")
PY
rm -f "$out"
