#!/usr/bin/env bash
# Builds tapegrad (Release, tests on) in ./build and runs the whole suite with ctest.
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
