#!/usr/bin/env bash
# Runs every benchmark with repetitions and prints, per benchmark, the best and the median of
# each rate counter. The best is the least disturbed run: on a shared virtual machine the other
# core is sometimes taken away, which only ever slows a run down.
#   bash bench/run_all.sh [build-dir]      (default build/bench, configured with -DTESSERA_NATIVE=ON)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/bench}
if [ ! -d "$build" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DTESSERA_NATIVE=ON -DTESSERA_BUILD_TESTS=OFF -DTESSERA_BUILD_EXAMPLES=OFF
fi
cmake --build "$build" -j "$(nproc)"
summarise() {
  /usr/bin/python3 -c '
import json, sys, statistics, collections
runs = collections.defaultdict(lambda: collections.defaultdict(list))
for b in json.load(sys.stdin)["benchmarks"]:
    if b.get("run_type") != "iteration": continue
    name = b["run_name"]
    for k, v in b.items():
        if k in ("bytes_per_second", "items_per_second") or k.endswith("/s") or k == "GFLOP/s" or k == "samples/s":
            runs[name][k].append(v)
    runs[name]["ms"].append(b["real_time"] * {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]])
for name, counters in runs.items():
    parts = []
    for k, v in counters.items():
        best = min(v) if k == "ms" else max(v)
        parts.append(f"{k} best {best:.4g} median {statistics.median(v):.4g}")
    print(f"{name}: " + "; ".join(parts))
'
}
for b in bench_machine bench_least_squares bench_train_step bench_allreduce bench_data_parallel; do
  echo "== $b"
  "$build/bench/$b" --benchmark_repetitions="${REPS:-5}" --benchmark_format=json 2>/dev/null | summarise
done
echo "== bench_data_parallel, one worker on one core (OMP_NUM_THREADS=1)"
OMP_NUM_THREADS=1 "$build/bench/bench_data_parallel" --benchmark_filter='batch(256|64)/1/' \
  --benchmark_repetitions="${REPS:-5}" --benchmark_format=json 2>/dev/null | summarise
