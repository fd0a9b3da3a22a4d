// tessera/device/cuda/context.hpp - what the CUDA device works with on one GPU: a stream, a cuBLAS
// handle bound to it, and a caching allocator for Thrust's temporary storage, so that a
// steady-state training step allocates no device memory. Needs the CMake component `cuda`.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "tessera/device/cuda/check.hpp"

namespace tessera::detail {

/// Device memory handed to Thrust algorithms for their temporary storage. Freed blocks are kept and
/// handed out again (best fit), so that after the first step no call reaches cudaMalloc. Every
/// block is used on one stream only (its context's), so reuse is stream-ordered and safe without
/// synchronisation.
class CachingAllocator {
 public:
  using value_type = char;

  CachingAllocator() = default;
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;
  ~CachingAllocator() {
    for (auto& [p, bytes] : used_) (void)cudaFree(p);
    for (auto& [bytes, p] : free_) (void)cudaFree(p);
  }

  char* allocate(std::ptrdiff_t n) {
    const std::size_t bytes = round_up(static_cast<std::size_t>(n < 1 ? 1 : n));
    auto it = free_.lower_bound(bytes);
    if (it != free_.end() && it->first <= 2 * bytes) {  // best fit, wasting at most half
      char* p = it->second;
      used_.emplace(p, it->first);
      free_.erase(it);
      return p;
    }
    void* p = nullptr;
    cuda_check(cudaMalloc(&p, bytes), "cudaMalloc", "temporary storage of a Thrust algorithm");
    ++device_allocations_;
    used_.emplace(static_cast<char*>(p), bytes);
    return static_cast<char*>(p);
  }

  void deallocate(char* p, std::size_t) {
    auto it = used_.find(p);
    if (it == used_.end()) return;
    free_.emplace(it->second, p);
    used_.erase(it);
  }

  /// How many times this allocator called cudaMalloc: constant in a steady state.
  [[nodiscard]] std::size_t device_allocations() const noexcept { return device_allocations_; }

 private:
  static std::size_t round_up(std::size_t b) { return (b + 255) / 256 * 256; }
  std::multimap<std::size_t, char*> free_;
  std::unordered_map<char*, std::size_t> used_;
  std::size_t device_allocations_ = 0;
};

/// One GPU as one thread drives it: the stream every kernel, copy and cuBLAS call of the device is
/// issued on, the cuBLAS handle and the allocator. Created on the GPU it is for.
class CudaContext {
 public:
  explicit CudaContext(int device) : device_(device) {
    cuda_check(cudaSetDevice(device), "cudaSetDevice", "creating the device context");
    cuda_check(cudaStreamCreate(&stream_), "cudaStreamCreate", "creating the compute stream");
    cublas_check(cublasCreate(&blas_), "cublasCreate", "creating the cuBLAS handle");
    cublas_check(cublasSetStream(blas_, stream_), "cublasSetStream", "binding cuBLAS to the compute stream");
    cuda_check(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute",
               "reading the multiprocessor count");
  }
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;
  ~CudaContext() {
    (void)cudaSetDevice(device_);
    (void)cudaStreamSynchronize(stream_);
    cublasDestroy(blas_);
    (void)cudaStreamDestroy(stream_);
  }

  [[nodiscard]] int device() const noexcept { return device_; }
  [[nodiscard]] cudaStream_t stream() const noexcept { return stream_; }
  [[nodiscard]] cublasHandle_t blas() const noexcept { return blas_; }
  [[nodiscard]] int multiprocessors() const noexcept { return sms_; }
  CachingAllocator& allocator() noexcept { return alloc_; }
  [[nodiscard]] const CachingAllocator& allocator() const noexcept { return alloc_; }

  /// Waits for everything issued on the stream (the one synchronisation a caller asks for).
  void synchronize(const char* what) const { cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize", what); }

 private:
  int device_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  int sms_ = 1;
  CachingAllocator alloc_;
};

/// The context this thread has bound (BindCuda), or null.
inline CudaContext*& bound_cuda_context() noexcept {
  thread_local CudaContext* bound = nullptr;
  return bound;
}

/// The context of the calling thread: the bound one, or else this thread's own context for its
/// current CUDA device, created on first use.
inline CudaContext& cuda_context() {
  if (CudaContext* c = bound_cuda_context()) return *c;
  thread_local std::vector<std::unique_ptr<CudaContext>> own;
  int device = 0;
  cuda_check(cudaGetDevice(&device), "cudaGetDevice", "choosing the device context");
  const auto d = static_cast<std::size_t>(device);
  if (own.size() <= d) own.resize(d + 1);
  if (!own[d]) own[d] = std::make_unique<CudaContext>(device);
  return *own[d];
}

/// While alive, the calling thread works on `c`'s GPU with `c`'s stream (a training engine binds
/// each GPU's context on the thread that drives it). Afterwards the thread is back on the context
/// and the current device it had, so a caller's later CUDA work stays on its own GPU.
class BindCuda {
 public:
  explicit BindCuda(CudaContext& c) : previous_(bound_cuda_context()) {
    cuda_check(cudaGetDevice(&previous_device_), "cudaGetDevice", "binding a device context");
    cuda_check(cudaSetDevice(c.device()), "cudaSetDevice", "binding a device context");
    bound_cuda_context() = &c;
  }
  ~BindCuda() {
    if (!bound_) return;
    bound_cuda_context() = previous_;
    (void)cudaSetDevice(previous_device_);
  }
  BindCuda(BindCuda&& o) noexcept : previous_(o.previous_), previous_device_(o.previous_device_), bound_(o.bound_) {
    o.bound_ = false;
  }
  BindCuda(const BindCuda&) = delete;
  BindCuda& operator=(const BindCuda&) = delete;
  BindCuda& operator=(BindCuda&&) = delete;

 private:
  CudaContext* previous_;
  int previous_device_ = 0;
  bool bound_ = true;
};

}  // namespace tessera::detail
