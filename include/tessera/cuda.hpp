// tessera/cuda.hpp - tessera on NVIDIA GPUs: Device<Cuda> (Thrust's CUDA system on a stream,
// cuBLAS) for the data-parallel engine (engine/replicate.hpp), the same engine as on the CPU.
// Needs the CMake component `cuda` (find_package(tessera CONFIG COMPONENTS cuda), target
// tessera::cuda) and a translation unit compiled by nvcc (a .cu file, or LANGUAGE CUDA); the
// default headers never include CUDA.
//
// Trainer<Device<Cuda>> trains on one GPU (the calling thread's current device);
// Trainer<Reduce<NcclAllreduce>, Device<Cuda>> trains on several (tessera/nccl.hpp).
#pragma once

#include <memory>
#include <string>

#include "tessera/comm/self_comm.hpp"
#include "tessera/device/cuda/device.hpp"
#include "tessera/device/cuda/feed.hpp"
#include "tessera/trainer.hpp"

namespace tessera::comm {

/// One GPU, the calling thread's current device, training alone.
class OneGpuGroup {
 public:
  OneGpuGroup() { detail::cuda_check(cudaGetDevice(&device_), "cudaGetDevice", "choosing the GPU to train on"); }
  /// Lanes (worker threads) of this process.
  [[nodiscard]] std::size_t lanes() const noexcept { return 1; }
  /// The handle lane `w` uses (made on the calling thread, used on lane w's).
  [[nodiscard]] SelfComm lane(std::size_t) const noexcept { return {}; }
  /// Processes training together.
  [[nodiscard]] std::size_t processes() const noexcept { return 1; }
  /// This process's index among them.
  [[nodiscard]] std::size_t process() const noexcept { return 0; }
  /// The device lane `w` drives (GPU index; 0 on the CPU).
  [[nodiscard]] int device(std::size_t) const noexcept { return device_; }
  /// Every process passes the same value for `what`, or every one throws Error naming what differs.
  void agree(const std::string&, const std::string&) {}
  /// Process 0's n floats of `p` to every process.
  void broadcast(float*, std::size_t) {}
  /// The n doubles of `p` summed over the processes, in place.
  void sum(double*, std::size_t, const char*) {}
  /// Wakes every lane of this process waiting in the group; they throw.
  void abort() noexcept {}
  /// Clears a failure, before the lanes of a new run start.
  void reset() {}
  /// This process stops; the other processes are told, with `message`.
  void fail(const std::string&) noexcept {}

 private:
  int device_ = 0;
};

static_assert(Group<OneGpuGroup>);

}  // namespace tessera::comm

namespace tessera::detail {

/// What Device<Cuda> refuses, whatever the Reduce choice.
inline void check_gpu_request(const GroupRequest& q) {
  require(!q.options->deterministic, ErrorKind::invalid_argument,
          "Trainer: deterministic mode is CPU-only in this version; Device<Cuda> gives the same parameters run after run "
          "on the same GPUs, but not the same bits as another number of GPUs");
}

/// Device<Cuda> with Reduce<ThreadAllreduce>: one GPU.
template <>
struct GroupFor<ThreadAllreduce, Cuda> {
  static constexpr bool available = true;
  template <bool OnePerProcess>
  static std::unique_ptr<comm::OneGpuGroup> make(const GroupRequest& q) {
    check_gpu_request(q);
    require(q.options->workers <= 1, ErrorKind::invalid_argument,
            "Trainer: Device<Cuda> with Reduce<ThreadAllreduce> trains on one GPU, so workers must be 0 or 1, got " +
                std::to_string(q.options->workers) + "; use Reduce<NcclAllreduce> (tessera/nccl.hpp) for several GPUs");
    return std::make_unique<comm::OneGpuGroup>();
  }
};

}  // namespace tessera::detail
