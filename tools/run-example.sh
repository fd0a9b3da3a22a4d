#!/usr/bin/env bash
# Builds and runs the main example (digits, CPU threads) from a fresh Debian 12 machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build/example -DCMAKE_BUILD_TYPE=Release -DTESSERA_BUILD_TESTS=OFF -DTESSERA_BUILD_BENCH=OFF
cmake --build build/example -j "$(nproc)" --target digits data_parallel
./build/example/examples/digits "$@"
