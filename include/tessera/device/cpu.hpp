// tessera/device/cpu.hpp - the CPU device: Thrust's OpenMP system for elementwise work and
// reductions, CBLAS for matrix products, host memory for buffers.
#pragma once

#include <thrust/system/cpp/execution_policy.h>
#include <thrust/system/omp/execution_policy.h>

#include <algorithm>
#include <cstddef>
#include <mutex>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "tessera/detail/blas.hpp"
#include "tessera/device/concepts.hpp"

namespace tessera {

/// The CPU device choice, as in `Device<Cpu>`.
struct Cpu {
  /// Device memory is host memory here.
  template <class T>
  using vector = std::vector<T>;

  /// Shown in messages and progress lines.
  static constexpr const char* name = "Cpu";
  /// The host reads this device's memory: host communicators serve it.
  static constexpr bool host_memory = true;

  /// The Thrust execution policy every elementwise kernel of this device is launched with.
  static auto exec() noexcept { return thrust::omp::par; }

  /// Copies n floats between device and host memory (both are host memory here).
  static void download(const float* device_src, float* host_dst, std::size_t n) {
    std::copy(device_src, device_src + n, host_dst);
  }
  /// Copies n floats between host and device memory.
  static void upload(const float* host_src, float* device_dst, std::size_t n) {
    std::copy(host_src, host_src + n, device_dst);
  }

  /// Nothing to wait for: work on the CPU is done when its call returns.
  static void synchronize() noexcept {}
  /// Nothing to wait for.
  template <class Check>
  static void wait(Check&&) noexcept {}

  /// What a lane binds on its thread: nothing on the CPU.
  struct Lane {
    /// Nothing to set up.
    explicit Lane(int = 0) noexcept {}
    struct Bound {};
    /// Nothing to bind.
    [[nodiscard]] Bound bind() noexcept { return {}; }
  };

  /// C = alpha op(A) op(B) + beta C, row-major (CBLAS sgemm; oneDNN's dnnl_sgemm when built with
  /// TESSERA_GEMM_ONEDNN=1, CMake option TESSERA_GEMM=onednn).
  static void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
                   const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
                   std::size_t ldc) {
    detail::blas::gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  /// y = alpha op(A) x + beta y, row-major (CBLAS sgemv).
  static void gemv(bool trans, std::size_t m, std::size_t n, float alpha, const float* a, std::size_t lda,
                   const float* x, float beta, float* y) {
    detail::blas::gemv(trans, m, n, alpha, a, lda, x, beta, y);
  }
};

namespace detail {

/// The CPU as seen by one of several worker threads: the same kernels and BLAS, but sequential
/// inside the worker (thrust::cpp::par), since the workers already occupy the cores. Its results
/// do not depend on how many threads the process runs.
struct CpuWorker : Cpu {
  static auto exec() noexcept { return thrust::cpp::par; }
};

}  // namespace detail

static_assert(DeviceType<Cpu> && DeviceType<detail::CpuWorker>);

namespace detail {

/// Holds the CBLAS library to one thread while alive (OpenBLAS only; other CBLAS libraries are
/// left as configured), restoring the previous count after. OpenBLAS's count is one per process:
/// while several guards are alive at once (fits in several slots of a task pool) the first sets it
/// and the last restores it. The calling thread's OpenMP count, which an OpenMP build of OpenBLAS
/// sets with its own, comes back as it was for each guard. oneDNN's dnnl_sgemm (OpenMP runtime)
/// needs nothing more: it follows each worker's own omp_set_num_threads(1).
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() {
#if defined(_OPENMP)
    omp_previous_ = omp_get_max_threads();
#endif
#if defined(OPENBLAS_VERSION)
    const std::lock_guard<std::mutex> lock(state().mutex);
    if (state().holders++ == 0) {
      state().previous = openblas_get_num_threads();
      openblas_set_num_threads(1);
    }
#endif
  }
  ~SingleThreadedBlas() {
#if defined(OPENBLAS_VERSION)
    {
      const std::lock_guard<std::mutex> lock(state().mutex);
      if (--state().holders == 0) openblas_set_num_threads(state().previous);
    }
#endif
#if defined(_OPENMP)
    omp_set_num_threads(omp_previous_);
#endif
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  struct Shared {
    std::mutex mutex;
    std::size_t holders = 0;
    int previous = 1;
  };
  static Shared& state() {
    static Shared s;
    return s;
  }
  int omp_previous_ = 1;
};

}  // namespace detail
}  // namespace tessera
