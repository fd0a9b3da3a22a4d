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
  [[nodiscard]] std::size_t lanes() const noexcept { return 1; }
  [[nodiscard]] SelfComm lane(std::size_t) const noexcept { return {}; }
  [[nodiscard]] std::size_t processes() const noexcept { return 1; }
  [[nodiscard]] std::size_t process() const noexcept { return 0; }
  [[nodiscard]] int device(std::size_t) const noexcept { return device_; }
  void agree(const std::string&, const std::string&) {}
  void broadcast(float*, std::size_t) {}
  void sum(double*, std::size_t, const char*) {}
  void abort() noexcept {}
  void reset() {}
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
