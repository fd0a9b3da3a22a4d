// Open models across ranks: a layer, a loss and an update rule written outside the library
// (tests/open_model_parts.hpp), and the shipped layer normalisation and dropout, train across R
// ranks bitwise equal to R worker threads in deterministic mode, and in a pipeline of one stage
// per rank like the whole model on one process. Run under mpirun with 1, 2, 3 and 4 ranks.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "../open_model_parts.hpp"
#include "tessera/mpi.hpp"
#include "tessera/partition.hpp"
#include "tessera/tessera.hpp"

using namespace tessera;

namespace {
using user::blobs;
Model normed(std::uint64_t seed) {
  return Model(6, {layers::dense(16, Activation::tanh), layers::layer_norm(), layers::dropout(0.25f), layers::dense(3)},
               loss::softmax_cross_entropy, {.seed = seed, .weight_decay = 1e-3f});
}
bool bitwise(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
}  // namespace

TEST_CASE("a user's layer, loss and rule across R ranks bitwise equal R worker threads (deterministic mode)",
          "[mpi][open_models][deterministic]") {
  const auto world = mpi::Communicator::world();
  const std::size_t ranks = static_cast<std::size_t>(world.size());
  const data::Dataset d = user::data(203);
  const optim::Optimizer lion = optim::custom(3e-3, user::Lion{});
  for (std::size_t workers : {1u, 2u}) {
    CAPTURE(ranks, workers);
    Model m = user::model(100 + static_cast<std::uint64_t>(world.rank()));  // rank 0's parameters win
    Trainer<DataSplit<Random>, Reduce<MpiAllreduce>> t(
        {.batch_size = 6, .epochs = 2, .seed = 3, .workers = workers, .deterministic = true, .progress = Progress::never},
        lion);
    const History h = t.fit(m, d);
    Model ref = user::model(100);
    Trainer<DataSplit<Random>> threads({.batch_size = 6, .epochs = 2, .seed = 3, .workers = ranks * workers,
                                        .deterministic = true, .progress = Progress::never},
                                       lion);
    const History hr = threads.fit(ref, d);
    CHECK(bitwise(m.parameters(), ref.parameters()));
    CHECK(h.last().loss == hr.last().loss);
  }
}

TEST_CASE("layer normalisation and dropout across R ranks bitwise equal R worker threads (deterministic mode)",
          "[mpi][open_models][deterministic]") {
  const auto world = mpi::Communicator::world();
  const std::size_t ranks = static_cast<std::size_t>(world.size());
  const data::Dataset d = blobs(301, 6, 3);
  Model m = normed(100 + static_cast<std::uint64_t>(world.rank()));
  Trainer<DataSplit<Random>, Reduce<MpiAllreduce>> t(
      {.batch_size = 8, .epochs = 2, .seed = 5, .workers = 1, .deterministic = true, .progress = Progress::never},
      optim::adam(1e-2));
  t.fit(m, d);
  Model ref = normed(100);
  Trainer<DataSplit<Random>> threads(
      {.batch_size = 8, .epochs = 2, .seed = 5, .workers = ranks, .deterministic = true, .progress = Progress::never},
      optim::adam(1e-2));
  threads.fit(ref, d);
  CHECK(bitwise(m.parameters(), ref.parameters()));
}

TEST_CASE("a user's layer in a pipeline of one stage per rank computes the whole model's gradient",
          "[mpi][open_models][layerwise]") {
  const auto world = mpi::Communicator::world();
  const std::size_t ranks = static_cast<std::size_t>(world.size());
  if (ranks > 3) return;  // the model has 3 layers: at most 3 stages
  const data::Dataset d = user::data(64);
  const optim::Optimizer lion = optim::custom(3e-3, user::Lion{});
  Model piped = user::model(7);
  Trainer<Partition<Layerwise>, Reduce<MpiAllreduce>> t(
      {.batch_size = 16, .epochs = 2, .seed = 2, .workers = ranks, .micro_batches = 4, .progress = Progress::never}, lion);
  const History h = t.fit(piped, d);
  Model single = user::model(7);
  Trainer<> one({.batch_size = 16, .epochs = 2, .seed = 2, .workers = 1, .progress = Progress::never}, lion);
  const History hr = one.fit(single, d);
  // a sign-based rule can flip a step on a last-bit difference of a near-zero momentum: compare the fit's loss
  CHECK(h.last().loss == Approx(hr.last().loss).epsilon(1e-3));
  CHECK(piped.loss_value(d.x(), d.targets) == Approx(single.loss_value(d.x(), d.targets)).epsilon(1e-3));
}

int main(int argc, char** argv) {
  mpi::Environment env(&argc, &argv);
  return Catch::Session().run(argc, argv);
}
