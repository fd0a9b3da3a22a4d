#!/usr/bin/env bash
# The GEMM backends compared: bench_gemm (the eight products of a training step, both libraries in
# one executable, interleaved) and, on whole training, bench_train_step and bench_data_parallel
# built with TESSERA_GEMM=cblas and with TESSERA_GEMM=onednn, run interleaved for ROUNDS rounds
# (default 5); prints the median of each rate counter per configuration and benchmark. The
# configurations: openblas (the cblas build, OPENBLAS_CORETYPE unset: OpenBLAS picks its kernels
# from the CPU), openblas-haswell (the same with OPENBLAS_CORETYPE=Haswell, its AVX2 kernels, as the
# environment of the 2-core VM of docs/performance.md sets it) and onednn (the onednn build;
# OPENBLAS_CORETYPE as the caller has it, for gemv). Before each round it waits (up to WAIT seconds, default 120) for
# the CPUs to be 90% idle over 2 s, and prints that idle share and the load average (numbers taken
# above ~1.5 on 2 cores are suspect; the benchmark's own two threads count in the next round's).
#   bash bench/compare_gemm_backends.sh [cblas-build] [onednn-build]   (default build/release build/onednn)
# Both builds need the two targets, the cblas one bench_gemm too, e.g.
#   cmake -S . -B build/onednn -DCMAKE_BUILD_TYPE=Release -DTESSERA_GEMM=onednn -DTESSERA_CUDA=OFF
#   cmake --build build/onednn --target bench_train_step bench_data_parallel -j2
# KEEP=<folder> keeps the JSON output of every run there.
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:-build/release}
b=${2:-build/onednn}
out=$(mktemp -d)
idle_share() {  # percent idle of all CPUs over 2 s
  local u1 u2
  read -ra u1 < <(head -1 /proc/stat); sleep 2; read -ra u2 < <(head -1 /proc/stat)
  local t=0 i
  for i in 1 2 3 4 5 6 7 8; do t=$((t + u2[i] - u1[i])); done
  echo $((100 * (u2[4] - u1[4]) / (t > 0 ? t : 1)))
}
for r in $(seq "${ROUNDS:-5}"); do
  waited=0
  while idle=$(idle_share); ((idle < 90 && waited < ${WAIT:-120})); do waited=$((waited + 2)); done
  echo "round $r: idle ${idle}% (waited ${waited} s), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  for conf in openblas:"$a":unset openblas-haswell:"$a":Haswell onednn:"$b":; do
    IFS=: read -r tag build coretype <<<"$conf"
    run() {
      case "$coretype" in
        "") "$@" ;;
        unset) env -u OPENBLAS_CORETYPE "$@" ;;
        *) OPENBLAS_CORETYPE=$coretype "$@" ;;
      esac
    }
    if [ "$tag" != onednn ]; then  # bench_gemm has both libraries; oneDNN's rows are taken from both runs
      run "$a/bench/bench_gemm" --benchmark_min_time=0.2 --benchmark_format=json >"$out/gemm-$tag.gemm.$r.json" 2>/dev/null
    fi
    run "$build/bench/bench_train_step" --benchmark_filter='784_1024_1024_10/256' --benchmark_format=json \
      >"$out/$tag.train_step.$r.json" 2>/dev/null
    run "$build/bench/bench_data_parallel" --benchmark_filter='batch(256|64)/' --benchmark_format=json \
      >"$out/$tag.data_parallel.$r.json" 2>/dev/null
    OMP_NUM_THREADS=1 run "$build/bench/bench_data_parallel" --benchmark_filter='batch(256|64)/1/' \
      --benchmark_format=json >"$out/$tag.data_parallel_1core.$r.json" 2>/dev/null
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 - "$out" <<'EOF'
import collections, glob, json, os, statistics, sys
runs = collections.defaultdict(list)
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    tag, what = os.path.basename(f).split(".")[:2]
    for bm in json.load(open(f))["benchmarks"]:
        if bm.get("run_type") != "iteration":
            continue
        for k in ("samples/s", "GFLOP/s", "cpu/wall"):
            if k in bm:
                runs[(what, bm["name"], k, tag)].append(bm[k])
for (what, name, k, tag), v in sorted(runs.items()):
    print(f"{what:20s} {name:50s} {tag:10s} {k:10s} median {statistics.median(v):10.4g}  "
          f"min {min(v):10.4g}  max {max(v):10.4g}  (n={len(v)})")
EOF
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$out"/*.json "$KEEP"/; fi
rm -r "$out"
