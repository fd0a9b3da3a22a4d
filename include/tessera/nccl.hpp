// tessera/nccl.hpp - Reduce<NcclAllreduce>: data-parallel training over several GPUs with NCCL,
// gradients summed in buckets on their own stream while the backward pass goes on. Needs the CMake
// component `nccl` (target tessera::nccl, which brings `cuda`) and nvcc, like tessera/cuda.hpp.
//
// Two ways to run:
// - one process driving several GPUs (ncclCommInitAll; no MPI): TrainerOptions::workers GPUs,
//   devices 0 .. workers-1 (0: every GPU the process sees), one thread each;
// - one process per GPU under mpirun (when tessera::mpi exists, the component links it): with MPI
//   initialised and more than one rank, the ranks first agree that each has a GPU of its own (a
//   rank that cannot take part is named on every rank, none waits), then rank 0 makes the NCCL
//   unique id and broadcasts it over MPI_COMM_WORLD; each rank takes GPU (its rank on its node).
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#if defined(TESSERA_NCCL_WITH_MPI)
#include "tessera/comm/nccl_mpi.hpp"
#endif

#include "tessera/comm/nccl_comm.hpp"
#include "tessera/cuda.hpp"

namespace tessera::detail {

/// The GPUs of an NCCL communicator: this process's lanes, each with its own rank. With one
/// process per GPU, `peers` watches the other processes while a lane waits (throws when one
/// failed) and `tell` tells them that this one failed.
class NcclGroup final : public GpuGroup {
 public:
  struct Peers {
    std::function<void(const char* what)> watch;
    std::function<void(const std::string& why)> tell;
    double limit = 0.0;  ///< seconds a wait for a collective may last (0: no limit)
  };
  NcclGroup(std::vector<nccl::Communicator> comms, std::string how, Peers peers)
      : comms_(std::move(comms)), how_(std::move(how)), peers_(std::move(peers)) {}
  [[nodiscard]] std::size_t lanes() const override { return comms_.size(); }
  [[nodiscard]] int device(std::size_t lane) const override { return comms_[lane].device(); }
  [[nodiscard]] std::size_t world() const override { return static_cast<std::size_t>(comms_[0].size()); }
  [[nodiscard]] std::size_t global_lane(std::size_t lane) const override {
    return static_cast<std::size_t>(comms_[lane].rank());
  }
  [[nodiscard]] std::string describe() const override {
    return std::to_string(world()) + " GPU(s) over NCCL (" + how_ + ")";
  }
  [[nodiscard]] bool collective() const override { return true; }  // one rank too: see GpuGroup
  void sum(std::size_t lane, float* p, std::size_t n, cudaStream_t s, const char* what) override {
    comms_[lane].all_reduce(p, n, ncclSum, s, what);
  }
  void sum(std::size_t lane, double* p, std::size_t n, cudaStream_t s, const char* what) override {
    comms_[lane].all_reduce(p, n, ncclSum, s, what);
  }
  void max(std::size_t lane, double* p, std::size_t n, cudaStream_t s, const char* what) override {
    comms_[lane].all_reduce(p, n, ncclMax, s, what);
  }
  void broadcast(std::size_t lane, float* p, std::size_t n, cudaStream_t s, const char* what) override {
    comms_[lane].broadcast(p, n, 0, s, what);
  }
  void check(std::size_t lane, const char* what) override {
    comms_[lane].check_async(what);
    if (peers_.watch) peers_.watch(what);
  }
  [[nodiscard]] double wait_limit() const override { return peers_.limit; }
  void abort(const std::string& why) noexcept override {
    if (aborted_) return;
    aborted_ = true;
    if (peers_.tell) peers_.tell(why);
    for (auto& c : comms_) c.abort();
  }
  [[nodiscard]] const nccl::Communicator& communicator(std::size_t lane) const { return comms_[lane]; }

