#!/usr/bin/env bash
# Remakes the pictures in docs/img from real runs on this machine, with tools/plot.py:
#   digits_history.png   the digits example's loss and test accuracy per epoch (digits --history)
#   scaling.png          bench_data_parallel: training samples/s, 1 and 2 worker threads
#   allreduce.png        bench_mpi_allreduce under mpirun -n 2 (tessera's sum against raw
#                        MPI_Allreduce) and bench_allreduce (thread all-reduce against memcpy)
#   pipeline_bubble.png  bench_pipeline's BM_pipeline, S = 2: measured bubble against (S-1)/(M+S-1)
# The raw outputs (history CSV, Google Benchmark JSON, the machine) go to docs/img/data/. Each
# benchmark takes under a minute here. Run it on a quiet machine: every other process on these
# cores shows in the numbers. machine.txt says, per benchmark, how much CPU time other programs
# and the hypervisor took meanwhile ("<- disturbed" past 5% of the cores), and plot.py warns of a
# benchmark whose median repetition is more than 10% slower than its best.
#
#   bash tools/make-plots.sh [build-dir]     (default build/release: digits and the bench_* targets
#                                            built, Release; mpirun for the MPI sweep)
#   bash tools/make-plots.sh --replot        only redraw the pictures from docs/img/data
# Needs Debian's /usr/bin/python3 with python3-matplotlib.
set -euo pipefail
cd "$(dirname "$0")/.."
replot=0
if [[ ${1:-} == --replot ]]; then replot=1; shift; fi
build=${1:-build/release}
img=docs/img
data=$img/data
mkdir -p "$data"
# run <name> <command...>: runs a benchmark and writes to machine.txt how much CPU time other
# programs took meanwhile (the machine's busy time from /proc/stat less this command's user and
# system time) and how much the hypervisor stole, so that a disturbed run is seen as one.
busy_and_steal() { awk '/^cpu /{print $2+$3+$4+$7+$8, $9}' /proc/stat; }
run() {
  local name=$1; shift
  local t0 b0 s0 b1 s1 t1 mine
  read -r b0 s0 < <(busy_and_steal); t0=$(date +%s.%N)
  mine=$( { TIMEFORMAT='%U %S'; time "$@" > /dev/null 2>&1; } 2>&1 | awk '{print $1 + $2}')
  read -r b1 s1 < <(busy_and_steal); t1=$(date +%s.%N)
  awk -v n="$name" -v t0="$t0" -v t1="$t1" -v b="$((b1 - b0))" -v s="$((s1 - s0))" -v m="$mine" \
      -v hz="$(getconf CLK_TCK)" -v cores="$(nproc)" 'BEGIN {
    w = t1 - t0; others = b / hz - m; if (others < 0) others = 0
    printf "%s: %.1f s; its CPU time %.1f core-s; other programs %.1f core-s (%.0f%% of the cores); stolen by the host %.1f core-s%s\n",
           n, w, m, others, 100 * others / (w * cores), s / hz, (others > 0.05 * w * cores ? "  <- disturbed" : "") }' \
      | tee -a "$data/machine.txt"
}

