// tessera/device/cuda/feed.hpp - where a GPU lane's rows of a step come from (the data-parallel
// engine on Device<Cuda>): the lane's share of the step is gathered into pinned host memory and
// copied to the device on a copy stream of its own, double-buffered, so that with Load<Prefetch>
// the next step's copy overlaps this step's backward pass and update. Needs nvcc.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "tessera/core/range.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/device/cuda/device.hpp"
#include "tessera/engine/feed.hpp"

namespace tessera::detail {

template <>
class Feed<Cuda> {
 public:
  Feed(std::size_t lanes, std::size_t max_rows) : rows_(max_rows), lanes_(lanes) {}
  Feed(const Feed&) = delete;
  Feed& operator=(const Feed&) = delete;
  ~Feed() {
    for (auto& l : lanes_) release(l);
  }

  void begin(const data::Dataset& d, const std::vector<std::size_t>& order, Range steps, bool prefetch,
             std::function<Range(std::size_t)>, std::function<Range(std::size_t, std::size_t)> lane) {
    d_ = &d;
    order_ = &order;
    steps_ = steps.hi;
    prefetch_ = prefetch;
    lane_ = std::move(lane);
    for (auto& l : lanes_) l.staged = -1;
  }
  void abort() {}
  void end() {}

  /// Lane w (on its own thread, its GPU bound) starts step s: its rows are copied (or were, by the
  /// step before), and the compute stream waits for the copy.
  void prepare(std::size_t w, std::size_t s) {
    Lane& l = lanes_[w];
    if (!l.made) make(l);
    if (l.staged != static_cast<long>(s)) stage(l, w, s);
    const int k = static_cast<int>(s % 2);
    cuda_check(cudaStreamWaitEvent(cuda_context().stream(), l.copied[k], 0), "cudaStreamWaitEvent", "batch copy");
    l.step = s;
    l.first = lane_(w, s).lo;
  }
  /// Device pointers to positions [lo, hi) of the order, within lane w's share of its step.
  std::pair<const float*, const float*> rows(std::size_t w, std::size_t lo, std::size_t) {
    Lane& l = lanes_[w];
    const int k = static_cast<int>(l.step % 2);
    return {thrust::raw_pointer_cast(l.xs[k].data()) + (lo - l.first) * d_->cols(),
            thrust::raw_pointer_cast(l.ys[k].data()) + (lo - l.first) * d_->target_dim};
  }
  /// With Load<Prefetch> the next share's copy starts now, overlapping the backward pass and update.
  void after_gradient(std::size_t w, std::size_t s) {
    if (prefetch_ && s + 1 < steps_) stage(lanes_[w], w, s + 1);
  }
  /// The step's work is enqueued: its device slot may be refilled once the stream reaches here.
  void after_update(std::size_t w, std::size_t s) {
    Lane& l = lanes_[w];
    cuda_check(cudaEventRecord(l.consumed[s % 2], cuda_context().stream()), "cudaEventRecord", "step end");
    if (!prefetch_ && s + 1 < steps_) stage(l, w, s + 1);
  }

 private:
  struct Lane {
    bool made = false;
    cudaStream_t copy = nullptr;
    cudaEvent_t copied[2] = {nullptr, nullptr}, consumed[2] = {nullptr, nullptr};
    float* pinned_x[2] = {nullptr, nullptr};
    float* pinned_y[2] = {nullptr, nullptr};
    Cuda::vector<float> xs[2], ys[2];
    long staged = -1;  ///< the last step whose copy was issued
    std::size_t step = 0, first = 0;
    int device = 0;
  };

