// tessera/device/cuda/device.hpp - the CUDA device, as in `Device<Cuda>`: Thrust's CUDA system on
// the calling thread's stream (no synchronisation after each algorithm), cuBLAS for matrix
// products, device memory for buffers. The same interface as Cpu (device/cpu.hpp), so that
// Network<Cuda>, optim::State<Cuda> and every detail kernel run unchanged. Needs nvcc (component
// `cuda`).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <thrust/device_vector.h>
#include <thrust/system/cuda/execution_policy.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <thread>
#include <utility>

#include "tessera/detail/least_squares.hpp"
#include "tessera/device/cuda/check.hpp"
#include "tessera/device/cuda/context.hpp"
#include "tessera/device/cuda/least_squares.hpp"
#include "tessera/policies.hpp"

namespace tessera {
namespace detail {

using CudaThrustPolicy =
    decltype(thrust::cuda::par_nosync(std::declval<CachingAllocator&>()).on(std::declval<cudaStream_t>()));

/// The execution policy of the CUDA device: Thrust's CUDA system on the context's stream, without
/// a synchronisation after each algorithm (one that returns a value, a reduction, still waits for
/// it), temporary storage from the context's caching allocator. `tessera_fine_grained` tells the
/// launch helpers (detail/launch.hpp) to give each GPU thread one element.
struct CudaExec : CudaThrustPolicy {
  static constexpr bool tessera_fine_grained = true;
  explicit CudaExec(CudaContext& c)
      : CudaThrustPolicy(thrust::cuda::par_nosync(c.allocator()).on(c.stream())), context(&c) {}
  CudaContext* context;

  /// The fused least-squares gradient's GPU kernel (detail/least_squares.hpp asks for it).
  bool least_squares_gradient(const float* x, const float* w, const float* bias, const float* y, std::size_t n, std::size_t d,
                              float scale, float* scratch, float* out) const {
    return cuda_least_squares_gradient(*this, context->stream(), context->multiprocessors(), x, w, bias, y, n, d, scale,
                                       scratch, out);
  }
};

}  // namespace detail

/// The CUDA device choice, as in `Device<Cuda>`. Every call works on the calling thread's device
/// context (detail::cuda_context(): its stream and cuBLAS handle), in stream order.
struct Cuda {
  /// Device memory. Allocated when a workspace is sized, never inside a training step.
  template <class T>
  using vector = thrust::device_vector<T>;

  /// Shown in messages and progress lines.
  static constexpr const char* name = "Cuda";

  /// The Thrust execution policy every elementwise kernel of this device is launched with.
  static detail::CudaExec exec() { return detail::CudaExec(detail::cuda_context()); }

  /// Copies n floats from device to host memory; waits for them (the value is needed now).
  static void download(const float* device_src, float* host_dst, std::size_t n) {
    detail::CudaContext& c = detail::cuda_context();
    detail::cuda_check(cudaMemcpyAsync(host_dst, device_src, n * sizeof(float), cudaMemcpyDeviceToHost, c.stream()),
                       "cudaMemcpyAsync", "download to the host");
    c.synchronize("download to the host");
  }
  /// Copies n floats from host to device memory in stream order; returns when `host_src` may be
  /// reused.
  static void upload(const float* host_src, float* device_dst, std::size_t n) {
    detail::CudaContext& c = detail::cuda_context();
    detail::cuda_check(cudaMemcpyAsync(device_dst, host_src, n * sizeof(float), cudaMemcpyHostToDevice, c.stream()),
                       "cudaMemcpyAsync", "upload from the host");
    c.synchronize("upload from the host");
  }

  /// Waits for the calling lane's stream.
  static void synchronize() { detail::cuda_context().synchronize("waiting for the GPU"); }
  /// Waits for the calling lane's stream by polling, calling check() (which throws when the lane's
  /// communicator failed) every few polls: a collective whose peer failed never completes, so a
  /// blocking wait could never return.
  template <class Check>
  static void wait(Check&& check) {
    const cudaStream_t stream = detail::cuda_context().stream();
    for (unsigned spin = 0;; ++spin) {
      const cudaError_t e = cudaStreamQuery(stream);
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady) detail::cuda_check(e, "cudaStreamQuery", "waiting for the GPU");
      if (spin % 64 == 0) check();
      if (spin < 1024) std::this_thread::yield();
      else std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  /// One GPU as one lane drives it: its context (stream, cuBLAS handle, allocator), bound on the
  /// lane's thread while the lane works; afterwards the thread is back on its own device.
  struct Lane {
    /// The context of GPU `device`. Throws Error (ErrorKind::runtime) when CUDA cannot set it up.
    explicit Lane(int device) : ctx(std::make_unique<detail::CudaContext>(device)) {}
    /// The stream, cuBLAS handle and allocator.
    std::unique_ptr<detail::CudaContext> ctx;
    /// Makes this context current on the calling thread until the result is destroyed.
    [[nodiscard]] detail::BindCuda bind() { return detail::BindCuda(*ctx); }
    /// cudaMalloc calls of Thrust's temporary storage so far: constant in a steady state.
    [[nodiscard]] std::size_t allocations() const noexcept { return ctx->allocator().device_allocations(); }
  };

  /// C (m x n) = alpha * op(A) * op(B) + beta * C, all row-major as on the Cpu. cuBLAS is
  /// column-major: a row-major C is a column-major C^T = op(B)^T op(A)^T, so the operands swap.
  static void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                   std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
    if (m == 0 || n == 0) return;
    detail::cublas_check(cublasSgemm(detail::cuda_context().blas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                     ta ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                                     static_cast<int>(k), &alpha, b, static_cast<int>(ldb), a, static_cast<int>(lda),
                                     &beta, c, static_cast<int>(ldc)),
                         "cublasSgemm", "matrix product");
  }
  /// y = alpha * op(A) * x + beta * y, A row-major m x n (column-major n x m with leading dimension
  /// lda, so the transposition flips).
  static void gemv(bool trans, std::size_t m, std::size_t n, float alpha, const float* a, std::size_t lda,
                   const float* x, float beta, float* y) {
    detail::cublas_check(cublasSgemv(detail::cuda_context().blas(), trans ? CUBLAS_OP_N : CUBLAS_OP_T,
                                     static_cast<int>(n), static_cast<int>(m), &alpha, a, static_cast<int>(lda), x, 1,
                                     &beta, y, 1),
                         "cublasSgemv", "matrix-vector product");
  }
};

static_assert(DeviceChoice<Cuda>);

}  // namespace tessera