 private:
  std::vector<nccl::Communicator> comms_;
  std::string how_;
  Peers peers_;
  bool aborted_ = false;
};

/// The GPUs of one process: devices 0 .. gpus-1 (gpus 0: all of them), one communicator.
inline std::unique_ptr<NcclGroup> nccl_group_in_process(std::size_t gpus) {
  const int count = cuda_device_count();
  detail::require(count > 0, ErrorKind::runtime, "Trainer: Reduce<NcclAllreduce> found no CUDA device");
  const std::size_t use = gpus == 0 ? static_cast<std::size_t>(count) : gpus;
  detail::require(use <= static_cast<std::size_t>(count), ErrorKind::invalid_argument,
                  "Trainer: Reduce<NcclAllreduce> asked for " + std::to_string(use) + " GPUs (workers), this process sees " +
                      std::to_string(count));
  std::vector<int> devices;
  for (std::size_t d = 0; d < use; ++d) devices.push_back(static_cast<int>(d));
  return std::make_unique<NcclGroup>(nccl::Communicator::init_all(devices), "one process, ncclCommInitAll",
                                     NcclGroup::Peers{});
}

#if defined(TESSERA_NCCL_WITH_MPI)
/// One GPU per rank of MPI_COMM_WORLD: the ranks first agree that each can take part (see
/// tessera/comm/nccl_mpi.hpp), then join rank 0's unique id.
inline std::unique_ptr<NcclGroup> nccl_group_over_mpi(std::size_t workers) {
  const auto shared = std::make_shared<const mpi::Communicator>(mpi::Communicator::world());
  const mpi::Communicator& world = *shared;
  std::string problem;
  if (workers > 1)
    problem = "Reduce<NcclAllreduce> across " + std::to_string(world.size()) +
              " MPI ranks drives one GPU per rank, so workers must be 0 or 1, got " + std::to_string(workers);
  const nccl::RankSeat seat = nccl::seat_over_mpi(world, cuda_device_count(), problem);
  std::vector<nccl::Communicator> comms;
  try {
    comms.emplace_back(seat.id, seat.rank, seat.size, seat.device);
  } catch (const std::exception& e) {
    // the other ranks may wait inside ncclCommInitRank, which no notice reaches: mark the job
    // failed, so that mpi::Environment ends it (MPI_Abort) instead of waiting for them
    world.notify_failure(e.what());
    throw;
  }
  // while a lane waits for its collectives it watches for another process's failure notice; a
  // lane that fails sends one (and marks the job failed: mpi::Environment then ends the job)
  NcclGroup::Peers peers{[shared](const char* what) { shared->check_notices("a GPU collective", what); },
                         [shared](const std::string& why) { shared->notify_failure(why); }, mpi::timeout()};
  return std::make_unique<NcclGroup>(std::move(comms), "one process per GPU, bootstrapped over MPI", std::move(peers));
}
#endif

template <>
struct GpuReduce<NcclAllreduce> {
  static constexpr bool available = true;
  static std::unique_ptr<GpuGroup> group(const TrainerOptions& o) {
#if defined(TESSERA_NCCL_WITH_MPI)
    int initialised = 0, finalised = 0, size = 1;
    MPI_Initialized(&initialised);
    MPI_Finalized(&finalised);
    if (initialised && !finalised) MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1) return nccl_group_over_mpi(o.workers);
#endif
    return nccl_group_in_process(o.workers);
  }
};

/// Reduce<NcclAllreduce> only trains with Device<Cuda> (PolicySet rejects it with Device<Cpu>), so
/// the CPU engine never reaches this; it exists so that the Trainer's CPU path compiles.
template <>
struct ReduceBackend<NcclAllreduce> {
  static constexpr bool available = true;
  static constexpr bool across_processes = false;
  static std::unique_ptr<CrossRanks> join(std::vector<float>&, const std::string&) { return nullptr; }
};

}  // namespace tessera::detail