  void make(Lane& l) {
    const std::size_t cols = d_->cols(), tdim = d_->target_dim;
    cuda_check(cudaGetDevice(&l.device), "cudaGetDevice", "batch buffers");
    cuda_check(cudaStreamCreate(&l.copy), "cudaStreamCreate", "creating the copy stream");
    for (int k = 0; k < 2; ++k) {
      cuda_check(cudaEventCreateWithFlags(&l.copied[k], cudaEventDisableTiming), "cudaEventCreate", "batch copy");
      cuda_check(cudaEventCreateWithFlags(&l.consumed[k], cudaEventDisableTiming), "cudaEventCreate", "batch copy");
      l.xs[k].resize(rows_ * cols);
      l.ys[k].resize(rows_ * tdim);
      cuda_check(cudaMallocHost(reinterpret_cast<void**>(&l.pinned_x[k]), rows_ * cols * sizeof(float)), "cudaMallocHost",
                 "pinned batch buffer");
      cuda_check(cudaMallocHost(reinterpret_cast<void**>(&l.pinned_y[k]), rows_ * tdim * sizeof(float)), "cudaMallocHost",
                 "pinned batch buffer");
    }
    l.made = true;
  }

  /// Gathers lane w's share of step s into pinned memory and issues its copy to the device on the
  /// copy stream, once step s - 2 is done with that device buffer.
  void stage(Lane& l, std::size_t w, std::size_t s) {
    const int k = static_cast<int>(s % 2);
    const Range r = lane_(w, s);
    const std::size_t cols = d_->cols(), tdim = d_->target_dim;
    cuda_check(cudaEventSynchronize(l.copied[k]), "cudaEventSynchronize", "reusing a pinned batch buffer");
    for (std::size_t i = r.lo; i < r.hi; ++i) {
      const std::size_t row = order_->empty() ? i : (*order_)[i];
      std::copy(d_->features.row(row), d_->features.row(row) + cols, l.pinned_x[k] + (i - r.lo) * cols);
      std::copy(d_->targets.data() + row * tdim, d_->targets.data() + (row + 1) * tdim, l.pinned_y[k] + (i - r.lo) * tdim);
    }
    const std::size_t rows = r.hi - r.lo;
    cuda_check(cudaStreamWaitEvent(l.copy, l.consumed[k], 0), "cudaStreamWaitEvent", "batch copy");
    if (rows > 0) {
      cuda_check(cudaMemcpyAsync(thrust::raw_pointer_cast(l.xs[k].data()), l.pinned_x[k], rows * cols * sizeof(float),
                                 cudaMemcpyHostToDevice, l.copy),
                 "cudaMemcpyAsync", "batch copy to the device");
      cuda_check(cudaMemcpyAsync(thrust::raw_pointer_cast(l.ys[k].data()), l.pinned_y[k], rows * tdim * sizeof(float),
                                 cudaMemcpyHostToDevice, l.copy),
                 "cudaMemcpyAsync", "batch copy to the device");
    }
    cuda_check(cudaEventRecord(l.copied[k], l.copy), "cudaEventRecord", "batch copy");
    l.staged = static_cast<long>(s);
  }

  static void release(Lane& l) noexcept {
    if (!l.made) return;
    int current = 0;
    const bool known = cudaGetDevice(&current) == cudaSuccess;
    (void)cudaSetDevice(l.device);
    (void)cudaDeviceSynchronize();
    for (int k = 0; k < 2; ++k) {
      if (l.pinned_x[k]) (void)cudaFreeHost(l.pinned_x[k]);
      if (l.pinned_y[k]) (void)cudaFreeHost(l.pinned_y[k]);
      if (l.copied[k]) (void)cudaEventDestroy(l.copied[k]);
      if (l.consumed[k]) (void)cudaEventDestroy(l.consumed[k]);
      l.xs[k].clear();
      l.xs[k].shrink_to_fit();
      l.ys[k].clear();
      l.ys[k].shrink_to_fit();
    }
    if (l.copy) (void)cudaStreamDestroy(l.copy);
    if (known) (void)cudaSetDevice(current);
  }

  const data::Dataset* d_ = nullptr;
  const std::vector<std::size_t>* order_ = nullptr;
  std::size_t steps_ = 0, rows_;
  bool prefetch_ = false;
  std::function<Range(std::size_t, std::size_t)> lane_;
  std::vector<Lane> lanes_;
};

}  // namespace tessera::detail
