#!/usr/bin/env bash
# Long local fuzzing of every reader: builds the libFuzzer targets of tests/fuzz with clang
# (AddressSanitizer + UndefinedBehaviorSanitizer), writes the seed corpora with the library, and
# runs each target for SECONDS (default 600) with the limits that make a header-sized allocation
# a finding (-rss_limit_mb=2048 -malloc_limit_mb=1024). Findings land in build/fuzz/findings/.
#   bash tools/fuzz.sh [SECONDS] [TARGET...]      TARGET: csv tsrd model checkpoint tasks (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(csv tsrd model checkpoint tasks)
cxx=$(command -v clang++-14 || command -v clang++ || true)
[[ -n "$cxx" ]] || { echo "fuzz.sh: clang++ not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
build=build/fuzz
# the same Thrust and CBLAS as a normal configure finds
cmake -S . -B build/fuzz-probe -DTESSERA_BUILD_TESTS=OFF -DTESSERA_BUILD_EXAMPLES=OFF -DTESSERA_BUILD_BENCH=OFF \
      -DTESSERA_CUDA=OFF >/dev/null
cache=build/fuzz-probe/CMakeCache.txt
value() { sed -n "s/^$1:[A-Z]*=//p" "$cache"; }
cmake -DSOURCE=tests/fuzz -DBINARY="$build" -DCXX="$cxx" -DTESSERA="$PWD" -DTHRUST="$(value TESSERA_THRUST_INCLUDE_DIR)" \
      -DCBLAS_INCLUDE="$(value TESSERA_CBLAS_INCLUDE_DIR)" -DCBLAS_LIBRARY="$(value TESSERA_CBLAS_LIBRARY)" \
      -P tests/fuzz/build.cmake
mkdir -p "$build/findings"
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t"
  mkdir -p "$corpus"
  log="$build/fuzz_$t.log"
  echo "fuzz.sh: $t for $seconds s (log $log)"
  status=0
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$build/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$build/findings/$t-" "$corpus" "$build/seeds/$t" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  peak=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  echo "fuzz.sh: $t: ${runs:-?} executions in $seconds s, peak RSS ${peak:-?} MB, corpus $(ls "$corpus" | wc -l) files, exit $status"
  ((status == 0)) || { tail -40 "$log"; exit "$status"; }
done
