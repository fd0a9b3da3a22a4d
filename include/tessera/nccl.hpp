// tessera/nccl.hpp - Reduce<NcclAllreduce>: data-parallel training over several GPUs with NCCL, the
// data-parallel engine on <Cuda, NcclLane>: gradient buckets summed on a communication stream
// while the backward pass goes on. Needs the CMake component `nccl` (target tessera::nccl, which
// brings `cuda`) and nvcc, like tessera/cuda.hpp.
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

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#if defined(TESSERA_NCCL_WITH_MPI)
#include "tessera/comm/nccl_mpi.hpp"
#endif

#include "tessera/comm/nccl_comm.hpp"
#include "tessera/comm/nccl_lane.hpp"
#include "tessera/cuda.hpp"

namespace tessera::comm {

/// The GPUs of an NCCL communicator that this process drives, one lane each. With one process per
/// GPU the set-up agreement, the initial parameters and failures go through MPI.
class NcclGroup {
 public:
  /// The processes' side (one process per GPU), empty in one process.
  struct Host {  ///< the processes' side (one process per GPU), empty in one process
    ///@{
    /// Processes training together and this one's index.
    std::size_t processes = 1, process = 0;
    ///@}
    /// agree() across processes.
    std::function<void(const std::string&, const std::string&)> agree;
    /// broadcast() across processes.
    std::function<void(float*, std::size_t)> broadcast;
    /// sum() across processes.
    std::function<void(double*, std::size_t, const char*)> sum;
  };
  /// One lane per communicator of `comms`; `how` says how they were made (in describe()), `peers` and
  /// `host` reach the other processes.
  NcclGroup(std::vector<nccl::Communicator> comms, std::string how, NcclPeers peers, Host host)
      : comms_(std::move(comms)), how_(std::move(how)), peers_(std::move(peers)), host_(std::move(host)) {
    auto watch = peers_.watch;
    peers_.watch = [this, watch](const char* what) {  // a lane of this process failed: stop waiting
      if (aborted_.load()) throw detail::Aborted{};
      if (watch) watch(what);
    };
  }
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

  /// Lanes (worker threads) of this process.
  [[nodiscard]] std::size_t lanes() const noexcept { return comms_.size(); }
  /// The handle lane `w` uses (made on the calling thread, used on lane w's).
  [[nodiscard]] NcclLane lane(std::size_t w) const { return NcclLane(comms_[w], peers_); }
  /// Processes training together.
  [[nodiscard]] std::size_t processes() const noexcept { return host_.processes; }
  /// This process's index among them.
  [[nodiscard]] std::size_t process() const noexcept { return host_.process; }
  /// The device lane `w` drives (GPU index; 0 on the CPU).
  [[nodiscard]] int device(std::size_t w) const noexcept { return comms_[w].device(); }
  /// "N GPU(s) over NCCL (how)", for messages.
  [[nodiscard]] std::string describe() const { return std::to_string(comms_[0].size()) + " GPU(s) over NCCL (" + how_ + ")"; }
  /// Every process passes the same value for `what`, or every one throws Error naming what differs.
  void agree(const std::string& what, const std::string& value) {
    if (host_.agree) host_.agree(what, value);
  }
  /// Process 0's n floats of `p` to every process.
  void broadcast(float* p, std::size_t n) {
    if (host_.broadcast) host_.broadcast(p, n);
  }
  /// The n doubles of `p` summed over the processes, in place.
  void sum(double* p, std::size_t n, const char* what) {
    if (host_.sum) host_.sum(p, n, what);
  }
  /// A lane failed: the others stop at their next wait (they poll).
  void abort() noexcept { aborted_.store(true); }
  /// Clears a failure, before the lanes of a new run start.
  void reset() { aborted_.store(false); }
  /// Once no lane runs: the other processes are told, and the collectives still pending on the
  /// GPUs end (ncclCommAbort), so that nothing waits for a failed GPU.
  void fail(const std::string& why) noexcept {
    if (failed_) return;
    failed_ = true;
    if (peers_.tell) peers_.tell(why);
    for (auto& c : comms_) c.abort();
  }
  /// The NCCL communicator of lane `lane`.
  [[nodiscard]] const nccl::Communicator& communicator(std::size_t lane) const { return comms_[lane]; }

