#!/usr/bin/env bash
# Sets up a fresh Debian 12 / Ubuntu machine for tapegrad (run as root) and builds
# it in Release mode into ./build. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  cmake g++ make
  libxtensor-dev        # tensor containers (0.24.3)
  libopenblas-dev       # cblas_sgemm / cblas_dgemm
  nlohmann-json3-dev    # safetensors headers
  libcli11-dev          # train_lm's command line
  doctest-dev           # the test suite
  fortunes              # default training text for train_lm
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (sudo scripts/setup.sh): it installs Debian packages" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}"

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
echo "setup.sh: tapegrad built in ./build"