# The runs: the machine, the history, the benchmarks (JSON), into $data.
measure() {
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  for exe in examples/digits bench/bench_data_parallel bench/bench_allreduce bench/bench_pipeline; do
    [[ -x $build/$exe ]] || { echo "make-plots: $build/$exe is missing: build it first (cmake --build $build --target $(basename "$exe"))" >&2; exit 2; }
  done

  cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
  family=$(grep -m1 '^cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')
  hypervisor=$(lscpu 2>/dev/null | sed -n 's/^Hypervisor vendor: *//p')
  native=$(grep -E '^TESSERA_NATIVE:' "$build/CMakeCache.txt" | cut -d= -f2)
  compiler=$(sed -n 's/^set(CMAKE_CXX_COMPILER_ID "\(.*\)")/\1/p; s/^set(CMAKE_CXX_COMPILER_VERSION "\(.*\)")/\1/p' \
             "$build"/CMakeFiles/*/CMakeCXXCompiler.cmake | paste -sd' ' | sed 's/^GNU /GCC /')
  flags=Release
  [[ $native == ON ]] && flags="Release, -march=native"
  machine="$(nproc)-core ${hypervisor:+$hypervisor virtual }machine, CPU \"$cpu\" (family $family); $compiler, $flags"
  {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine: $machine"
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- include bench examples || echo ' (with local changes)')"
    echo "build: $build ($(grep -E '^CMAKE_BUILD_TYPE:' "$build/CMakeCache.txt" | cut -d= -f2), TESSERA_NATIVE=$native)"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  } > "$data/machine.txt"

  OMP_NUM_THREADS=2 "$build/examples/digits" --history "$data" > "$data/digits.log"
  OMP_NUM_THREADS=2 run bench_data_parallel "$build/bench/bench_data_parallel" --benchmark_repetitions=3 \
    --benchmark_out="$data/bench_data_parallel.json" --benchmark_out_format=json
  OMP_NUM_THREADS=2 run bench_allreduce "$build/bench/bench_allreduce" --benchmark_repetitions=3 \
    --benchmark_out="$data/bench_allreduce.json" --benchmark_out_format=json
  rm -f "$data/bench_mpi_allreduce.json"
  if [[ -x $build/bench/bench_mpi_allreduce ]] && command -v mpirun >/dev/null; then
    OMP_NUM_THREADS=1 run bench_mpi_allreduce mpirun -n 2 "$build/bench/bench_mpi_allreduce" \
      --benchmark_out="$data/bench_mpi_allreduce.json" --benchmark_out_format=json
  fi
  # one thread per stage, one stage per core, as docs/performance.md measures it (S = 4 would put 4
  # stage threads on 2 cores)
  OMP_NUM_THREADS=1 run bench_pipeline "$build/bench/bench_pipeline" --benchmark_filter='BM_pipeline/S:(1|2)/' \
    --benchmark_repetitions=3 --benchmark_min_time=0.3 \
    --benchmark_out="$data/bench_pipeline.json" --benchmark_out_format=json
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$data/machine.txt"
  cat "$data/machine.txt"
}

if ((replot)); then
  machine=$(sed -n 's/^machine: //p' "$data/machine.txt")
else
  measure
fi
allreduce_inputs=("$data/bench_allreduce.json")
[[ -f $data/bench_mpi_allreduce.json ]] && allreduce_inputs=("$data/bench_mpi_allreduce.json" "${allreduce_inputs[@]}")

plot=(/usr/bin/python3 tools/plot.py)
"${plot[@]}" history "$data/softmax.csv" "$data/mlp.csv" --labels "softmax regression" "mlp 64-128-10" \
  --title "digits (examples/digits.cpp): 2 workers x batch 8, Adam 1e-2, seed 42" \
  --note "digits --history DIR, then tools/plot.py history DIR/softmax.csv DIR/mlp.csv; validation = the 359-sample test split" \
  -o "$img/digits_history.png"
"${plot[@]}" scaling "$data/bench_data_parallel.json" \
  --note "$machine; OMP_NUM_THREADS=2 bench_data_parallel --benchmark_repetitions=3 (median); SGD, epochs 2-3 of 3 timed" \
  -o "$img/scaling.png"
"${plot[@]}" allreduce "${allreduce_inputs[@]}" \
  --note "$machine; mpirun -n 2 bench_mpi_allreduce (one rank per core) and bench_allreduce (2 threads, median of 3)" \
  -o "$img/allreduce.png"
"${plot[@]}" bubble "$data/bench_pipeline.json" \
  --title "pipeline bubble on threads (bench_pipeline: 8 layers 256x256, 512 samples)" \
  --note "$machine; OMP_NUM_THREADS=1 bench_pipeline --benchmark_filter='BM_pipeline/S:(1|2)/' --benchmark_repetitions=3 (median)" \
  -o "$img/pipeline_bubble.png"
