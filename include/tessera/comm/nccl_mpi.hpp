// tessera/comm/nccl_mpi.hpp - one GPU per MPI rank: before any rank waits in NCCL, the ranks agree
// that every one of them can take part (a GPU of its own on its machine, options that fit), then
// rank 0's NCCL unique id is broadcast. Host code only: needs the CMake component `nccl` built with
// the component `mpi` (TESSERA_NCCL_WITH_MPI).
//
// Why the agreement first: ncclCommInitRank waits until every rank has joined. A rank that throws
// before it (no GPU, more ranks than GPUs on its node, no unique id) would leave the others waiting
// there forever; here every rank throws the same error instead, naming the rank and its reason.
#pragma once

#include <nccl.h>

#include <string>

#include "tessera/comm/mpi_comm.hpp"
#include "tessera/comm/nccl_comm.hpp"

namespace tessera::nccl {

/// This rank's place in a communicator of one GPU per rank: the shared id, its rank, the number of
/// ranks, and the CUDA device it drives (its rank among the ranks of its machine).
struct RankSeat {
  /// The NCCL id every rank shares (rank 0's).
  ncclUniqueId id{};
  ///@{
  /// This rank, the number of ranks, and the CUDA device it drives.
  int rank = 0, size = 1, device = 0;
  ///@}
};

/// Collective over `world`. `gpus`: the CUDA devices this process sees; `problem`: a reason this
/// rank cannot take part that the caller found (empty: none). Throws the same Error on every rank
/// when any rank cannot take part; otherwise every rank returns the same id.
inline RankSeat seat_over_mpi(const mpi::Communicator& world, int gpus, std::string problem = {}) {
  RankSeat seat;
  seat.rank = world.rank();
  seat.size = world.size();
  const mpi::Communicator node = world.node();
  seat.device = node.rank();
  if (problem.empty() && gpus <= 0) problem = "this process sees no CUDA device";
  if (problem.empty() && node.size() > gpus)
    problem = "its machine runs " + std::to_string(node.size()) + " ranks for " + std::to_string(gpus) +
              " GPU(s), and NCCL needs a GPU per rank; start at most " + std::to_string(gpus) +
              " ranks per machine (mpirun --map-by ppr:" + std::to_string(gpus) + ":node)";
  if (problem.empty() && seat.rank == 0) {
    try {
      seat.id = Communicator::unique_id();
    } catch (const std::exception& e) {
      problem = e.what();
    }
  }
  world.all_ready("Reduce<NcclAllreduce> set-up over MPI", problem);
  world.broadcast_bytes(&seat.id, sizeof(seat.id), 0, "NCCL unique id");
  return seat;
}

}  // namespace tessera::nccl
