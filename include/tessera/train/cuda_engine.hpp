// tessera/train/cuda_engine.hpp - data-parallel training on GPUs (Device<Cuda>): one lane per GPU,
// each driven by its own thread, with parameters, gradients, optimizer state and batches in device
// memory. Needs nvcc (component `cuda`).
//
// Every step, the global batch (GPUs x batch_size samples, in the epoch's order) is cut into one
// contiguous share per GPU. A lane copies its share from pinned host memory on its copy stream,
// computes the gradient (scaled by 1 / the global batch) on its compute stream, sums it over every
// GPU through its group (NCCL, in buckets that start while the backward pass goes on, on its
// communication stream), and applies the optimizer update on the GPU. All lanes hold the same
// parameters after every step. With Load<Prefetch> the next step's share is gathered and its copy
// issued while the current step's backward pass and update run.
//
// Host synchronisation inside a step: only where a value is needed on the host - the step's loss
// (the loss kernel's reduction, and with several GPUs its sum over them), which the divergence
// check reads. Workspaces are sized before the first step; Thrust's temporary storage comes from
// a caching allocator, so steady-state steps allocate no device memory.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tessera/core/checked.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/device/cuda/device.hpp"
#include "tessera/model/network.hpp"
#include "tessera/optim/update.hpp"
#include "tessera/reduce/thread_team.hpp"
#include "tessera/train/data_parallel.hpp"
#include "tessera/train/gradient_buckets.hpp"
#include "tessera/train/progress.hpp"

namespace tessera::detail {

/// The GPUs that train together: this process drives `lanes()` of them; `world()` counts those of
/// every process. Collectives are issued on a stream and return at once (stream order); every lane
/// issues the same collectives in the same order.
class GpuGroup {
 public:
  virtual ~GpuGroup() = default;
  [[nodiscard]] virtual std::size_t lanes() const = 0;
  [[nodiscard]] virtual int device(std::size_t lane) const = 0;
  [[nodiscard]] virtual std::size_t world() const = 0;
  [[nodiscard]] virtual std::size_t global_lane(std::size_t lane) const = 0;
  [[nodiscard]] virtual std::string describe() const = 0;
  /// Whether the engine issues the group's collectives: only with several GPUs by default. An NCCL
  /// group issues them with one rank too (a sum is then the identity), so that one GPU runs the
  /// bucketed gradient sum, its streams and events, and the loss sum the way several GPUs do.
  [[nodiscard]] virtual bool collective() const { return world() > 1; }
  /// In place: the sum over every GPU of the group.
  virtual void sum(std::size_t lane, float* p, std::size_t n, cudaStream_t s, const char* what) = 0;
  virtual void sum(std::size_t lane, double* p, std::size_t n, cudaStream_t s, const char* what) = 0;
  /// In place: the maximum over every GPU of the group.
  virtual void max(std::size_t lane, double* p, std::size_t n, cudaStream_t s, const char* what) = 0;
  /// From global lane 0 to every GPU.
  virtual void broadcast(std::size_t lane, float* p, std::size_t n, cudaStream_t s, const char* what) = 0;
  /// Called while a lane waits for its collectives: throws when they can no longer complete (NCCL
  /// reports an asynchronous error; one process per GPU: another process failed).
  virtual void check(std::size_t lane, const char* what) {
    (void)lane;
    (void)what;
  }
  /// After a lane failed, once no lane of this process issues or waits for collectives any more:
  /// ends the collectives still pending on the GPUs (NCCL: ncclCommAbort), so that nothing waits
  /// for the failed lane, and tells the other processes. `why`: the failure. The group is not used
  /// again.
  virtual void abort(const std::string& why) noexcept { (void)why; }
  /// Seconds a lane may wait for its collectives before it gives up (0: no limit). One process
  /// per GPU: the MPI time-out, so that a stuck peer process ends the job as on the CPU.
  [[nodiscard]] virtual double wait_limit() const { return 0.0; }
};

/// One GPU: the calling thread's current device. Nothing to sum.
class OneGpu final : public GpuGroup {
 public:
  OneGpu() { cuda_check(cudaGetDevice(&device_), "cudaGetDevice", "choosing the GPU to train on"); }
  [[nodiscard]] std::size_t lanes() const override { return 1; }
  [[nodiscard]] int device(std::size_t) const override { return device_; }
  [[nodiscard]] std::size_t world() const override { return 1; }
  [[nodiscard]] std::size_t global_lane(std::size_t) const override { return 0; }
  [[nodiscard]] std::string describe() const override { return "one GPU (device " + std::to_string(device_) + ")"; }
  void sum(std::size_t, float*, std::size_t, cudaStream_t, const char*) override {}
  void sum(std::size_t, double*, std::size_t, cudaStream_t, const char*) override {}
  void max(std::size_t, double*, std::size_t, cudaStream_t, const char*) override {}
  void broadcast(std::size_t, float*, std::size_t, cudaStream_t, const char*) override {}