 private:
  std::vector<nccl::Communicator> comms_;
  std::string how_;
  NcclPeers peers_;
  Host host_;
  std::atomic<bool> aborted_{false};
  bool failed_ = false;
};

static_assert(Group<NcclGroup>);

}  // namespace tessera::comm

namespace tessera::detail {

/// The GPUs of one process: devices 0 .. gpus-1 (gpus 0: all of them), one communicator.
inline std::unique_ptr<comm::NcclGroup> nccl_group_in_process(std::size_t gpus) {
  const int count = cuda_device_count();
  require(count > 0, ErrorKind::runtime, "Trainer: Reduce<NcclAllreduce> found no CUDA device");
  const std::size_t use = gpus == 0 ? static_cast<std::size_t>(count) : gpus;
  require(use <= static_cast<std::size_t>(count), ErrorKind::invalid_argument,
          "Trainer: Reduce<NcclAllreduce> asked for " + std::to_string(use) + " GPUs (workers), this process sees " +
              std::to_string(count));
  std::vector<int> devices;
  for (std::size_t d = 0; d < use; ++d) devices.push_back(static_cast<int>(d));
  return std::make_unique<comm::NcclGroup>(nccl::Communicator::init_all(devices), "one process, ncclCommInitAll",
                                           comm::NcclPeers{}, comm::NcclGroup::Host{});
}

#if defined(TESSERA_NCCL_WITH_MPI)
/// One GPU per rank of MPI_COMM_WORLD: the ranks first agree that each can take part (see
/// tessera/comm/nccl_mpi.hpp), then join rank 0's unique id.
inline std::unique_ptr<comm::NcclGroup> nccl_group_over_mpi(std::size_t workers) {
  const auto world = std::make_shared<mpi::Communicator>(mpi::Communicator::world());
  std::string problem;
  if (workers > 1)
    problem = "Reduce<NcclAllreduce> across " + std::to_string(world->size()) +
              " MPI ranks drives one GPU per rank, so workers must be 0 or 1, got " + std::to_string(workers);
  const nccl::RankSeat seat = nccl::seat_over_mpi(*world, cuda_device_count(), problem);
  std::vector<nccl::Communicator> comms;
  try {
    comms.emplace_back(seat.id, seat.rank, seat.size, seat.device);
  } catch (const std::exception& e) {
    // the other ranks may wait inside ncclCommInitRank, which no notice reaches: mark the job
    // failed, so that mpi::Environment ends it (MPI_Abort) instead of waiting for them
    world->notify_failure(e.what());
    throw;
  }
  comm::NcclPeers peers{[world](const char* what) { world->check_notices("a GPU collective", what); },
                        [world](const std::string& why) {
                          if (!mpi::job_failed()) world->notify_failure("rank " + std::to_string(world->rank()) + ": " + why);
                        },
                        mpi::timeout()};
  comm::NcclGroup::Host host;
  host.processes = static_cast<std::size_t>(world->size());
  host.process = static_cast<std::size_t>(world->rank());
  host.agree = [world](const std::string& what, const std::string& value) { world->agree(what, value); };
  host.broadcast = [world](float* p, std::size_t n) { world->broadcast(p, n, 0, "initial parameters"); };
  host.sum = [world](double* p, std::size_t n, const char* what) { world->all_reduce(p, n, what); };
  return std::make_unique<comm::NcclGroup>(std::move(comms), "one process per GPU, bootstrapped over MPI",
                                           std::move(peers), std::move(host));
}
#endif

/// Device<Cuda> with Reduce<NcclAllreduce>.
template <>
struct GroupFor<NcclAllreduce, Cuda> {
  static constexpr bool available = true;
  template <bool OnePerProcess>
  static std::unique_ptr<comm::NcclGroup> make(const GroupRequest& q) {
    check_gpu_request(q);
#if defined(TESSERA_NCCL_WITH_MPI)
    int initialised = 0, finalised = 0, size = 1;
    MPI_Initialized(&initialised);
    MPI_Finalized(&finalised);
    if (initialised && !finalised) MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1) return nccl_group_over_mpi(q.options->workers);
#endif
    return nccl_group_in_process(q.options->workers);
  }
};

}  // namespace tessera::detail
