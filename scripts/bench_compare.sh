#!/usr/bin/env bash
# The goal table: training speed of tapegrad (as installed: no environment variables), PyTorch
# and llm.c on the presets, the attention at T = 8192, and the machine; regenerates the part of
# docs/performance.md between its BEGIN/END generated markers.
#
#   scripts/bench_compare.sh [--quick] [--no-doc] [--build DIR] [--python PYTHON]... [--llmc RUN_SH]
#   TABLE_ONLY=RAW scripts/bench_compare.sh [--no-doc]   (the tables again from an earlier run's raw lines)
#
#   --python  a python3 with torch, optionally after VAR=VALUE settings for it
#             ("OPENBLAS_CORETYPE=Cooperlake /usr/bin/python3"); repeat for several PyTorch peers, each a
#             column named by its version (default: python3 on PATH, if it imports torch; else none)
#   --llmc    llm.c's run.sh (PRESET THREADS -> one JSON line); without it, no llm.c column
#   --quick   one round, presets tiny and small, fewer steps, attention at T = 8192 once: proves the
#             script works in about 2 minutes; prints the tables and leaves the doc alone
#   --no-doc  print only
#   env: ROUNDS (3), PRESETS ("tiny small medium long"), THREADS ("1 2"), LLMC_PRESETS ("tiny small"), OUT
#
# Each round runs, for every preset and thread count, tapegrad's bench_train, then
# scripts/reference_torch.py bench, then llm.c: a fresh process per run, the three
# alternating so a noisy machine slows all alike; then bench_attention at T = 8192. Per
# implementation, preset and thread count it keeps the median tokens/s over the rounds; each
# implementation is then taken at its best thread count. The full run (3 rounds, 4 presets,
# 1 and 2 threads) takes about 12 minutes on a 2-core machine. Raw JSON lines go to $OUT
# (default: a temporary file).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build pythons=() llmc="" quick=0 doc=1
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 doc=0;;
    --no-doc) doc=0;;
    --build) build=$2; shift;;
    --python) pythons+=("$2"); shift;;
    --llmc) llmc=$2; shift;;
    -h|--help) sed -n '2,22p' "$0"; exit 0;;
    *) echo "bench_compare.sh: unknown option $1 (see --help)" >&2; exit 2;;
  esac
  shift
done
if [ $quick = 1 ]; then
  rounds=${ROUNDS:-1} presets=${PRESETS:-tiny small} threads=${THREADS:-1 2} attention_runs=1
else
  rounds=${ROUNDS:-3} presets=${PRESETS:-tiny small medium long} threads=${THREADS:-1 2} attention_runs=3
fi
llmc_presets=${LLMC_PRESETS:-tiny small}
out=${OUT:-$(mktemp)}
machine=$out.machine
# "pytorch 2.15.0", "pytorch 1.13.0a0 (OPENBLAS_CORETYPE=Cooperlake)": a peer's column name.
peer_name() {
  local settings=${1% *}
  [ "$settings" = "$1" ] && settings=""
  echo "pytorch $(env $1 -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)${settings:+ ($settings)}"
}
steps_for() { if [ $quick = 1 ]; then echo 3; else case $1 in medium|long) echo 4;; *) echo 10;; esac; fi; }

if [ -n "${TABLE_ONLY:-}" ]; then
  out=$TABLE_ONLY machine=$TABLE_ONLY.machine rounds=
