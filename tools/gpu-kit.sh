#!/usr/bin/env bash
# Packs the GPU proof for a machine that has a GPU, the CUDA driver and PyTorch but perhaps none of
# our build dependencies (no MPI, no OpenBLAS, no Catch2, no way to install them): builds test_cuda
# and bench_gpu here with nvcc (sm_90 + PTX, as CI does, without MPI so that the binaries need no
# libmpi), and packs them into .gpu-kit/ (ignored by git) with the shared libraries they need that
# are neither the C/C++ runtime nor CUDA's own (OpenBLAS and its Fortran runtime, OpenMP's).
# tools/gpu-run.sh runs the kit on the GPU machine. See docs/gpu.md.
#
#   bash tools/gpu-kit.sh            # then copy or carry .gpu-kit/ with the source tree
set -euo pipefail
cd "$(dirname "$0")/.."
build=build/gpu-kit
kit=.gpu-kit

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON \
      -DTESSERA_BUILD_EXAMPLES=OFF >/dev/null
if ! grep -q '^TESSERA_NCCL_LIBRARY:FILEPATH=/' "$build/CMakeCache.txt"; then
  echo "gpu-kit: the build found no NCCL (pass NCCL_ROOT); test_cuda would not test Reduce<NcclAllreduce>" >&2
  exit 1
fi
cmake --build "$build" -j "$(nproc)" --target test_cuda bench_gpu

rm -rf "$kit"
mkdir -p "$kit/bin" "$kit/lib"
cp "$build/tests/test_cuda" "$build/bench/gpu/bench_gpu" "$kit/bin/"
# The libraries to carry: every resolved dependency except glibc's, the C++ runtime's and CUDA's
# (the GPU machine's driver and toolkit or PyTorch wheels provide cudart, cuBLAS and NCCL).
ldd "$kit"/bin/* | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
  grep -vE '^(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|ld-linux[^ ]*)\.so|^lib(cudart|cublas|cublasLt|nccl|cuda)\.so' |
  while read -r soname path; do cp -L "$path" "$kit/lib/$soname"; done
tar -C "$kit" -cJf "$kit/lib.tar.xz" lib
rm -rf "$kit/lib"
{
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) from $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- include tests bench || echo ' (with local changes)')"
  "$(grep '^CMAKE_CUDA_COMPILER:' "$build/CMakeCache.txt" | cut -d= -f2)" --version | tail -2
  echo "device code: $(grep -o -- '--generate-code=[^ ]*' "$build/tests/CMakeFiles/test_cuda.dir/flags.make" | sort -u | tr '\n' ' ')"
  grep -E '^(TESSERA_NCCL_LIBRARY|TESSERA_CBLAS_LIBRARY):' "$build/CMakeCache.txt"
  echo "carried libraries:"; tar -tJf "$kit/lib.tar.xz" | grep '\.so'
} > "$kit/BUILD.txt"
cat "$kit/BUILD.txt"
du -sh "$kit"
