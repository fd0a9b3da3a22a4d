// Kill and restart under mpirun, driven by tests/mpi/kill_restart.cmake:
//   train DIR   - a deterministic fit across the ranks writes a checkpoint every 7 steps in DIR;
//                 rank 1 kills itself (SIGKILL) at step 50 of 100, so the job must end
//   resume DIR  - the job, started again with any rank count, resumes from the newest checkpoint
//                 in DIR and checks that it ends with the parameters and losses of a fit never
//                 interrupted (computed here on one thread), bit for bit; exit status 0 if so
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tessera/mpi.hpp"
#include "tessera/tessera.hpp"

#include "blobs.hpp"

using namespace tessera;
using tessera::test::blobs;

namespace {
constexpr std::size_t global_batch = 24;
Model fresh(std::uint64_t seed) {
  return models::mlp({6, 16, 16, 3}, act::tanh, loss::softmax_cross_entropy, {.seed = seed, .weight_decay = 1e-3f});
}
TrainerOptions options(std::size_t ranks, std::size_t workers) {
  return {.batch_size = global_batch / (ranks * workers), .epochs = 4, .seed = 13, .workers = workers,
          .deterministic = true, .progress = Progress::never};
}
const optim::Optimizer adam = optim::adam(2e-3).with(optim::cosine_decay(0.1));

/// Rank 1 dies at the end of epoch 2 (step 50), one step after the newest checkpoint (step 49).
struct KillAt {
  bool me;
  std::size_t epoch;
  void on_epoch(const EpochRecord& r) const {
    if (me && r.epoch == epoch) {
      std::fprintf(stderr, "rank 1: SIGKILL to itself at the end of epoch %zu\n", r.epoch);
      std::raise(SIGKILL);
    }
  }
};
}  // namespace

int main(int argc, char** argv) {
  mpi::Environment env(&argc, &argv);
  const auto world = mpi::Communicator::world();
  const std::size_t R = static_cast<std::size_t>(world.size());
  if (argc != 3) {
    std::fprintf(stderr, "usage: test_mpi_restart train|resume DIR\n");
    return 2;
  }
  const std::string mode = argv[1], prefix = std::string(argv[2]) + "/run";
  const auto d = blobs(600, 6);  // 25 steps per epoch, 100 in all
  try {
    if (mode == "train") {
      Model m = fresh(1);
      CheckpointEvery each(prefix, 7, 0.0, 2);
      Trainer<DataSplit<Random>, Reduce<MpiAllreduce>> t(options(R, 1), adam);
      t.fit(m, d, KillAt{world.rank() == 1, 2}, each);
      std::fprintf(stderr, "rank %d: the fit ended without the kill\n", world.rank());
      return 3;
    }
    if (mode == "resume") {
      const std::string file = latest_checkpoint(prefix);
      if (file.empty()) {
        std::fprintf(stderr, "no checkpoint in %s\n", argv[2]);
        return 4;
      }
      const Checkpoint c = load_checkpoint(file);
      Model m = fresh(2);
      const History h = Trainer<DataSplit<Random>, Reduce<MpiAllreduce>>(options(R, 1), adam).fit(m, d, c);
      Model ref = fresh(1);  // the uninterrupted fit, on one thread of this process
      const History rh = Trainer<DataSplit<Random>>(options(1, 1), adam).fit(ref, d);
      const bool same_params = std::memcmp(m.parameters().data(), ref.parameters().data(), 4 * ref.parameter_count()) == 0;
      bool same_losses = h.epochs.size() == rh.epochs.size();
      for (std::size_t i = 0; same_losses && i < h.epochs.size(); ++i)
        same_losses = std::memcmp(&h.epochs[i].loss, &rh.epochs[i].loss, sizeof(double)) == 0;
      if (world.rank() == 0)
        std::printf("resumed on %zu ranks from %s (epoch %zu, step %zu): parameters %s, losses %s\n", R, file.c_str(),
                    c.epoch + 1, c.step, same_params ? "bitwise equal" : "DIFFER", same_losses ? "bitwise equal" : "DIFFER");
      return same_params && same_losses ? 0 : 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: %s\n", world.rank(), e.what());
    return 1;
  }
  return 2;
}