 private:
  int device_ = 0;
};

struct CudaPlan {
  std::size_t batch = 32;         ///< samples per GPU per step
  std::size_t micro_batches = 1;  ///< forward/backward passes per GPU per step
  bool prefetch = false;          ///< Load<Prefetch>: the next share is copied during this step
  bool overlap = true;            ///< sum gradient buckets during the backward pass
  std::size_t bucket_floats = std::size_t{1} << 20;
};

/// A 52-bit FNV-1a hash of the training setup (exact in a double), for the agreement check.
inline double setup_hash(const std::string& s) {
  return static_cast<double>(fnv1a(s.data(), s.size()) >> 12);
}

class CudaEngine {
 public:
  CudaEngine(const Architecture& arch, float weight_decay, const optim::Optimizer& opt, std::span<const float> init,
             CudaPlan plan, std::size_t total_epochs, GpuGroup& group, std::size_t cols, std::size_t target_dim,
             const std::string& signature)
      : arch_(arch), wd_(weight_decay), opt_(opt), plan_(plan), epochs_(total_epochs), group_(group),
        team_(group.lanes()), p_(init.size()), cols_(cols), tdim_(target_dim),
        buckets_(plan_gradient_buckets(arch, plan.overlap ? plan.bucket_floats : init.size())) {
    lanes_.resize(group.lanes());
    try {
      run_lanes([&](std::size_t w) { setup_lane(w, init, signature); });
    } catch (...) {
      release_lanes();  // the destructor does not run for a constructor that throws
      throw;
    }
  }

  CudaEngine(const CudaEngine&) = delete;
  CudaEngine& operator=(const CudaEngine&) = delete;
  ~CudaEngine() { release_lanes(); }

  [[nodiscard]] std::size_t global_batch() const noexcept { return group_.world() * plan_.batch; }
  [[nodiscard]] std::size_t steps_per_epoch(std::size_t n) const { return (n + global_batch() - 1) / global_batch(); }

  /// One epoch over `d` in `order` (empty: the data's own order).
  EpochResult epoch(const data::Dataset& d, const std::vector<std::size_t>& order, std::size_t epoch,
                    ProgressLine& progress) {
    const std::size_t steps = steps_per_epoch(d.rows());
    std::vector<EpochResult> per(lanes_.size());
    run_lanes([&](std::size_t w) { per[w] = lane_epoch(w, d, order, epoch, steps, progress); });
    return per[0];  // every lane holds the global loss
  }

  /// The trained parameters (lane 0's; every lane holds the same).
  [[nodiscard]] std::vector<float> parameters() {
    Lane& l = *lanes_[0];
    BindCuda bind(*l.ctx);
    std::vector<float> host(p_);
    Cuda::download(raw(l.params), host.data(), p_);
    return host;
  }

  /// cudaMalloc calls made so far by the lanes' temporary-storage allocators (constant once the
  /// first step has run: steady-state steps allocate nothing).
  [[nodiscard]] std::size_t device_allocations() const {
    std::size_t a = 0;
    for (const auto& l : lanes_) a += l->ctx->allocator().device_allocations();
    return a;
  }

 private:
  using clock = std::chrono::steady_clock;
  static double since(clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); }
  static float* raw(Cuda::vector<float>& v) { return thrust::raw_pointer_cast(v.data()); }

