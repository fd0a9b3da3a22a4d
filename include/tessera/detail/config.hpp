// tessera/detail/config.hpp - compiler portability macros shared by every header.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define TESSERA_HD __host__ __device__
#else
#define TESSERA_HD
#endif

#define TESSERA_VERSION_MAJOR 0
#define TESSERA_VERSION_MINOR 1
#define TESSERA_VERSION_PATCH 0

// Vectorisation hint for a float sum over a loop on the host compiler (the reduction would
// otherwise stay scalar without -ffast-math); nothing on device passes.
#if defined(_OPENMP) && !defined(__CUDA_ARCH__)
#define TESSERA_PRAGMA(x) _Pragma(#x)
#define TESSERA_SIMD_SUM(var) TESSERA_PRAGMA(omp simd reduction(+ : var))
#define TESSERA_SIMD TESSERA_PRAGMA(omp simd)
#else
#define TESSERA_SIMD_SUM(var)
#define TESSERA_SIMD
#endif

#if defined(__CUDACC__)
#define TESSERA_RESTRICT __restrict__
#else
#define TESSERA_RESTRICT __restrict
#endif
