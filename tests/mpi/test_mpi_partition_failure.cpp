// A pipeline or column split across ranks in which one rank fails must end, on every rank, within a
// bounded time and with a message: run under mpirun by tests/mpi/run_failure.cmake, which checks
// the exit status, the time and the output. The last rank throws inside fit (a user callback, in
// epoch 2) while its neighbours wait for its messages; the first argument names the partition:
//   pipeline - Partition<Layerwise>, one stage per rank
//   columns  - Partition<Columnwise>, the ranks wait in the pair's all-reduce
#include <cstdio>
#include <stdexcept>
#include <string>

#include "tessera/partition/mpi.hpp"
#include "tessera/tessera.hpp"

#include "blobs.hpp"

using namespace tessera;
using tessera::test::blobs;

namespace {
struct FailIn {
  bool me;
  void on_epoch(const EpochRecord& r) const {
    if (me && r.epoch == 2) throw std::runtime_error("injected failure in epoch 2");
  }
};
}  // namespace

int main(int argc, char** argv) {
  mpi::Environment env(&argc, &argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (mode != "pipeline" && mode != "columns") {
    std::fprintf(stderr, "usage: test_mpi_partition_failure pipeline|columns\n");
    return 2;
  }
  const auto d = blobs(600, 8);
  Model m(8, {{16, act::relu}, {12, act::relu}, {8, act::relu}, {3, act::identity}}, Loss::softmax_cross_entropy,
          {.seed = 1});
  const TrainerOptions o{.batch_size = 8, .epochs = 50, .micro_batches = 2, .progress = Progress::never};
  try {
    if (mode == "pipeline")
      Trainer<Partition<Layerwise>, Reduce<MpiAllreduce>>(o, optim::sgd(0.05)).fit(m, d, d, FailIn{rank == size - 1});
    else
      Trainer<Partition<Columnwise>, Reduce<MpiAllreduce>>(o, optim::sgd(0.05)).fit(m, d, d, FailIn{rank == size - 1});
  } catch (const std::exception& e) {
    std::printf("rank %d: fit failed: %s\n", rank, e.what());
    std::fflush(stdout);
    return 1;
  }
  std::printf("rank %d: fit completed\n", rank);
  return 0;
}