  struct Lane {
    std::unique_ptr<CudaContext> ctx;
    cudaStream_t copy = nullptr, comm = nullptr;
    cudaEvent_t copied[2] = {}, consumed[2] = {}, ready = nullptr, summed = nullptr;
    Cuda::vector<float> params, grads, xs[2], ys[2];
    Cuda::vector<double> loss;
    float* pinned_x[2] = {};
    float* pinned_y[2] = {};
    double* pinned_loss = nullptr;
    std::unique_ptr<optim::State<Cuda>> state;
    std::unique_ptr<Network<Cuda>> net;
    std::size_t next_bucket = 0;
    std::uint64_t steps = 0;
  };

  /// Runs body(lane) on every lane. A lane that fails raises the team's flag; a lane waiting for
  /// its collectives sees it (wait_stream) and returns, so every thread ends; then the group aborts
  /// what is still pending on the GPUs and the first failure is rethrown.
  template <class Body>
  void run_lanes(Body&& body) {
    try {
      team_.run(std::forward<Body>(body));
    } catch (const CollectiveError&) {
      throw;  // raised by every lane at the same point, with nothing pending: nobody waits
    } catch (const std::exception& e) {
      group_.abort(e.what());
      throw;
    } catch (...) {
      group_.abort("an exception that is not a std::exception");
      throw;
    }
  }

