#!/usr/bin/env bash
# Builds tapegrad (Release, tests on) in ./build and runs the whole suite with ctest;
# then the fuzz targets (scripts/fuzz.sh: each over its committed corpus, then
# FUZZ_SECONDS, default 30, of fresh fuzzing); then builds the suite again with
# AddressSanitizer + UndefinedBehaviorSanitizer in ./build-asan and runs it there
# (after the rest, never beside it).
set -euo pipefail
cd "$(dirname "$0")/.."

for header in xtensor/xarray.hpp cblas.h nlohmann/json.hpp CLI/CLI.hpp doctest/doctest.h; do
  if ! echo "#include <$header>" | g++ -std=c++20 -x c++ -fsyntax-only - 2>/dev/null; then
    echo "test.sh: <$header> is missing: run scripts/setup.sh first" >&2
    exit 1
  fi
done

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DTAPEGRAD_WERROR=ON  # -Wall -Wextra -Wshadow as errors
cmake --build build -j "$(nproc)"
ctest --test-dir build --output-on-failure -j "$(nproc)"
./scripts/fuzz.sh

# ---- sanitizer run ----------------------------------------------------------------
# The same suite built with clang (it builds this tree about a third faster than g++
# here), -fsanitize=address,undefined -fno-sanitize-recover=all, -O1 -gline-tables-only
# (TAPEGRAD_SANITIZE): any finding aborts its test and fails the run. Left out:
# install_and_consume, which builds and runs a consumer without sanitizers, bench/
# (no test runs a benchmark), and the MPI tests (TAPEGRAD_WITH_MPI=OFF: Open MPI's own allocations are not ours
# to check); the normal suite runs both.
if ! command -v clang++ >/dev/null; then
  echo "test.sh: clang++ is missing (the sanitizer build uses it): run scripts/setup.sh first" >&2
  exit 1
fi
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ -DTAPEGRAD_SANITIZE=ON -DTAPEGRAD_WITH_MPI=OFF -DTAPEGRAD_BUILD_BENCH=OFF
cmake --build build-asan -j "$(nproc)"
UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build-asan --output-on-failure -j "$(nproc)" -E '^install_and_consume$'
# ---- end of the sanitizer run -----------------------------------------------------
