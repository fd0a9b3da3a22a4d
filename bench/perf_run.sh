#!/usr/bin/env bash
# Reproduces the machine-limit, least-squares and MLP-step numbers: builds the benchmarks (Release, -march=native),
# runs bench_machine_limits, bench_lsq_bandwidth and bench_mlp_step with 5 repetitions (JSON and
# console output under $OUT, default build-perf/results) and the PyTorch / NumPy peers (twice:
# torch.set_num_threads(2) with 2 OpenBLAS threads, and the faster 1 + 2).
#
#   bench/perf_run.sh            # everything (a few minutes on 2 cores)
#   REPS=3 bench/perf_run.sh     # fewer repetitions
#
# Run it on an otherwise idle machine: another process on one of the cores makes every 2-thread
# figure meaningless (an OpenMP barrier then waits a whole scheduler time slice).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$here/build-perf}
out=${OUT:-$build/results}
reps=${REPS:-5}
mkdir -p "$out"

cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release -DTESSERA_NATIVE=ON -DTESSERA_BUILD_TESTS=OFF \
  -DTESSERA_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target bench_machine_limits bench_lsq_bandwidth bench_mlp_step -j2 >/dev/null

load=$(cut -d' ' -f1 /proc/loadavg)
echo "load average before the runs: $load (should be well below 1)"

for b in bench_machine_limits bench_lsq_bandwidth bench_mlp_step; do
  echo "== $b"
  "$build/bench/$b" --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true \
    --benchmark_counters_tabular=true --benchmark_out="$out/$b.json" --benchmark_out_format=json \
    2>&1 | tee "$out/$b.txt"
done

echo "== torch_mlp_step.py"
/usr/bin/python3 "$here/bench/torch_mlp_step.py" --threads 2 --reps "$reps" | tee "$out/torch_mlp_step.txt"
/usr/bin/python3 "$here/bench/torch_mlp_step.py" --threads 1 --blas-threads 2 --reps "$reps" |
  tee "$out/torch_mlp_step_1omp_2blas.txt"
