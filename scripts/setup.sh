#!/usr/bin/env bash
# Sets up a fresh Debian 12 / Ubuntu machine for tapegrad and builds it in Release
# mode into ./build. Installing the packages needs root: run it as root, or as a
# user with sudo (then only apt-get runs through sudo and ./build stays yours).
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  cmake g++ make
  clang                 # the sanitizer build in scripts/test.sh (ASan + UBSan) and fuzz/ (libFuzzer)
  libclang-rt-14-dev    # libFuzzer and the sanitizer runtimes for clang 14 (only recommended by clang)
  libomp-dev            # OpenMP for the clang builds (g++ uses libgomp)
  libxtensor-dev        # tensor containers (0.24.3)
  libopenblas-dev       # cblas_dgemm (and cblas_sgemm with TAPEGRAD_GEMM=openblas)
  libxsimd-dev          # vector exp, max, tanh: the tapegrad_kernels library (src/kernels/, core/vecmath.hpp)
  libdnnl-dev           # oneDNN 2.6: the float GEMMs (core/blas.hpp), JIT kernels for the CPU it runs on
  libgomp1              # OpenMP threads (core/parallel.hpp; comes with g++)
  nlohmann-json3-dev    # safetensors headers
  libcli11-dev          # train_lm's command line
  doctest-dev           # the test suite
  libopenmpi-dev        # dist/: data-parallel training over MPI (optional to the build)
  openmpi-bin           # mpirun
  fortunes              # default training text for train_lm
  python3               # scripts/: the speedrun sweep and plot, bench_compare.sh's table
  graphviz              # dot: renders `train_lm graph` (scripts/draw_block_graph.sh, docs/graph.md)
  libxtensor-blas-dev   # tests only: the SVD that checks Muon's orthogonalisation (tests/singular_values.cpp)
  python3-torch         # tests only: both model families' loss and gradients against PyTorch (scripts/reference_torch.py)
  iproute2              # tests only: ip netns and veth for the two-host MPI test (tests/dist/two_hosts_test.sh)
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "setup.sh: installing packages needs root: run it as root, or install sudo" >&2
    exit 1
  fi
}

as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
echo "setup.sh: tapegrad built in ./build"
