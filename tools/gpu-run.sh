#!/usr/bin/env bash
# Runs the GPU proof on a machine with a GPU, from the repository root: the CUDA tests (test_cuda,
# ctest's gpu:test_cuda), the GPU benchmarks (bench_gpu) and the PyTorch peer script, with the
# binaries that tools/gpu-kit.sh packed into .gpu-kit/ (or, with --build DIR, those of a build
# folder). The CUDA libraries come from the machine: its toolkit, or the nvidia-* Python wheels
# that PyTorch brings. Logs go to $OUT (default: gpu-results/). Exit status: non-zero when a test
# fails or no GPU is there.
#
#   bash tools/gpu-run.sh [--build DIR] [--sanitize] [test_cuda arguments...]
#     --sanitize   also run test_cuda under compute-sanitizer (memcheck), on the [cuda] tests
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${OUT:-$root/gpu-results}
mkdir -p "$out"
bin=$root/.gpu-kit/bin
sanitize=0
while (($#)); do
  case $1 in
    --build) bin=$2; shift 2 ;;
    --sanitize) sanitize=1; shift ;;
    *) break ;;
  esac
done
if [[ -f $bin/tests/test_cuda ]]; then  # a build folder
  tests_bin=$bin/tests/test_cuda bench_bin=$bin/bench/gpu/bench_gpu
else
  tests_bin=$bin/test_cuda bench_bin=$bin/bench_gpu
fi
[[ -x $tests_bin && -x $bench_bin ]] || { echo "gpu-run: $tests_bin or $bench_bin missing: run tools/gpu-kit.sh first" >&2; exit 2; }

libs=""
if [[ -f $root/.gpu-kit/lib.tar.xz ]]; then
  mkdir -p /tmp/tessera-gpu-kit && tar -C /tmp/tessera-gpu-kit -xJf "$root/.gpu-kit/lib.tar.xz"
  libs=/tmp/tessera-gpu-kit/lib
fi
# Each CUDA library from the first folder that has it: the toolkit's, then the Python wheels'.
wheels=$(python3 -c 'import nvidia; print(" ".join(nvidia.__path__))' 2>/dev/null || true)
for name in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libnccl.so.2; do
  found=$(find /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib $wheels \
            -name "$name" 2>/dev/null | head -1)
  [[ -n $found && :$libs: != *:$(dirname "$found"):* ]] && libs="$libs:$(dirname "$found")"
done
export LD_LIBRARY_PATH="${libs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export TESSERA_SOURCE_DIR=$root OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}

{
  echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(hostname)"
  cat "$root/.gpu-kit/BUILD.txt" 2>/dev/null
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv 2>&1
  echo "$(nproc --all) CPU cores"; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  ldd "$tests_bin" | grep -E 'not found|cuda|cublas|nccl|openblas|gomp'
} > "$out/machine.txt" 2>&1
cat "$out/machine.txt"
if ldd "$tests_bin" | grep -q 'not found'; then echo "gpu-run: a library is missing (above)" >&2; exit 2; fi

status=0
echo "== test_cuda"
"$tests_bin" --durations yes "$@" 2>&1 | tee "$out/test_cuda.log"
rc=${PIPESTATUS[0]}
if [[ $rc == 77 ]]; then echo "gpu-run: no GPU here; nothing was proven" >&2; exit 77; fi
[[ $rc == 0 ]] || status=$rc
echo "== bench_gpu"
"$bench_bin" 2>&1 | tee "$out/bench_gpu.log"
[[ ${PIPESTATUS[0]} == 0 ]] || status=1
echo "== PyTorch peer"
python3 "$root/bench/gpu/torch_mlp_step_cuda.py" --batch 4096 2>&1 | tee "$out/torch_mlp_step.log"
if ((sanitize)); then
  echo "== compute-sanitizer memcheck"
  compute-sanitizer --tool memcheck --error-exitcode 9 "$tests_bin" "[cuda]" 2>&1 | tail -40 | tee "$out/memcheck.log"
  [[ ${PIPESTATUS[0]} == 0 ]] || status=1
fi
echo "gpu-run: exit status $status; logs in $out"
exit $status
