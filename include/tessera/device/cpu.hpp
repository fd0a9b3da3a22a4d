// tessera/device/cpu.hpp - the CPU device: Thrust's OpenMP system for elementwise work and
// reductions, CBLAS for matrix products, host memory for buffers.
#pragma once

#include <thrust/system/omp/execution_policy.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "tessera/detail/blas.hpp"

namespace tessera {

/// The CPU device choice, as in `Device<Cpu>`.
struct Cpu {
  /// Device memory is host memory here.
  template <class T>
  using vector = std::vector<T>;

  static constexpr const char* name = "Cpu";

  /// The Thrust execution policy every elementwise kernel of this device is launched with.
  static auto exec() noexcept { return thrust::omp::par; }

  /// Copies n floats between device and host memory (both are host memory here).
  static void download(const float* device_src, float* host_dst, std::size_t n) {
    std::copy(device_src, device_src + n, host_dst);
  }
  static void upload(const float* host_src, float* device_dst, std::size_t n) {
    std::copy(host_src, host_src + n, device_dst);
  }

  static void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
                   const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
                   std::size_t ldc) {
    detail::blas::gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  static void gemv(bool trans, std::size_t m, std::size_t n, float alpha, const float* a, std::size_t lda,
                   const float* x, float beta, float* y) {
    detail::blas::gemv(trans, m, n, alpha, a, lda, x, beta, y);
  }
};

}  // namespace tessera
