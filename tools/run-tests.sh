#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: install dependencies, configure, build,
# run every ctest test (unit, training, compile-fail, header, package and README checks).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
jobs=$(nproc)
cmake --preset release
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"
