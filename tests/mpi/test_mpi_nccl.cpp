// Reduce<NcclAllreduce>'s set-up over MPI, host side: before any rank waits in ncclCommInitRank,
// the ranks agree that each can take part, then share rank 0's NCCL unique id. Runs under mpirun
// with 1-3 ranks and needs no GPU (ncclGetUniqueId only opens the bootstrap socket): the GPU count
// is passed in, so the cases "enough GPUs", "a rank without one" and "more ranks than GPUs on a
// machine" all run here.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "tessera/comm/nccl_mpi.hpp"
#include "tessera/mpi.hpp"

using namespace tessera;

namespace {

std::string ranks_of(int n) { return " of " + std::to_string(n) + " cannot take part: "; }

}  // namespace

TEST_CASE("with a GPU per rank every rank gets rank 0's id, its rank and its own device", "[mpi][nccl]") {
  const auto world = mpi::Communicator::world();
  for (int gpus : {world.size(), world.size() + 3}) {
    const nccl::RankSeat seat = nccl::seat_over_mpi(world, gpus);
    CHECK(seat.rank == world.rank());
    CHECK(seat.size == world.size());
    CHECK(seat.device == world.rank());  // one machine: the rank on the node is the rank
    const std::string id(seat.id.internal, sizeof seat.id.internal);
    CHECK(id != std::string(id.size(), '\0'));      // an id was made
    CHECK_NOTHROW(world.agree("NCCL unique id", id));  // and every rank holds the same bytes
    // no two ranks drive the same device
    std::vector<float> taken(static_cast<std::size_t>(gpus), 0.0f);
    taken[static_cast<std::size_t>(seat.device)] = 1.0f;
    world.all_reduce(taken.data(), taken.size());
    CHECK(*std::max_element(taken.begin(), taken.end()) == 1.0f);
  }
}

TEST_CASE("a rank without a GPU is named on every rank; none waits", "[mpi][nccl][errors]") {
  const auto world = mpi::Communicator::world();
  const int last = world.size() - 1;
  CHECK_THROWS_WITH(nccl::seat_over_mpi(world, world.rank() == last ? 0 : world.size()),
                    Catch::Equals("tessera: Reduce<NcclAllreduce> set-up over MPI: rank " + std::to_string(last) +
                                  ranks_of(world.size()) + "this process sees no CUDA device"));
}

TEST_CASE("more ranks than GPUs on a machine is refused on every rank with the mpirun mapping to use",
          "[mpi][nccl][errors]") {
  const auto world = mpi::Communicator::world();
  if (world.size() == 1) {
    CHECK(nccl::seat_over_mpi(world, 1).device == 0);  // one rank, one GPU: fine
    return;
  }
  const std::string others = " (and " + std::to_string(world.size() - 1) + " other rank(s) cannot either)";
  CHECK_THROWS_WITH(nccl::seat_over_mpi(world, 1),
                    Catch::Equals("tessera: Reduce<NcclAllreduce> set-up over MPI: rank 0" + ranks_of(world.size()) +
                                  "its machine runs " + std::to_string(world.size()) +
                                  " ranks for 1 GPU(s), and NCCL needs a GPU per rank; start at most 1 ranks per machine "
                                  "(mpirun --map-by ppr:1:node)" + others));
}

TEST_CASE("a reason given by the caller on one rank stops every rank with it", "[mpi][nccl][errors]") {
  const auto world = mpi::Communicator::world();
  const int who = world.size() / 2;
  CHECK_THROWS_WITH(nccl::seat_over_mpi(world, world.size(), world.rank() == who ? "workers must be 0 or 1, got 2" : ""),
                    Catch::Equals("tessera: Reduce<NcclAllreduce> set-up over MPI: rank " + std::to_string(who) +
                                  ranks_of(world.size()) + "workers must be 0 or 1, got 2"));
  // and the ranks go on together afterwards
  CHECK(nccl::seat_over_mpi(world, world.size()).size == world.size());
}

int main(int argc, char** argv) {
  mpi::Environment env(&argc, &argv);
  return Catch::Session().run(argc, argv);
}
