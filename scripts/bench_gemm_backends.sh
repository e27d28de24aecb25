#!/usr/bin/env bash
# The float GEMM backends side by side on the model's GEMM shapes (bench/bench_gemm: one
# training step's GEMMs per preset, one thread, the thread's CPU time): OpenBLAS as
# installed, OpenBLAS forced to its SkylakeX and Cooperlake kernels (OPENBLAS_CORETYPE,
# for reference only: tapegrad never sets it), oneDNN's matmul (the default) and oneDNN held
# to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2: what an AVX2-only CPU gets). The five alternate, ROUNDS times; each cell is the median GFLOP/s. Prints a Markdown table
# (docs/gemm_backend.md holds one).
#   scripts/bench_gemm_backends.sh [BUILD_DIR]   (env: ROUNDS=5 PRESETS=small,medium,long REPS=15)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
bench=$build/bench/bench_gemm
[ -x "$bench" ] || { echo "bench_gemm_backends.sh: no $bench (build target bench_gemm)" >&2; exit 2; }
rounds=${ROUNDS:-5} presets=${PRESETS:-small,medium,long} reps=${REPS:-15}
out=$(mktemp)
for round in $(seq "$rounds"); do
  for config in "openblas" "openblas SkylakeX" "openblas Cooperlake" "onednn" "onednn AVX2"; do
    set -- $config
    if [ "$1" = openblas ]; then
      env TAPEGRAD_GEMM=openblas ${2:+OPENBLAS_CORETYPE=$2} "$bench" --presets "$presets" --reps "$reps"
    else
      env ${2:+ONEDNN_MAX_CPU_ISA=$2} "$bench" --presets "$presets" --reps "$reps"
    fi | sed "s/^{/{\"config\": \"$config\", /" >> "$out"
  done
done
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); rounds: $rounds, median GFLOP/s per cell, one thread, per-thread CPU time"
python3 - "$out" <<'PY'
import json, statistics, sys
from collections import defaultdict
cells, rows, backend = defaultdict(list), {}, {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    key = (d["preset"], d["gemm"])
    rows[key] = d["shape"]
    cells[(key, d["config"])].append(d["gflops"])
    backend[d["config"]] = d["backend"].split(",")[0].removeprefix("float: ")
configs = ["openblas", "openblas SkylakeX", "openblas Cooperlake", "onednn", "onednn AVX2"]
names = {"openblas": "OpenBLAS as installed", "openblas SkylakeX": "OpenBLAS CORETYPE=SkylakeX",
         "openblas Cooperlake": "OpenBLAS CORETYPE=Cooperlake", "onednn": "oneDNN matmul",
         "onednn AVX2": "oneDNN, ONEDNN_MAX_CPU_ISA=AVX2"}
print("| preset | GEMM | M x N x K | " + " | ".join(f"{names[c]}: {backend.get(c, '?')}" for c in configs) + " |")
print("|---|---|---|" + "---:|" * len(configs))
for (preset, gemm), shape in rows.items():
    vals = [statistics.median(cells[((preset, gemm), c)]) for c in configs]
    print(f"| {preset} | {gemm} | {shape} | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
PY
rm -f "$out"
