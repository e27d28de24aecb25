#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer (-fno-sanitize-recover=all) in ./build-fuzz, then, for
# each target: runs every input of its committed corpus fuzz/corpus/<target> once
# (regression); then fuzzes every target afresh from its corpus for SECONDS (default 30),
# as many targets at once as the machine has cores.
# Fails on any finding (a crash, a sanitizer report, an exception other than the
# reader's own error, a leak, a 10 s input, 2 GiB of memory); the input is kept in
# build-fuzz/findings/. The committed corpus is never modified.
#
#   scripts/fuzz.sh [SECONDS]      (or FUZZ_SECONDS=SECONDS; 0: the regression only)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-${FUZZ_SECONDS:-30}}
case $seconds in '' | *[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;; esac
if ! command -v clang++ >/dev/null; then
  echo "fuzz.sh: clang++ is missing: run scripts/setup.sh first (packages clang, libclang-rt-14-dev)" >&2
  exit 1
fi

cmake -S fuzz -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ >/dev/null
cmake --build build-fuzz -j "$(nproc)"
mkdir -p build-fuzz/findings
options=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -artifact_prefix=build-fuzz/findings/)

targets=(safetensors_bytes model_file text_data)
for target in "${targets[@]}"; do
  seeds=fuzz/corpus/$target
  echo "fuzz.sh: $target: the $(ls "$seeds" | wc -l) inputs of $seeds"
  build-fuzz/fuzz_$target "${options[@]}" "$seeds"/* 2>build-fuzz/$target-regression.log \
    || { tail -40 build-fuzz/$target-regression.log >&2; echo "fuzz.sh: $target: a committed input fails" >&2; exit 1; }
done
[ "$seconds" -eq 0 ] && exit 0

# One fresh fuzzing run of a target: its own corpus copy, its log, its verdict.
fuzz_afresh() {
  local target=$1
  rm -rf "build-fuzz/corpus-$target" && mkdir -p "build-fuzz/corpus-$target"
  if ! build-fuzz/fuzz_$target "${options[@]}" -max_total_time="$seconds" -print_final_stats=1 \
      "build-fuzz/corpus-$target" "fuzz/corpus/$target" 2>build-fuzz/$target.log; then
    tail -40 build-fuzz/$target.log >&2
    echo "fuzz.sh: $target: finding, input in build-fuzz/findings/" >&2
    return 1
  fi
  echo "fuzz.sh: $target: $(grep -o 'stat::number_of_executed_units: [0-9]*' build-fuzz/$target.log | grep -o '[0-9]*$') inputs in ${seconds} s, no finding"
}

failed=0
running=()
for target in "${targets[@]}"; do
  fuzz_afresh "$target" &
  running+=($!)
  if [ ${#running[@]} -ge "$(nproc)" ]; then
    wait "${running[0]}" || failed=1
    running=("${running[@]:1}")
  fi
done
for pid in "${running[@]}"; do wait "$pid" || failed=1; done
exit $failed