else
  [ -x "$build/bench/bench_train" ] && [ -x "$build/bench/bench_attention" ] ||
    { echo "bench_compare.sh: no $build/bench/bench_train or bench_attention (build both)" >&2; exit 2; }
  [ ${#pythons[@]} -gt 0 ] || pythons=(python3)
  peers=()  # the pythons that import torch; $spec unquoted on purpose: "VAR=VALUE ... python"
  for spec in "${pythons[@]}"; do
    if env $spec -c 'import torch' 2>/dev/null; then peers+=("$spec"); else echo "bench_compare.sh: $spec cannot import torch: no column for it" >&2; fi
  done
  [ -z "$llmc" ] || [ -x "$llmc" ] || { echo "bench_compare.sh: --llmc $llmc is not an executable" >&2; exit 2; }
  {
    echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')" \
      "model $(grep -m1 '^model[[:space:]]' /proc/cpuinfo | cut -d: -f2 | tr -d ' '), $(nproc) cores;" \
      "$(grep -o -w -E 'avx512f|avx512_bf16|avx512_fp16|amx_tile|avx2|fma' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    describe_torch='import re, torch
blas = re.search(r"BLAS_INFO=([^,\n]*)", torch.__config__.show())
cpu = getattr(torch.backends, "cpu", None)
capability = cpu.get_cpu_capability() if cpu else "?"
onednn = "yes" if torch.backends.mkldnn.is_available() else "no"
print(f"CPU capability {capability}, BLAS {blas.group(1) if blas else None}, oneDNN {onednn}")'
    for spec in "${peers[@]}"; do
      echo "$(peer_name "$spec"): $(env $spec -c "$describe_torch" 2>/dev/null)"
    done
    [ ${#peers[@]} -gt 0 ] || echo "PyTorch: not found"
  } > "$machine"
  : > "$out"
  for round in $(seq "$rounds"); do
    for preset in $presets; do
      for t in $threads; do
        n=$(steps_for "$preset")
        "$build/bench/bench_train" --presets "$preset" --threads "$t" --steps "$n" --warmup 2 |
          sed "s/^{/{\"impl\": \"tapegrad\", \"round\": $round, /" >> "$out"
        for spec in "${peers[@]}"; do
          env $spec "$root/scripts/reference_torch.py" bench --train-lm "$build/apps/train_lm" --presets "$preset" \
            --threads "$t" --steps "$n" --warmup 2 2>/dev/null |
            sed "s/^{/{\"impl\": \"$(peer_name "$spec")\", \"round\": $round, /" >> "$out"
        done
        if [ -n "$llmc" ] && [[ " $llmc_presets " == *" $preset "* ]]; then
          "$llmc" "$preset" "$t" | sed "s/^{/{\"impl\": \"llm.c\", \"round\": $round, \"preset\": \"$preset\", \"threads\": $t, /" >> "$out"
        fi
      done
    done
    "$build/bench/bench_attention" --shapes 8k --threads 1 --runs "$attention_runs" --warmup 1 |
      sed "s/^{/{\"impl\": \"attention\", \"round\": $round, /" >> "$out"
  done
fi

table=$(mktemp)
{
  echo "Generated by \`scripts/bench_compare.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC')${rounds:+, $rounds round(s)}, medians."
  echo
  sed 's/^/- /' "$machine"
  echo
  python3 - "$out" <<'PY'
import json, statistics, sys
from collections import defaultdict
runs, rss, frac, info, attention = defaultdict(list), defaultdict(list), defaultdict(list), {}, []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    d = json.loads(line)
    if d["impl"] == "attention":
        attention.append(d)
        continue
    impl = "llm.c" if d["impl"].startswith("llm.c") else d["impl"]  # run.sh's own line names it llm.c-cpu
    key = (impl, d["preset"], int(d["threads"]))
    runs[key].append(float(d["tokens_per_s"]))
    rss[key].append(float(d["peak_rss_mib"]))
    if impl == "tapegrad":
        frac[key[1:]].append(float(d["fraction_of_peak"]))
        info = {k: d[k] for k in ("cpu", "kernel_isa", "gemm", "fma_peak_gflops") if k in d}
order = {"tapegrad": 0, "llm.c": 2}
impls = sorted({k[0] for k in runs}, key=lambda i: (order.get(i, 1), i))
presets = list(dict.fromkeys(k[1] for k in runs))
threads = sorted({k[2] for k in runs})
med = {k: statistics.median(v) for k, v in runs.items()}
if info:
    print(f"- tapegrad: kernels {info.get('kernel_isa')}; GEMM {info.get('gemm')}; "
          f"FMA peak {info.get('fma_peak_gflops', 0) / threads[-1]:.0f} GFLOP/s per core (bench_train's own loop)")
    print()
def best(impl, p):
    return max((t for t in threads if (impl, p, t) in med), key=lambda t: med[(impl, p, t)], default=None)
goals = {("tiny", "llm.c"): 2.5, ("small", "pytorch"): 3, ("medium", "pytorch"): 2.5, ("long", "pytorch"): 8}
head = "| preset | " + " | ".join(f"{i}, tokens/s at {' / '.join(map(str, threads))} threads" for i in impls) + \
       " | " + " | ".join(f"tapegrad / {i} (goal)" for i in impls[1:]) + " |"
print(head)
print("|---|" + "---:|" * (head.count("|") - 2))
for p in presets:
    cells = [" / ".join(f"{med[(i, p, t)]:,.0f}" if (i, p, t) in med else "-" for t in threads) for i in impls]
    ratios = []
    for i in impls[1:]:
        a, b = best("tapegrad", p), best(i, p)
        r = f"{med[('tapegrad', p, a)] / med[(i, p, b)]:.2f}x" if a and b else "-"
        goal = goals.get((p, "pytorch" if i.startswith("pytorch") else i))
        ratios.append(r + (f" ({goal}x)" if goal else ""))
    print(f"| {p} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
print()
print("| preset | tapegrad fraction of the FMA peak at " + " / ".join(map(str, threads)) + " threads | "
      + (f"tapegrad scaling {threads[-1]} / {threads[0]} threads (goal 1.8x) | " if len(threads) > 1 else "")
      + " | ".join(f"{i} peak RSS MiB" for i in impls) + " |")
print("|---|---:|" + ("---:|" if len(threads) > 1 else "") + "---:|" * len(impls))
for p in presets:
    f = " / ".join(f"{statistics.median(frac[(p, t)]):.2f}" if (p, t) in frac else "-" for t in threads)
    s = ""
    if len(threads) > 1:
        a, b = ("tapegrad", p, threads[-1]), ("tapegrad", p, threads[0])
        s = (f"{med[a] / med[b]:.2f}x" if a in med and b in med else "-") + " | "
    r = " | ".join(f"{statistics.median(rss[(i, p, best(i, p))]):,.0f}" if best(i, p) else "-" for i in impls)
    print(f"| {p} | {f} | {s}{r} |")
if attention:
    ms = statistics.median(d["median_ms"] for d in attention)
    a = attention[0]
    print()
    print(f"Causal attention forward + backward, T = {a['T']} (B {a['B']}, h {a['h']}, dh {a['dh']}, "
          f"{a['threads']} thread): {ms / 1000:.2f} s (goal <= 1.0 s), saved {a['saved_bytes'] / 2**20:.1f} MiB "
          f"(goal < 64), process peak RSS {max(d['process_peak_rss_mib'] for d in attention):.0f} MiB")
PY
} > "$table"
cat "$table"
echo "raw runs: $out (TABLE_ONLY=$out prints the tables again)" >&2

[ $doc = 0 ] || "$root/scripts/replace_generated.py" "$root/docs/performance.md" bench_compare.sh "$table"
rm -f "$table"
