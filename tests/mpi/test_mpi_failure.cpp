// A job in which one rank fails must end, on every rank, within a bounded time and with a message:
// run under mpirun by tests/mpi/run_failure.cmake, which checks the exit status, the time and the
// output. The last rank fails in epoch 2, in the way the first argument names:
//   throw        - an exception inside fit (a user callback here): the others are told and stop
//   kill         - SIGKILL: mpirun notices the dead process and ends the job
//   stall        - it stops answering: the others time out (TESSERA_MPI_TIMEOUT), naming what they
//                  waited in and the rank that did not arrive, and end the job
//   stall_middle - the same, by rank 1 (of 3): the others name rank 1, not a ring neighbour
//   absent       - it never calls fit, returning from main: the others stop within seconds
//   early        - it fails before fit (its data file is missing; main catches the error and
//                  returns 1): the others stop within seconds, naming it and its error
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

#include "tessera/mpi.hpp"
#include "tessera/tessera.hpp"

#include "blobs.hpp"

using namespace tessera;
using tessera::test::blobs;

namespace {
struct FailIn {
  std::string mode;
  bool me;
  void on_epoch(const EpochRecord& r) const {
    if (!me || r.epoch != 2) return;
    if (mode == "throw") throw std::runtime_error("injected failure in epoch 2");
    if (mode == "kill") std::raise(SIGKILL);
    if (mode == "stall" || mode == "stall_middle") std::this_thread::sleep_for(std::chrono::seconds(600));
  }
};
}  // namespace

int main(int argc, char** argv) {
  mpi::Environment env(&argc, &argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  const auto world = mpi::Communicator::world();
  const int rank = world.rank(), last = world.size() - 1;
  if (mode != "throw" && mode != "kill" && mode != "stall" && mode != "stall_middle" && mode != "absent" &&
      mode != "early") {
    std::fprintf(stderr, "usage: test_mpi_failure throw|kill|stall|stall_middle|absent|early\n");
    return 2;
  }
  if (mode == "absent" && rank == last) {
    std::printf("rank %d: leaving without training\n", rank);
    return 0;
  }
  if (mode == "early" && rank == last) {
    try {
      (void)data::read_csv("no_such_file.csv");
    } catch (const Error& e) {
      std::printf("rank %d: cannot start: %s\n", rank, e.what());
      return 1;
    }
  }
  const int failing = mode == "stall_middle" ? 1 : last;
  const auto d = blobs(600, 8);
  Model m = models::mlp({8, 16, 3}, act::relu, loss::softmax_cross_entropy, {.seed = 1});
  Trainer<Reduce<MpiAllreduce>> t({.batch_size = 4, .epochs = 50, .workers = 2, .progress = Progress::never},
                                  optim::sgd(0.05));
  try {
    t.fit(m, d, d, FailIn{mode, rank == failing});
  } catch (const std::exception& e) {
    std::printf("rank %d: fit failed: %s\n", rank, e.what());
    std::fflush(stdout);
    return 1;
  }
  std::printf("rank %d: fit completed\n", rank);
  return 0;
}
