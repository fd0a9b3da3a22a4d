// tessera/comm/nccl_comm.hpp - NCCL communicators: several GPUs of one process (ncclCommInitAll)
// or one GPU per process from a shared unique id (ncclCommInitRank), and the collectives the GPU
// engine uses, issued on a stream. Failures are tessera::Error naming the call and the rank. Needs
// the CMake component `nccl`.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstddef>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/device/cuda/check.hpp"

namespace tessera::nccl {

/// NCCL connects the GPUs while creating a communicator instead of inside the first collective of
/// each algorithm (NCCL_RUNTIME_CONNECT=0), unless the environment already says otherwise: a lane
/// then never blocks on the host inside an all-reduce call waiting for a peer to connect, so a
/// peer that failed can always be noticed while waiting (train/cuda_engine.hpp).
inline void connect_at_creation() noexcept { (void)::setenv("NCCL_RUNTIME_CONNECT", "0", 0); }

/// Throws when `status` is not ncclSuccess: "NCCL ncclAllReduce failed on rank 1 of 2 (device 1,
/// gradient bucket): unhandled cuda error (... NCCL's last error ...)".
inline void check(ncclResult_t status, const char* call, int rank, int size, int device, const char* what,
                  ncclComm_t comm = nullptr) {
  if (status == ncclSuccess) return;
  const char* last = ncclGetLastError(comm);
  throw Error(ErrorKind::runtime, std::string("NCCL ") + call + " failed on rank " + std::to_string(rank) + " of " +
                                      std::to_string(size) + " (device " + std::to_string(device) + ", " + what +
                                      "): " + ncclGetErrorString(status) +
                                      (last && *last ? std::string(" (") + last + ")" : std::string()));
}

/// One rank of an NCCL communicator: one GPU. Move-only; destroys the communicator.
class Communicator {
 public:
  /// One communicator per GPU in `devices`, all in this process (ncclCommInitAll; no MPI needed).
  /// Each must then be driven by its own thread, or all from one thread inside a group.
  static std::vector<Communicator> init_all(const std::vector<int>& devices) {
    detail::require(!devices.empty(), ErrorKind::invalid_argument, "nccl::Communicator::init_all: no devices given");
    const int count = detail::cuda_device_count();
    for (int d : devices)
      detail::require(d >= 0 && d < count, ErrorKind::invalid_argument,
                      "nccl::Communicator::init_all: device " + std::to_string(d) + " does not exist (this process sees " +
                          std::to_string(count) + " CUDA device(s))");
    std::vector<ncclComm_t> comms(devices.size(), nullptr);
    connect_at_creation();
    check(ncclCommInitAll(comms.data(), static_cast<int>(devices.size()), devices.data()), "ncclCommInitAll", 0,
          static_cast<int>(devices.size()), devices[0], "communicator set-up");
    std::vector<Communicator> out;
    for (std::size_t i = 0; i < devices.size(); ++i) {
      try {
        out.push_back(Communicator(comms[i], devices[i]));
      } catch (...) {
        // a constructor that throws owns nothing: comms[i] and the rest are not yet owned
        for (std::size_t j = i; j < devices.size(); ++j) (void)ncclCommDestroy(comms[j]);
        throw;
      }
    }
    return out;
  }

  /// The unique id that every rank of a new communicator must share (made on one rank, sent to
  /// the others, e.g. with MPI_Bcast).
  static ncclUniqueId unique_id() {
    ncclUniqueId id;
    check(ncclGetUniqueId(&id), "ncclGetUniqueId", 0, 1, -1, "communicator set-up");
    return id;
  }

  /// Rank `rank` of `size`, on `device`, joining the communicator of `id` (ncclCommInitRank: waits
  /// until every rank has joined).
  Communicator(const ncclUniqueId& id, int rank, int size, int device) : device_(device) {
    detail::require(size >= 1 && rank >= 0 && rank < size, ErrorKind::invalid_argument,
                    "nccl::Communicator: rank " + std::to_string(rank) + " is not in [0, " + std::to_string(size) + ")");
    int current = 0;
    detail::cuda_check(cudaGetDevice(&current), "cudaGetDevice", "NCCL communicator set-up");
    detail::cuda_check(cudaSetDevice(device), "cudaSetDevice", "NCCL communicator set-up");
    connect_at_creation();
    const ncclResult_t made = ncclCommInitRank(&comm_, size, id, rank);
    (void)cudaSetDevice(current);  // the caller stays on its own device
    check(made, "ncclCommInitRank", rank, size, device, "communicator set-up");
    read_shape();
  }

