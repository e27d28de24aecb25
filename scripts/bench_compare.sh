#!/usr/bin/env bash
# Side-by-side training speed of tapegrad, PyTorch and llm.c on the presets.
#   scripts/bench_compare.sh [BUILD_DIR] (env: ROUNDS=3 PRESETS="tiny small medium long" THREADS="1 2")
#   TABLE_ONLY=RAW scripts/bench_compare.sh     (the tables again from an earlier run's raw lines)
# Each round runs, for every preset and thread count, tapegrad's bench_train, then
# scripts/reference_torch.py bench (Debian's /usr/bin/python3 with python3-torch), then
# ../shared/anchors/llmc/run.sh where it exists: a fresh process per run, the three
# alternating so a noisy machine slows all alike. Per implementation, preset and thread
# count it keeps the median tokens/s over the rounds; each implementation is then taken
# at its best thread count. Prints the machine, then one Markdown table of tokens/s and
# ratios (tapegrad / anchor). Raw JSON lines go to $OUT (default: a temporary file).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
rounds=${ROUNDS:-3}
presets=${PRESETS:-tiny small medium long}
threads=${THREADS:-1 2}
llmc=$root/../shared/anchors/llmc/run.sh
out=${OUT:-$(mktemp)}
if [ -n "${TABLE_ONLY:-}" ]; then
  out=$TABLE_ONLY rounds=
else
[ -x "$build/bench/bench_train" ] || { echo "bench_compare.sh: no $build/bench/bench_train (build target bench_train)" >&2; exit 2; }
torch_ok=0; /usr/bin/python3 -c 'import torch' 2>/dev/null && torch_ok=1

steps_for() { case $1 in medium|long) echo 5;; *) echo 10;; esac; }
: > "$out"
for round in $(seq "$rounds"); do
  for preset in $presets; do
    for t in $threads; do
      n=$(steps_for "$preset")
      "$build/bench/bench_train" --presets "$preset" --threads "$t" --steps "$n" --warmup 2 |
        sed "s/^{/{\"impl\": \"tapegrad\", \"round\": $round, /" >> "$out"
      if [ $torch_ok = 1 ]; then
        /usr/bin/python3 "$root/scripts/reference_torch.py" bench --train-lm "$build/apps/train_lm" --presets "$preset" \
          --threads "$t" --steps "$n" --warmup 2 |
          sed "s/^{/{\"impl\": \"pytorch\", \"round\": $round, /" >> "$out"
      fi
      if [ -x "$llmc" ]; then
        "$llmc" "$preset" "$t" | sed "s/^{/{\"impl\": \"llm.c\", \"round\": $round, \"preset\": \"$preset\", \"threads\": $t, /" >> "$out"
      fi
    done
  done
done

fi

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
  "$(grep -o -w -E 'avx512f|avx2|fma' /proc/cpuinfo | sort -u | tr '\n' ' '); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "rounds: ${rounds:-see $out} (median per cell); raw runs: $out"
/usr/bin/python3 - "$out" <<'EOF'
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    d = json.loads(line)
    impl = "llm.c" if d["impl"].startswith("llm.c") else d["impl"]  # run.sh's own line names it llm.c-cpu
    runs[(impl, d["preset"], int(d["threads"]))].append(float(d["tokens_per_s"]))
impls = [i for i in ("tapegrad", "pytorch", "llm.c") if any(k[0] == i for k in runs)]
presets = list(dict.fromkeys(k[1] for k in runs))
threads = sorted({k[2] for k in runs})
med = {k: statistics.median(v) for k, v in runs.items()}
def cell(impl, preset):
    vals = [med.get((impl, preset, t)) for t in threads]
    return " / ".join(f"{v:,.0f}" if v else "-" for v in vals), max((v for v in vals if v), default=None)
head = "| preset | threads | " + " | ".join(impls) + " | " + " | ".join(f"tapegrad / {i}" for i in impls[1:]) + " |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
for p in presets:
    cells = {i: cell(i, p) for i in impls}
    ratios = []
    for i in impls[1:]:
        a, b = cells["tapegrad"][1], cells[i][1]
        ratios.append(f"{a / b:.2f}x" if a and b else "-")
    print(f"| {p} | {' / '.join(map(str, threads))} | " + " | ".join(cells[i][0] for i in impls) + " | " + " | ".join(ratios) + " |")
print()
print("Peak RSS, MiB (median over the rounds, at each implementation's best thread count):")
print()
print("| preset | " + " | ".join(impls) + " |")
print("|" + "---|" * (len(impls) + 1))
rss = defaultdict(list)
frac = defaultdict(list)
for line in open(sys.argv[1]):
    if line.strip().startswith("{"):
        d = json.loads(line)
        impl = "llm.c" if d["impl"].startswith("llm.c") else d["impl"]
        rss[(impl, d["preset"], int(d["threads"]))].append(float(d["peak_rss_mib"]))
        if "fraction_of_peak" in d:
            frac[(d["preset"], int(d["threads"]))].append(float(d["fraction_of_peak"]))
def best_threads(impl, preset):
    return max((t for t in threads if (impl, preset, t) in med), key=lambda t: med[(impl, preset, t)], default=None)
for p in presets:
    cells = []
    for i in impls:
        t = best_threads(i, p)
        cells.append(f"{statistics.median(rss[(i, p, t)]):,.0f}" if t else "-")
    print(f"| {p} | " + " | ".join(cells) + " |")
if frac:
    print()
    print("tapegrad, fraction of the bench's measured sgemm peak at that thread count (median): " + ", ".join(
        f"{p} " + " / ".join(f"{statistics.median(frac[(p, t)]):.2f}" for t in threads if (p, t) in frac)
        for p in presets))
if len(threads) > 1:
    print()
    print("tapegrad scaling, %d threads / 1 thread: " % threads[-1] + ", ".join(
        f"{p} {med[('tapegrad', p, threads[-1])] / med[('tapegrad', p, threads[0])]:.2f}x" for p in presets
        if ('tapegrad', p, threads[-1]) in med and ('tapegrad', p, threads[0]) in med))
EOF