  /// Waits until `stream` has done its work, polling instead of blocking inside CUDA: returns
  /// false when another lane failed (the caller returns at once), throws when CUDA or the group
  /// reports an error. A collective whose peer has failed never completes, so a blocking wait here
  /// would never return.
  bool wait_stream(std::size_t w, cudaStream_t stream, const char* what) {
    const auto start = clock::now();
    const double limit = group_.wait_limit();
    for (unsigned spin = 0;; ++spin) {
      const cudaError_t e = cudaStreamQuery(stream);
      if (e == cudaSuccess) return true;
      if (e != cudaErrorNotReady) cuda_check(e, "cudaStreamQuery", what);
      if (team_.failed()) return false;
      if (spin % 64 == 0) {
        group_.check(w, what);
        if (limit > 0.0 && since(start) > limit)
          throw Error(ErrorKind::runtime, "Trainer::fit: GPU " + std::to_string(group_.global_lane(w)) + " of " +
                                              group_.describe() + " waited " + std::to_string(since(start)) + " s in " +
                                              what + " without every GPU arriving (limit " + std::to_string(limit) +
                                              " s, TESSERA_MPI_TIMEOUT)");
      }
      if (spin < 1024)
        std::this_thread::yield();
      else
        std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  void setup_lane(std::size_t w, std::span<const float> init, const std::string& signature) {
    lanes_[w] = std::make_unique<Lane>();
    Lane& l = *lanes_[w];
    l.ctx = std::make_unique<CudaContext>(group_.device(w));
    BindCuda bind(*l.ctx);
    const char* what = "training set-up";
    cuda_check(cudaStreamCreate(&l.copy), "cudaStreamCreate", "creating the copy stream");
    cuda_check(cudaStreamCreate(&l.comm), "cudaStreamCreate", "creating the communication stream");
    for (int k = 0; k < 2; ++k) {
      cuda_check(cudaEventCreateWithFlags(&l.copied[k], cudaEventDisableTiming), "cudaEventCreate", what);
      cuda_check(cudaEventCreateWithFlags(&l.consumed[k], cudaEventDisableTiming), "cudaEventCreate", what);
    }
    cuda_check(cudaEventCreateWithFlags(&l.ready, cudaEventDisableTiming), "cudaEventCreate", what);
    cuda_check(cudaEventCreateWithFlags(&l.summed, cudaEventDisableTiming), "cudaEventCreate", what);
    const std::size_t rows = plan_.batch;  // a GPU's share of a step is at most one batch
    for (int k = 0; k < 2; ++k) {
      l.xs[k].resize(rows * cols_);
      l.ys[k].resize(rows * tdim_);
      cuda_check(cudaMallocHost(reinterpret_cast<void**>(&l.pinned_x[k]), rows * cols_ * sizeof(float)), "cudaMallocHost",
                 "pinned batch buffer");
      cuda_check(cudaMallocHost(reinterpret_cast<void**>(&l.pinned_y[k]), rows * tdim_ * sizeof(float)), "cudaMallocHost",
                 "pinned batch buffer");
    }
    cuda_check(cudaMallocHost(reinterpret_cast<void**>(&l.pinned_loss), 2 * sizeof(double)), "cudaMallocHost",
               "pinned loss");
    l.loss.resize(2);
    l.params.resize(p_);
    l.grads.resize(p_);
    Cuda::upload(init.data(), raw(l.params), p_);
    l.state = std::make_unique<optim::State<Cuda>>(opt_, p_);
    l.net = std::make_unique<Network<Cuda>>(arch_, (plan_.batch + plan_.micro_batches - 1) / plan_.micro_batches);
    if (group_.collective()) {
      // every GPU must train the same thing: compare a hash of the set-up (max of h and of -h)
      const double h = setup_hash(signature);
      l.pinned_loss[0] = h;
      l.pinned_loss[1] = -h;
      if (!exchange(l, w, 2, "training set-up agreement",
                    [&](double* p) { group_.max(w, p, 2, l.comm, "training set-up agreement"); }))
        return;
      if (l.pinned_loss[0] != h || -l.pinned_loss[1] != h)
        throw CollectiveError(ErrorKind::invalid_argument,
                    "Trainer::fit: the GPUs (" + group_.describe() + ") do not all train the same set-up; GPU " +
                        std::to_string(group_.global_lane(w)) + " has: " + signature);
      group_.broadcast(w, raw(l.params), p_, l.comm, "initial parameters");
      if (!wait_stream(w, l.comm, "initial parameters")) return;
    }
    l.ctx->synchronize(what);
  }

  /// Frees every lane, each with its own GPU current: its device vectors (Thrust frees them on the
  /// current device), streams, events and pinned buffers.
  void release_lanes() noexcept {
    int current = 0;
    const bool known = cudaGetDevice(&current) == cudaSuccess;
    for (auto& l : lanes_) {
      if (!l) continue;
      release_lane(*l);
      l.reset();
    }
    if (known) (void)cudaSetDevice(current);  // the caller stays on its own GPU
  }

  static void release_lane(Lane& l) {
    if (!l.ctx) return;
    (void)cudaSetDevice(l.ctx->device());
    (void)cudaDeviceSynchronize();
    for (int k = 0; k < 2; ++k) {
      if (l.pinned_x[k]) (void)cudaFreeHost(l.pinned_x[k]);
      if (l.pinned_y[k]) (void)cudaFreeHost(l.pinned_y[k]);
      if (l.copied[k]) (void)cudaEventDestroy(l.copied[k]);
      if (l.consumed[k]) (void)cudaEventDestroy(l.consumed[k]);
    }
    if (l.pinned_loss) (void)cudaFreeHost(l.pinned_loss);
    if (l.ready) (void)cudaEventDestroy(l.ready);
    if (l.summed) (void)cudaEventDestroy(l.summed);
    if (l.copy) (void)cudaStreamDestroy(l.copy);
    if (l.comm) (void)cudaStreamDestroy(l.comm);
  }

  /// Runs a collective on n doubles held in the lane's pinned buffer: up to the device, the
  /// collective on the communication stream, back, and waits (the value is needed on the host).
  /// False when another lane failed meanwhile (see wait_stream).
  template <class Collective>
  [[nodiscard]] bool exchange(Lane& l, std::size_t w, std::size_t n, const char* what, Collective&& collective) {
    double* dev = thrust::raw_pointer_cast(l.loss.data());
    cuda_check(cudaMemcpyAsync(dev, l.pinned_loss, n * sizeof(double), cudaMemcpyHostToDevice, l.comm), "cudaMemcpyAsync",
               "loss to the device");
    collective(dev);
    cuda_check(cudaMemcpyAsync(l.pinned_loss, dev, n * sizeof(double), cudaMemcpyDeviceToHost, l.comm), "cudaMemcpyAsync",
               "loss to the host");
    return wait_stream(w, l.comm, what);
  }

  /// This GPU's positions of step s: its share of the global batch.
  [[nodiscard]] Range lane_rows(std::size_t w, std::size_t s, std::size_t n) const {
    const std::size_t first = s * global_batch(), rows = std::min(global_batch(), n - first);
    const Range r = share(rows, group_.world(), group_.global_lane(w));
    return {first + r.lo, first + r.hi};
  }

  /// Gathers lane w's share of step s into pinned memory and issues its copy to the device on the
  /// copy stream, once step s - 2 is done with that device buffer.
  void stage(Lane& l, std::size_t w, const data::Dataset& d, const std::vector<std::size_t>& order, std::size_t s) {
    const int k = static_cast<int>(s % 2);
    const Range r = lane_rows(w, s, d.rows());
    cuda_check(cudaEventSynchronize(l.copied[k]), "cudaEventSynchronize", "reusing a pinned batch buffer");
    for (std::size_t i = r.lo; i < r.hi; ++i) {
      const std::size_t row = order.empty() ? i : order[i];
      std::copy(d.features.row(row), d.features.row(row) + cols_, l.pinned_x[k] + (i - r.lo) * cols_);
      std::copy(d.targets.data() + row * tdim_, d.targets.data() + (row + 1) * tdim_, l.pinned_y[k] + (i - r.lo) * tdim_);
    }
    const std::size_t rows = r.hi - r.lo;
    cuda_check(cudaStreamWaitEvent(l.copy, l.consumed[k], 0), "cudaStreamWaitEvent", "batch copy");
    if (rows > 0) {
      cuda_check(cudaMemcpyAsync(raw(l.xs[k]), l.pinned_x[k], rows * cols_ * sizeof(float), cudaMemcpyHostToDevice, l.copy),
                 "cudaMemcpyAsync", "batch copy to the device");
      cuda_check(cudaMemcpyAsync(raw(l.ys[k]), l.pinned_y[k], rows * tdim_ * sizeof(float), cudaMemcpyHostToDevice, l.copy),
                 "cudaMemcpyAsync", "batch copy to the device");
    }
    cuda_check(cudaEventRecord(l.copied[k], l.copy), "cudaEventRecord", "batch copy");
  }

  /// Starts the sum of every bucket whose layers are all final once layer `layer` is (all of them
  /// when layer is 0), on the communication stream after the compute stream's work so far.
  void start_buckets(Lane& l, std::size_t w, std::size_t layer) {
    if (!group_.collective()) return;
    bool recorded = false;
    while (l.next_bucket < buckets_.size() && buckets_[l.next_bucket].low_layer >= layer) {
      if (!recorded) {
        cuda_check(cudaEventRecord(l.ready, l.ctx->stream()), "cudaEventRecord", "gradient bucket");
        cuda_check(cudaStreamWaitEvent(l.comm, l.ready, 0), "cudaStreamWaitEvent", "gradient bucket");
        recorded = true;
      }
      const GradientBucket& b = buckets_[l.next_bucket++];
      group_.sum(w, raw(l.grads) + b.lo, b.hi - b.lo, l.comm, "gradient bucket");
    }
  }

  /// Gradient of this lane's rows of the batch in device slot k into grads, in micro-batch passes;
  /// returns the lane's loss sum.
  double gradient(Lane& l, std::size_t w, int k, std::size_t rows, float scale, bool decay) {
    float* g = raw(l.grads);
    if (rows == 0) {
      fill(Cuda::exec(), g, p_, 0.0f);
      return 0.0;
    }
    double loss = 0.0;
    bool wrote = false;
    const float* x = raw(l.xs[k]);
    const float* y = raw(l.ys[k]);
    const std::size_t parts = std::min(plan_.micro_batches, rows);
    for (std::size_t j = 0; j < parts; ++j) {
      const Range m = share(rows, parts, j);
      const float wd = decay && !wrote ? wd_ : 0.0f;
      const float* xm = x + m.lo * cols_;
      const float* ym = y + m.lo * tdim_;
      if (j + 1 == parts && plan_.overlap)
        loss += l.net->forward_backward(raw(l.params), xm, ym, m.hi - m.lo, g, scale, wd, wrote,
                                        [&](std::size_t layer) { start_buckets(l, w, layer); });
      else
        loss += l.net->forward_backward(raw(l.params), xm, ym, m.hi - m.lo, g, scale, wd, wrote);
      wrote = true;
    }
    return loss;
  }

  EpochResult lane_epoch(std::size_t w, const data::Dataset& d, const std::vector<std::size_t>& order, std::size_t epoch,
                         std::size_t steps, ProgressLine& progress) {
    Lane& l = *lanes_[w];
    BindCuda bind(*l.ctx);
    const std::size_t n = d.rows();
    const bool many = group_.collective();
    EpochResult res;
    if (steps > 0) stage(l, w, d, order, 0);
    for (std::size_t s = 0; s < steps; ++s) {
      const auto t0 = clock::now();
      const int k = static_cast<int>(s % 2);
      const std::size_t step_rows = std::min(global_batch(), n - s * global_batch());
      const Range mine = lane_rows(w, s, n);
      const double lr = opt_.learning_rate *
                        opt_.schedule.factor(static_cast<double>(epoch) + static_cast<double>(s) / static_cast<double>(steps),
                                             static_cast<double>(epochs_));
      res.learning_rate = lr;
      const auto scale = static_cast<float>(1.0 / loss_normaliser(arch_.loss, step_rows, arch_.output_dim()));
      cuda_check(cudaStreamWaitEvent(l.ctx->stream(), l.copied[k], 0), "cudaStreamWaitEvent", "batch copy");
      l.next_bucket = 0;
      const bool decay = group_.global_lane(w) == 0;  // the L2 term enters the sum once
      double loss = gradient(l, w, k, mine.hi - mine.lo, scale, decay);
      start_buckets(l, w, 0);  // the buckets the backward pass did not start
      // the next share's copy overlaps this step's backward pass and update
      if (plan_.prefetch && s + 1 < steps) stage(l, w, d, order, s + 1);
      if (many) {  // the update waits for every bucket's sum
        cuda_check(cudaEventRecord(l.summed, l.comm), "cudaEventRecord", "gradient sum");
        cuda_check(cudaStreamWaitEvent(l.ctx->stream(), l.summed, 0), "cudaStreamWaitEvent", "gradient sum");
      }
      // The update and the next share's copy are enqueued before the host waits for the step's
      // loss, so the GPU works while the loss is summed; a non-finite loss still stops the fit
      // below, and the Model is only written at the end, so it is left unchanged.
      l.state->update(Cuda::exec(), raw(l.params), raw(l.grads), 0, p_, lr, ++l.steps);
      cuda_check(cudaEventRecord(l.consumed[k], l.ctx->stream()), "cudaEventRecord", "step end");
      if (!plan_.prefetch && s + 1 < steps) stage(l, w, d, order, s + 1);
      double comm = 0.0;
      if (many) {
        const auto c0 = clock::now();
        l.pinned_loss[0] = loss;
        if (!exchange(l, w, 1, "the step's loss over the GPUs", [&](double* p) { group_.sum(w, p, 1, l.comm, "step loss"); }))
          return res;
        loss = l.pinned_loss[0];
        comm = since(c0);
      }
      check_finite(loss, epoch, s);
      res.loss_sum += loss;
      res.communication_seconds += comm;
      res.compute_seconds += since(t0) - comm;
      if (w == 0)
        progress.step(epoch, s, res.loss_sum / loss_normaliser(arch_.loss, std::min(n, (s + 1) * global_batch()),
                                                               arch_.output_dim()));
    }
    l.ctx->synchronize("end of epoch");
    return res;
  }

  void check_finite(double loss, std::size_t epoch, std::size_t step) const {
    if (!std::isfinite(loss))  // the global loss: every lane throws at the same step
      throw CollectiveError(ErrorKind::runtime, "Trainer::fit: the loss became " + std::to_string(loss) + " at epoch " +
                                          std::to_string(epoch + 1) + ", step " + std::to_string(step + 1) + " on " +
                                          group_.describe() + "; the model is left unchanged. Lower the learning rate (" +
                                          opt_.describe() + ") or standardise the features");
  }

  Architecture arch_;
  float wd_;
  optim::Optimizer opt_;
  CudaPlan plan_;
  std::size_t epochs_;
  GpuGroup& group_;
  ThreadTeam team_;
  std::size_t p_, cols_, tdim_;
  std::vector<GradientBucket> buckets_;
  std::vector<std::unique_ptr<Lane>> lanes_;
};

}  // namespace tessera::detail
