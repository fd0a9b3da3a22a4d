#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: install dependencies, configure, build,
# run every ctest test (unit, training, compile-fail, header, package, README and bounded fuzz
# runs), then the whole suite again built with AddressSanitizer and UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
jobs=$(nproc)
cmake --preset release
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"
# the same tests under AddressSanitizer + UndefinedBehaviorSanitizer (CUDA, packaging, compile-fail
# and the fuzz runs, which have sanitizers of their own, are left out: see CMakePresets.json)
cmake --preset asan
cmake --build --preset asan -j "$jobs"
ctest --preset asan -j "$jobs"
