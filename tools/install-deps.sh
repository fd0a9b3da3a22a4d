#!/usr/bin/env bash
# Installs what tessera's build, tests, example and benchmarks need on Debian 12 (run as root).
# The CUDA toolkit is optional: when present, its CCCL is used for Thrust; otherwise Debian's
# libthrust-dev is. Doxygen and Graphviz build the API reference (target docs, test docs:doxygen).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(cmake g++ make libopenblas-dev libopenblas-openmp-dev libthrust-dev catch2 libbenchmark-dev libomp-dev
      libopenmpi-dev openmpi-bin pkgconf clang libclang-rt-14-dev doxygen graphviz)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
