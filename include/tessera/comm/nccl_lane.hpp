// tessera/comm/nccl_lane.hpp - GPUs over NCCL as a tessera communicator: NcclLane (one GPU's
// handle: collectives in stream order on the lane's compute stream, through a communication
// stream of its own) and NcclGroup (the GPUs of this process: several of one process, or one per
// MPI rank). Needs the CMake component `nccl` and nvcc.
//
// Stream order: a collective waits (on the GPU) for the work the lane enqueued before it and the
// work enqueued after it waits for the collective; started sums run on the communication stream
// while the compute stream goes on, and finish() makes it wait for them. Host values (a loss)
// travel through a small pinned buffer, and the host waits by polling: NCCL's asynchronous error
// and the other processes' failure notices are checked meanwhile, so no wait outlasts a failed
// peer.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tessera/comm/concepts.hpp"
#include "tessera/comm/nccl_comm.hpp"
#include "tessera/device/cuda/device.hpp"

namespace tessera::comm {

/// What an NCCL group watches while a lane waits, and tells when it fails (one process per GPU:
/// the other processes, over MPI).
struct NcclPeers {
  /// Called while a wait goes on: throws when another process failed.
  std::function<void(const char* what)> watch;
  /// Tells the other processes that this one fails, and why.
  std::function<void(const std::string& why)> tell;
  double limit = 0.0;  ///< seconds a wait may last (0: no limit)
};

/// One GPU's handle on an NCCL communicator. Made and used on the lane's own thread, with its GPU
/// context bound (Device<Cuda>::Lane).
class NcclLane {
 public:
  /// Whether the lanes share one address space: they may then pass one buffer to a collective.
  static constexpr bool shared_memory = false;

  /// A lane on GPU communicator `c`, watching `peers` while it waits.
  NcclLane(const nccl::Communicator& c, const NcclPeers& peers) : c_(&c), peers_(&peers) {}
  NcclLane(const NcclLane&) = delete;
  NcclLane& operator=(const NcclLane&) = delete;
  /// Takes over `o`'s events.
  NcclLane(NcclLane&& o) noexcept
      : c_(o.c_), peers_(o.peers_), comm_(std::exchange(o.comm_, nullptr)), ready_(std::exchange(o.ready_, nullptr)),
        done_(std::exchange(o.done_, nullptr)), host_(std::exchange(o.host_, nullptr)), device_(std::move(o.device_)),
        pending_(o.pending_) {}
  ~NcclLane() {
    if (comm_) (void)cudaStreamDestroy(comm_);
    if (ready_) (void)cudaEventDestroy(ready_);
    if (done_) (void)cudaEventDestroy(done_);
    if (host_) (void)cudaFreeHost(host_);
  }

  /// This lane's rank among every lane of the group, 0 to size() - 1.
  [[nodiscard]] std::size_t rank() const noexcept { return static_cast<std::size_t>(c_->rank()); }
  /// Lanes of the group, those of every process together.
  [[nodiscard]] std::size_t size() const noexcept { return static_cast<std::size_t>(c_->size()); }
  /// This lane's rank among the lanes of its process.
  [[nodiscard]] std::size_t local_rank() const noexcept { return 0; }
  /// Lanes of this process in the group.
  [[nodiscard]] std::size_t local_size() const noexcept { return 1; }