  /// Takes over `o`'s communicator.
  Communicator(Communicator&& o) noexcept
      : comm_(std::exchange(o.comm_, nullptr)), device_(o.device_), rank_(o.rank_), size_(o.size_) {}
  /// Takes over `o`'s communicator, destroying its own.
  Communicator& operator=(Communicator&& o) noexcept {
    if (this != &o) {
      destroy();
      comm_ = std::exchange(o.comm_, nullptr);
      device_ = o.device_;
      rank_ = o.rank_;
      size_ = o.size_;
    }
    return *this;
  }
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  ~Communicator() { destroy(); }

  /// This GPU's rank in the communicator.
  [[nodiscard]] int rank() const noexcept { return rank_; }
  /// GPUs in the communicator.
  [[nodiscard]] int size() const noexcept { return size_; }
  /// The CUDA device it runs on.
  [[nodiscard]] int device() const noexcept { return device_; }
  /// The NCCL communicator itself.
  [[nodiscard]] ncclComm_t get() const noexcept { return comm_; }

  /// In place on device memory, in `stream` order (returns at once).
  void all_reduce(float* p, std::size_t n, ncclRedOp_t op, cudaStream_t stream, const char* what) const {
    check(ncclAllReduce(p, p, n, ncclFloat32, op, comm_, stream), "ncclAllReduce", rank_, size_, device_, what, comm_);
  }
  /// ncclAllReduce of the n doubles of `p` with `op`, in place, enqueued on `stream`; throws Error
  /// (ErrorKind::runtime) naming `what` when NCCL fails.
  void all_reduce(double* p, std::size_t n, ncclRedOp_t op, cudaStream_t stream, const char* what) const {
    check(ncclAllReduce(p, p, n, ncclFloat64, op, comm_, stream), "ncclAllReduce", rank_, size_, device_, what, comm_);
  }
  /// ncclBroadcast of rank `root`'s n floats of `p`, enqueued on `stream`; throws Error
  /// (ErrorKind::runtime) naming `what` when NCCL fails.
  void broadcast(float* p, std::size_t n, int root, cudaStream_t stream, const char* what) const {
    check(ncclBroadcast(p, p, n, ncclFloat32, root, comm_, stream), "ncclBroadcast", rank_, size_, device_, what, comm_);
  }

  /// Throws when NCCL reports an asynchronous error on this communicator (a peer gone, a network
  /// failure): called while waiting for its collectives.
  void check_async(const char* what) const {
    if (!comm_) return;
    ncclResult_t async = ncclSuccess;
    check(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError", rank_, size_, device_, what, comm_);
    check(async, "collective (asynchronous error)", rank_, size_, device_, what, comm_);
  }

  /// Ends the communicator at once (ncclCommAbort): its collectives still pending on the GPU stop
  /// instead of waiting for a peer that failed. Only when no thread uses it any more.
  void abort() noexcept {
    if (comm_) (void)ncclCommAbort(comm_);
    comm_ = nullptr;
  }

 private:
  Communicator(ncclComm_t c, int device) : comm_(c), device_(device) { read_shape(); }
  void read_shape() {
    check(ncclCommUserRank(comm_, &rank_), "ncclCommUserRank", rank_, size_, device_, "communicator set-up", comm_);
    check(ncclCommCount(comm_, &size_), "ncclCommCount", rank_, size_, device_, "communicator set-up", comm_);
  }
  void destroy() noexcept {
    if (comm_) (void)ncclCommDestroy(comm_);
    comm_ = nullptr;
  }

  ncclComm_t comm_ = nullptr;
  int device_ = 0, rank_ = 0, size_ = 1;
};

}  // namespace tessera::nccl
