// Trainer<Reduce<NcclAllreduce>, Device<Cuda>> under mpirun, one process per GPU: either every rank
// trains and ends with the same loss, or every rank stops at once with the same message naming the
// rank that cannot take part (no GPU; more ranks than GPUs on the machine). Never one rank waiting
// in ncclCommInitRank for another that already gave up. ctest runs it with 2 ranks (label mpi): on
// a machine without a GPU it proves the refusal; with a GPU per rank, the training.
#include <tessera/mpi.hpp>
#include <tessera/nccl.hpp>
#include <tessera/tessera.hpp>

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  using namespace tessera;
  mpi::Environment env(&argc, &argv);
  const auto world = mpi::Communicator::world();

  std::vector<float> x(256 * 4), y(256);
  for (std::size_t i = 0; i < y.size(); ++i) {
    for (std::size_t j = 0; j < 4; ++j) x[i * 4 + j] = static_cast<float>((i * 7 + j * 3) % 11) / 11.0f;
    y[i] = x[i * 4] - 0.5f * x[i * 4 + 3];
  }
  const data::Dataset d(Matrix(256, 4, std::move(x)), std::move(y));
  Model model = models::linear_regression(4, {.seed = 1});
  Trainer<Reduce<NcclAllreduce>, Device<Cuda>> trainer({.batch_size = 16, .epochs = 2, .seed = 1}, optim::sgd(0.05));
  try {
    const History h = trainer.fit(model, d);
    double loss = h.last().loss;
    const double mine = loss;
    world.all_reduce(&loss, 1, "final loss");
    if (loss != mine * world.size()) {
      std::printf("rank %d: FAILED: the ranks end with different losses\n", world.rank());
      return 1;
    }
    std::printf("rank %d: trained on %zu GPU(s), final loss %.6f\n", world.rank(), h.workers, mine);
    return 0;
  } catch (const Error& e) {
    // a refusal: every rank must have the same message (agree throws otherwise), and all ranks refuse
    double refused = 1.0;
    world.all_reduce(&refused, 1, "refusals");
    world.agree("refusal", e.what());
    if (refused != world.size()) {
      std::printf("rank %d: FAILED: only %.0f of %d ranks refused\n", world.rank(), refused, world.size());
      return 1;
    }
    if (world.rank() == 0) std::printf("all %d ranks refused with the same message: %s\n", world.size(), e.what());
    return 0;
  }
}