  /// out = scale x the sum over lanes of `in`, n floats (in == out allowed; shared-memory lanes may pass
  /// one `out`).
  void all_reduce(const float* in, float* out, std::size_t n, const char* what = "buffer", float scale = 1.0f) {
    after_compute();
    nccl::check(ncclAllReduce(in, out, n, ncclFloat32, ncclSum, c_->get(), comm_), "ncclAllReduce", c_->rank(),
                c_->size(), c_->device(), what, c_->get());
    before_compute();
    if (scale != 1.0f) detail::for_each_element(Cuda::exec(), n, detail::ScaleInto{out, out, scale, false});
  }
  /// Host doubles (a loss, flags): summed on the GPUs, waited for by polling.
  void all_reduce(double* p, std::size_t n, const char* what = "values") {
    ensure_host(n);
    std::copy(p, p + n, host_);
    after_compute();
    double* dev = thrust::raw_pointer_cast(device_.data());
    detail::cuda_check(cudaMemcpyAsync(dev, host_, n * sizeof(double), cudaMemcpyHostToDevice, comm_), "cudaMemcpyAsync",
                       what);
    nccl::check(ncclAllReduce(dev, dev, n, ncclFloat64, ncclSum, c_->get(), comm_), "ncclAllReduce", c_->rank(), c_->size(),
                c_->device(), what, c_->get());
    detail::cuda_check(cudaMemcpyAsync(host_, dev, n * sizeof(double), cudaMemcpyDeviceToHost, comm_), "cudaMemcpyAsync",
                       what);
    wait_stream(comm_, what);
    std::copy(host_, host_ + n, p);
  }
  /// Rank r's slice of the sum: one reduce per slice, to its owner, in one NCCL group.
  detail::Range reduce_scatter(const float* in, float* out, std::size_t n, const char* what = "buffer") {
    after_compute();
    nccl::check(ncclGroupStart(), "ncclGroupStart", c_->rank(), c_->size(), c_->device(), what, c_->get());
    for (std::size_t r = 0; r < size(); ++r) {
      const detail::Range s = slice(n, size(), r);
      nccl::check(ncclReduce(in + s.lo, out + s.lo, s.hi - s.lo, ncclFloat32, ncclSum, static_cast<int>(r), c_->get(), comm_),
                  "ncclReduce", c_->rank(), c_->size(), c_->device(), what, c_->get());
    }
    nccl::check(ncclGroupEnd(), "ncclGroupEnd", c_->rank(), c_->size(), c_->device(), what, c_->get());
    before_compute();
    return slice(n, size(), rank());
  }
  /// Every rank's slice to every rank: one broadcast per slice, from its owner, in one NCCL group.
  void all_gather(float* p, std::size_t n, const char* what = "buffer") {
    after_compute();
    nccl::check(ncclGroupStart(), "ncclGroupStart", c_->rank(), c_->size(), c_->device(), what, c_->get());
    for (std::size_t r = 0; r < size(); ++r) {
      const detail::Range s = slice(n, size(), r);
      nccl::check(ncclBroadcast(p + s.lo, p + s.lo, s.hi - s.lo, ncclFloat32, static_cast<int>(r), c_->get(), comm_),
                  "ncclBroadcast", c_->rank(), c_->size(), c_->device(), what, c_->get());
    }
    nccl::check(ncclGroupEnd(), "ncclGroupEnd", c_->rank(), c_->size(), c_->device(), what, c_->get());
    before_compute();
  }
  /// Lane `root`'s n floats of `p` to every lane.
  void broadcast(float* p, std::size_t n, std::size_t root, const char* what = "buffer") {
    after_compute();
    c_->broadcast(p, n, static_cast<int>(root), comm_, what);
    before_compute();
  }
  /// Starts the sum of [lo, hi) on the communication stream, after the compute stream's work so
  /// far; the compute stream waits for it at finish().
  void start_all_reduce(const float* in, float* out, std::size_t lo, std::size_t hi, const char* what = "bucket") {
    after_compute();
    nccl::check(ncclAllReduce(in + lo, out + lo, hi - lo, ncclFloat32, ncclSum, c_->get(), comm_), "ncclAllReduce",
                c_->rank(), c_->size(), c_->device(), what, c_->get());
    pending_ = true;
  }
  /// Advances the sums started by start_all_reduce().
  void progress() {}
  /// Completes every sum started by start_all_reduce().
  void finish(const char* = "") {
    if (pending_) before_compute();
    pending_ = false;
  }
  /// Returns once every lane of the group has called it (`what` names the wait in messages); throws when
  /// the group failed.
  void barrier(const char* what = "barrier") {
    double zero = 0.0;
    all_reduce(&zero, 1, what);
  }
  /// Returns once every lane of this process has called it.
  void local_barrier(const char* = "") {}
  /// Throws when NCCL reports an asynchronous error or another process failed.
  void check(const char* what = "") {
    c_->check_async(what);
    if (peers_->watch) peers_->watch(what);
  }

 private:
  void make() {
    detail::cuda_check(cudaStreamCreate(&comm_), "cudaStreamCreate", "creating the communication stream");
    detail::cuda_check(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreate", "collective");
    detail::cuda_check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate", "collective");
  }
  /// The communication stream waits for the compute stream's work so far.
  void after_compute() {
    if (!comm_) make();
    detail::cuda_check(cudaEventRecord(ready_, detail::cuda_context().stream()), "cudaEventRecord", "collective");
    detail::cuda_check(cudaStreamWaitEvent(comm_, ready_, 0), "cudaStreamWaitEvent", "collective");
  }
  /// The compute stream's later work waits for the communication stream's work so far.
  void before_compute() {
    detail::cuda_check(cudaEventRecord(done_, comm_), "cudaEventRecord", "collective");
    detail::cuda_check(cudaStreamWaitEvent(detail::cuda_context().stream(), done_, 0), "cudaStreamWaitEvent", "collective");
  }
  void ensure_host(std::size_t n) {
    if (n <= host_n_) return;
    if (host_) (void)cudaFreeHost(host_);
    detail::cuda_check(cudaMallocHost(reinterpret_cast<void**>(&host_), n * sizeof(double)), "cudaMallocHost", "values");
    host_n_ = n;
    device_.resize(n);
  }
  /// Polls `stream` until done, checking NCCL and the other processes, within the group's limit.
  void wait_stream(cudaStream_t stream, const char* what) {
    const auto start = std::chrono::steady_clock::now();
    for (unsigned spin = 0;; ++spin) {
      const cudaError_t e = cudaStreamQuery(stream);
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady) detail::cuda_check(e, "cudaStreamQuery", what);
      if (spin % 64 == 0) {
        check(what);
        const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (peers_->limit > 0.0 && waited > peers_->limit)
          throw Error(ErrorKind::runtime, "GPU " + std::to_string(c_->rank()) + " of " + std::to_string(c_->size()) +
                                              " waited " + std::to_string(waited) + " s in " + what +
                                              " without every GPU arriving (limit " + std::to_string(peers_->limit) +
                                              " s, TESSERA_MPI_TIMEOUT)");
      }
      if (spin < 1024) std::this_thread::yield();
      else std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  const nccl::Communicator* c_;
  const NcclPeers* peers_;
  cudaStream_t comm_ = nullptr;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
  double* host_ = nullptr;
  std::size_t host_n_ = 0;
  Cuda::vector<double> device_;
  bool pending_ = false;
};

static_assert(Collectives<NcclLane>);

}  // namespace tessera::comm
