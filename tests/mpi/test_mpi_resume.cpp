// Checkpoints across ranks, run under mpirun with 1, 2, 3 and 4 ranks: rank 0 writes one file and
// every rank returns once it is in place; a checkpoint written by one process resumes across R
// ranks, and one written by R ranks resumes on threads, to the same bits in deterministic mode;
// an MPI fit resumed from its own checkpoints ends bitwise where it would have; a pipeline with one
// stage per rank resumes bitwise too.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <mpi.h>

#include "tessera/mpi.hpp"
#include "tessera/partition.hpp"
#include "tessera/tessera.hpp"

#include "blobs.hpp"

using namespace tessera;
using tessera::test::blobs;

namespace {
Model fresh(std::uint64_t seed = 5) {
  return models::mlp({6, 12, 12, 3}, act::tanh, loss::softmax_cross_entropy, {.seed = seed, .weight_decay = 1e-3f});
}
const optim::Optimizer adam = optim::adam(3e-3).with(optim::cosine_decay(0.1));

std::vector<float> params(const Model& m) { return {m.parameters().begin(), m.parameters().end()}; }
bool bitwise(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
bool same_losses(const History& a, const History& b) {
  if (a.epochs.size() != b.epochs.size()) return false;
  for (std::size_t i = 0; i < a.epochs.size(); ++i)
    if (std::memcmp(&a.epochs[i].loss, &b.epochs[i].loss, sizeof(double)) != 0) return false;
  return true;
}

/// One folder for the whole job: rank 0 names it, every rank uses it.
std::string shared_folder(const std::string& tag) {
  char name[512] = {};
  if (mpi::Communicator::world().rank() == 0) {
    const auto p = std::filesystem::temp_directory_path() /
                   ("tessera_mpi_resume_" + tag + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(p);
    std::filesystem::create_directories(p);
    std::snprintf(name, sizeof name, "%s", p.string().c_str());
  }
  MPI_Bcast(name, sizeof name, MPI_CHAR, 0, MPI_COMM_WORLD);
  return name;
}

std::size_t ranks() { return static_cast<std::size_t>(mpi::Communicator::world().size()); }
}  // namespace

TEST_CASE("deterministic: one process -> R ranks -> threads, bitwise", "[mpi][resume][deterministic]") {
  const std::string dir = shared_folder("det");
  const auto d = blobs(500, 6);
  const std::size_t R = ranks();
  TrainerOptions one{.batch_size = 24, .epochs = 3, .seed = 7, .workers = 1, .deterministic = true,
                     .progress = Progress::never};
  // the reference, in every process alone (its checkpoint files are written once, by rank 0)
  Model ref = fresh();
  CheckpointEvery ref_each(dir + "/one", 8, 0.0, 0);
  const History ref_h = Trainer<DataSplit<Random>>(one, adam).fit(ref, d, ref_each);
  REQUIRE(ref_each.written().size() >= 4);
  CHECK(std::filesystem::exists(ref_each.written()[1]));  // in place on every rank when save returns
  // R ranks, 24 / R rows each per step (1, 2, 3 or 4 ranks all divide 24), from its mid-epoch checkpoint
  TrainerOptions across = one;
  across.batch_size = 24 / R;
  Model m = fresh(90 + mpi::Communicator::world().rank());
  CheckpointEvery across_each(dir + "/ranks", 6, 0.0, 0);
  Trainer<DataSplit<Random>, Reduce<MpiAllreduce>> t(across, adam);
  const History h = t.fit(m, d, load_checkpoint(ref_each.written()[1]), across_each);
  CHECK(bitwise(params(m), params(ref)));
  CHECK(same_losses(h, ref_h));
  // and what the ranks wrote resumes on two threads
  REQUIRE(across_each.written().size() >= 2);
  TrainerOptions threads = one;
  threads.workers = 2;
  threads.batch_size = 12;
  Model back = fresh(3);
  Trainer<DataSplit<Random>, Sync<Sharded>>(threads, adam).fit(back, d, load_checkpoint(across_each.written()[1]));
  CHECK(bitwise(params(back), params(ref)));
  mpi::Communicator::world().barrier();
  if (mpi::Communicator::world().rank() == 0) std::filesystem::remove_all(dir);
}

TEST_CASE("an MPI fit resumed from any of its checkpoints ends bitwise where it would have", "[mpi][resume]") {
  const std::string dir = shared_folder("own");
  const auto d = blobs(401, 6);
  const TrainerOptions o{.batch_size = 8, .epochs = 3, .seed = 2, .workers = 2, .progress = Progress::never};
  using T = Trainer<DataSplit<Stratified>, Reduce<MpiAllreduce>>;
  Model whole = fresh();
  CheckpointEvery each(dir + "/run", 5, 0.0, 0);
  const History wh = T(o, adam).fit(whole, d, each);
  Model plain = fresh();
  T(o, adam).fit(plain, d);
  CHECK(bitwise(params(plain), params(whole)));  // checkpoints change nothing
  REQUIRE(each.written().size() >= 3);
  for (const std::string& f : {each.written()[0], each.written()[2], each.written().back()}) {
    CAPTURE(f);
    Model m = fresh(11);
    const History h = T(o, adam).fit(m, d, load_checkpoint(f));
    CHECK(bitwise(params(m), params(whole)));
    CHECK(same_losses(h, wh));
  }
  mpi::Communicator::world().barrier();
  if (mpi::Communicator::world().rank() == 0) std::filesystem::remove_all(dir);
}

TEST_CASE("a pipeline of one stage per rank resumes bitwise", "[mpi][resume][partition]") {
  const std::size_t R = ranks();
  if (R < 2) return;
  const std::string dir = shared_folder("pipe");
  const auto d = blobs(300, 6);
  const auto model = [] {
    return models::mlp({6, 12, 12, 12, 3}, act::tanh, loss::softmax_cross_entropy, {.seed = 5, .weight_decay = 1e-3f});
  };
  const TrainerOptions o{.batch_size = 16, .epochs = 2, .seed = 2, .micro_batches = 4, .progress = Progress::never};
  using T = Trainer<DataSplit<Random>, Partition<Layerwise>, Reduce<MpiAllreduce>>;
  Model whole = model();
  CheckpointEvery each(dir + "/pipe", 7, 0.0, 0);
  const History wh = T(o, adam).fit(whole, d, each);
  REQUIRE(each.written().size() >= 2);
  Model m = model();
  const History h = T(o, adam).fit(m, d, load_checkpoint(each.written()[1]));
  CHECK(bitwise(params(m), params(whole)));
  CHECK(same_losses(h, wh));
  mpi::Communicator::world().barrier();
  if (mpi::Communicator::world().rank() == 0) std::filesystem::remove_all(dir);
}

int main(int argc, char** argv) {
  mpi::Environment env(&argc, &argv);
  return Catch::Session().run(argc, argv);
}
