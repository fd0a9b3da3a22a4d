// Reduce<MpiAllreduce>: training across ranks equals the single-process reference, for ranks that
// do not divide the data, with local SGD, with several worker threads per rank; a rank whose setup
// differs, or lacks the memory a fit needs, is named on every rank before any step; gradient
// buckets overlapping the backward pass give the same result as one sum after it; deterministic
// mode is bitwise equal to threads; only rank 0 writes files. Run under mpirun with 1, 2, 3 and 4
// ranks.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include "tessera/mpi.hpp"
#include "tessera/tessera.hpp"

using namespace tessera;

namespace {
data::Dataset blobs(std::size_t n, std::size_t d, std::size_t k) {
  Matrix x(n, d);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t c = (i * 7 + i / 5) % k;
    y[i] = float(c);
    for (std::size_t j = 0; j < d; ++j) x(i, j) = rng::normal(3, rng::Stream::user, i * d + j, 0) + (j == c ? 2.0f : 0.0f);
  }
  return {std::move(x), std::move(y)};
}
Model fresh(std::uint64_t seed) {
  // every rank builds it from its own seed: rank 0's parameters must win
  return models::mlp({6, 16, 3}, act::tanh, loss::softmax_cross_entropy, {.seed = seed, .weight_decay = 1e-3f});
}
double max_relative_difference(std::span<const float> a, std::span<const float> b) {
  double worst = 0.0, scale = 0.0;
  for (float v : b) scale = std::max(scale, double(std::fabs(v)));
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(double(a[i]) - b[i]) / scale);
  return worst;
}
}  // namespace

TEST_CASE("R ranks x batch b equal one process with batch R*b", "[mpi][equivalence]") {
  const auto world = mpi::Communicator::world();
  const std::size_t ranks = static_cast<std::size_t>(world.size());
  const auto d = blobs(1003, 6, 3);  // 1003: no rank count divides it
  struct Case {
    std::size_t workers, micro_batches;
    bool overlap;
    std::size_t bucket_bytes;
  };
  // buckets of 4 bytes: one bucket per layer, so several sums are in flight during the backward pass
  for (const Case c : {Case{1, 1, true, 4}, Case{2, 1, true, 4}, Case{2, 1, true, 4u << 20}, Case{1, 1, false, 4},
                       Case{2, 2, false, 4}, Case{2, 3, true, 4}}) {
    CAPTURE(ranks, c.workers, c.micro_batches, c.overlap, c.bucket_bytes);
    Model m = fresh(100 + static_cast<std::uint64_t>(world.rank()));
    Trainer<DataSplit<Random>, Reduce<MpiAllreduce>> t({.batch_size = 6, .epochs = 3, .seed = 9, .workers = c.workers,
                                                        .micro_batches = c.micro_batches, .progress = Progress::never,
                                                        .overlap = {c.overlap, c.bucket_bytes}},
                                                       optim::momentum(0.05));
    const History h = t.fit(m, d);
    CHECK(h.workers == ranks * c.workers);
    Model ref = fresh(100);  // rank 0's initial parameters
    Trainer<DataSplit<Random>> one({.batch_size = 6 * ranks * c.workers, .epochs = 3, .seed = 9, .workers = 1,
                                    .progress = Progress::never},
                                   optim::momentum(0.05));
    const History hr = one.fit(ref, d);
    CHECK(max_relative_difference(m.parameters(), ref.parameters()) < 1e-5);
    CHECK(h.last().loss == Approx(hr.last().loss).epsilon(1e-5));
  }
}

TEST_CASE("deterministic mode: R ranks x W workers bitwise equal R*W worker threads", "[mpi][deterministic]") {
  const auto world = mpi::Communicator::world();
  const std::size_t ranks = static_cast<std::size_t>(world.size());
  const auto d = blobs(1003, 6, 3);
  for (std::size_t workers : {1u, 2u}) {
    for (std::size_t shards : {12u, 5u}) {  // 5 shards over 4 ranks: blocks of 2, 1, 1, 1
      CAPTURE(ranks, workers, shards);
      Model m = fresh(100 + static_cast<std::uint64_t>(world.rank()));
      Trainer<DataSplit<Random>, Reduce<MpiAllreduce>> t({.batch_size = 7, .epochs = 2, .seed = 3, .workers = workers,
                                                          .deterministic = {true, shards},
                                                          .progress = Progress::never},
                                                         optim::adam(0.01));
      const History h = t.fit(m, d);
      Model ref = fresh(100);
      Trainer<DataSplit<Random>> threads({.batch_size = 7, .epochs = 2, .seed = 3, .workers = ranks * workers,
                                          .deterministic = {true, shards},
                                          .progress = Progress::never},
                                         optim::adam(0.01));
      const History hr = threads.fit(ref, d);
      const auto a = m.parameters(), b = ref.parameters();
      CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
      CHECK(h.last().loss == hr.last().loss);
    }
  }
}

TEST_CASE("Sync<Sharded> across ranks trains like Sync<EveryStep>, bitwise in deterministic mode", "[mpi][sharded]") {
  const auto world = mpi::Communicator::world();
  const std::size_t ranks = static_cast<std::size_t>(world.size());
  const auto d = blobs(1003, 6, 3);
  for (std::size_t workers : {1u, 2u}) {
    CAPTURE(ranks, workers);
    const TrainerOptions o{.batch_size = 6, .epochs = 3, .seed = 9, .workers = workers, .progress = Progress::never};
    Model sharded = fresh(100 + static_cast<std::uint64_t>(world.rank()));
    const History hs = Trainer<DataSplit<Random>, Reduce<MpiAllreduce>, Sync<Sharded>>(o, optim::adam(0.01)).fit(sharded, d);
    Model every = fresh(100 + static_cast<std::uint64_t>(world.rank()));
    const History he = Trainer<DataSplit<Random>, Reduce<MpiAllreduce>>(o, optim::adam(0.01)).fit(every, d);
    CHECK(max_relative_difference(sharded.parameters(), every.parameters()) < 1e-5);
    CHECK(hs.last().loss == Approx(he.last().loss).epsilon(1e-5));
    // deterministic mode: the same bits as EveryStep on R*W threads
    TrainerOptions det = o;
    det.batch_size = 7;
    det.deterministic = true;
    Model a = fresh(100 + static_cast<std::uint64_t>(world.rank()));
    Trainer<DataSplit<Random>, Reduce<MpiAllreduce>, Sync<Sharded>>(det, optim::adam(0.01)).fit(a, d);
    Model b = fresh(100);
    TrainerOptions threads = det;
    threads.workers = ranks * workers;
    Trainer<DataSplit<Random>>(threads, optim::adam(0.01)).fit(b, d);
    CHECK(std::memcmp(a.parameters().data(), b.parameters().data(), a.parameter_count() * sizeof(float)) == 0);
  }
}

TEST_CASE("Sync<Sharded> across ranks keeps 1/N of the optimizer state per worker; EveryStep keeps it all per rank",
          "[mpi][sharded][memory]") {
  const auto world = mpi::Communicator::world();
  const std::size_t ranks = static_cast<std::size_t>(world.size());
  const Model m = fresh(1);
  const std::size_t p = m.parameter_count();
  detail::EngineConfig cfg;
  cfg.batch = 8;
  for (std::size_t workers : {1u, 2u}) {
    CAPTURE(ranks, workers);
    const std::size_t N = ranks * workers;
    comm::MpiThreadsGroup g(workers);
    detail::ReplicateEngine<detail::CpuWorker, comm::MpiThreadsGroup, Sharded> zero(g, m.architecture(), 0.0f,
                                                                                     optim::adam(), m.parameters(), cfg);
    std::size_t state = 0;
    for (const WorkerMemory& w : zero.memory()) {
      CHECK(w.optimizer_state <= 2 * (p / N + 16));
      state += w.optimizer_state;
    }
    CHECK(state == 2 * p);
    comm::MpiThreadsGroup g2(workers);
    detail::ReplicateEngine<detail::CpuWorker, comm::MpiThreadsGroup, EveryStep> every(g2, m.architecture(), 0.0f,
                                                                                        optim::adam(), m.parameters(), cfg);
    state = 0;
    for (const WorkerMemory& w : every.memory()) state += w.optimizer_state;
    CHECK(state == 2 * p * ranks);  // the whole state on every rank, sliced among its threads
  }
}

TEST_CASE("local SGD across ranks equals local SGD across threads", "[mpi][local_sgd]") {
  const auto world = mpi::Communicator::world();
  const std::size_t ranks = static_cast<std::size_t>(world.size());
  const auto d = blobs(500, 6, 3);
  Model m = fresh(7);
  Trainer<Reduce<MpiAllreduce>, Sync<Periodic<4>>> t({.batch_size = 8, .epochs = 2, .seed = 1, .workers = 1,
                                                      .progress = Progress::never},
                                                     optim::sgd(0.05));
  t.fit(m, d);
  Model ref = fresh(7);
  Trainer<Sync<Periodic<4>>> threads({.batch_size = 8, .epochs = 2, .seed = 1, .workers = ranks,
                                      .progress = Progress::never},
                                     optim::sgd(0.05));
  threads.fit(ref, d);
  CHECK(max_relative_difference(m.parameters(), ref.parameters()) < 1e-5);
}

TEST_CASE("a rank whose setup differs is named on every rank before any step", "[mpi][errors]") {
  const auto world = mpi::Communicator::world();
  if (world.size() == 1) return;
  const int odd = world.size() - 1;
  const auto d = blobs(100, 6, 3);
  Model m = fresh(1);
  Trainer<Reduce<MpiAllreduce>> t({.batch_size = world.rank() == odd ? 5u : 4u, .workers = 1, .progress = Progress::never},
                                  optim::sgd(0.1));
  const std::vector<float> before(m.parameters().begin(), m.parameters().end());
  CHECK_THROWS_WITH(t.fit(m, d), Catch::Contains("ranks disagree on the training setup") &&
                                     Catch::Contains("batch 4 x 1 workers") &&
                                     Catch::Contains("rank " + std::to_string(odd) + " has") &&
                                     Catch::Contains("batch 5 x 1 workers"));
  CHECK(std::equal(before.begin(), before.end(), m.parameters().begin()));
}

TEST_CASE("a rank without the memory a fit needs is named on every rank, nobody waits", "[mpi][errors][memory]") {
  const auto world = mpi::Communicator::world();
  const int odd = world.size() - 1;
  const auto d = blobs(100, 6, 3);
  Model m = fresh(1);
  const std::vector<float> before(m.parameters().begin(), m.parameters().end());
  if (world.rank() == odd) ::setenv("TESSERA_MEMORY_LIMIT", "1K", 1);  // this rank alone has too little
  Trainer<Reduce<MpiAllreduce>> t({.batch_size = 4, .workers = 1, .progress = Progress::never}, optim::sgd(0.1));
  try {
    (void)t.fit(m, d);
    FAIL("the fit should have been refused");
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("the fit needs about") != std::string::npos);
    CHECK(msg.find("1.0 KiB are available (TESSERA_MEMORY_LIMIT=1K)") != std::string::npos);
    if (world.size() > 1 && world.rank() != odd)
      CHECK(msg.find("rank " + std::to_string(odd) + " has \"this rank cannot train") != std::string::npos);
  }
  if (world.rank() == odd) ::unsetenv("TESSERA_MEMORY_LIMIT");
  CHECK(std::equal(before.begin(), before.end(), m.parameters().begin()));
}

TEST_CASE("a rank whose own data is wrong is named on every rank, nobody waits", "[mpi][errors]") {
  const auto world = mpi::Communicator::world();
  if (world.size() == 1) return;
  const int odd = world.size() - 1;
  const auto d = blobs(100, world.rank() == odd ? 5 : 6, 3);  // one rank's file has a column missing
  Model m = fresh(1);
  Trainer<Reduce<MpiAllreduce>> t({.batch_size = 4, .workers = 1, .progress = Progress::never}, optim::sgd(0.1));
  CHECK_THROWS_WITH(t.fit(m, d), Catch::Contains("ranks disagree on the training setup") &&
                                     Catch::Contains("rank " + std::to_string(odd) + " has \"this rank cannot train") &&
                                     Catch::Contains("takes 6 features, the data set has 5"));
}

TEST_CASE("only rank 0 writes files", "[mpi][io]") {
  const auto world = mpi::Communicator::world();
  float id = static_cast<float>(::getpid() % 1000000);  // exact in a float
  world.broadcast(&id, 1, 0);
  const auto dir = std::filesystem::temp_directory_path() / ("tessera-writes-" + std::to_string(static_cast<int>(id)));
  if (world.rank() == 0) std::filesystem::create_directories(dir);
  world.barrier();
  const Model m = fresh(1);
  save(m, (dir / ("model-" + std::to_string(world.rank()) + ".tsm")).string());
  History h;
  h.write_csv((dir / ("history-" + std::to_string(world.rank()) + ".csv")).string());
  h.write_json((dir / ("history-" + std::to_string(world.rank()) + ".json")).string());
  world.barrier();
  for (int r = 0; r < world.size(); ++r) {
    CAPTURE(r);
    for (const char* name : {"model-", "history-"})
      for (const char* ext : {".tsm", ".csv", ".json"})
        if ((std::string(name) == "model-") == (std::string(ext) == ".tsm"))
          CHECK(std::filesystem::exists(dir / (name + std::to_string(r) + ext)) == (r == 0));
  }
  world.barrier();
  if (world.rank() == 0) std::filesystem::remove_all(dir);
}

TEST_CASE("saving is collective: every rank can load the file as soon as save returns", "[mpi][io]") {
  const auto world = mpi::Communicator::world();
  float id = static_cast<float>(::getpid() % 1000000);
  world.broadcast(&id, 1, 0);
  const auto dir = std::filesystem::temp_directory_path() / ("tessera-collective-" + std::to_string(static_cast<int>(id)));
  if (world.rank() == 0) std::filesystem::create_directories(dir);
  world.barrier();
  const std::string path = (dir / "m.tsm").string();
  for (int round = 0; round < 20; ++round) {
    CAPTURE(round);
    const Model m = fresh(static_cast<std::uint64_t>(round + 1));
    save(m, path);  // every rank returns once rank 0's file is complete and renamed
    const Model back = load_model(path);
    CHECK(std::equal(back.parameters().begin(), back.parameters().end(), m.parameters().begin()));
    History h;
    h.write_csv(path + ".csv");
    CHECK(std::filesystem::exists(path + ".csv"));
  }
  world.barrier();
  if (world.rank() == 0) std::filesystem::remove_all(dir);
}

TEST_CASE("a file that cannot be written is an error on every rank", "[mpi][io][errors]") {
  const std::string nowhere = (std::filesystem::temp_directory_path() / "tessera-no-such-folder/sub/m.tsm").string();
  CHECK_THROWS_WITH(save(fresh(1), nowhere), Catch::Contains("cannot open " + nowhere + ".tmp for writing") &&
                                                  Catch::Contains("rank 0 writes the files of an MPI job"));
  CHECK_THROWS_WITH(History{}.write_json(nowhere), Catch::Contains("cannot open"));
}

TEST_CASE("a set-up disagreement names the fields that differ, not the whole set-up", "[mpi][errors]") {
  const auto world = mpi::Communicator::world();
  if (world.size() == 1) return;
  const int odd = world.size() - 1;
  const auto d = blobs(100, 6, 3);
  Model m = fresh(1);
  Trainer<Reduce<MpiAllreduce>> t({.batch_size = 4, .epochs = world.rank() == odd ? 3u : 2u, .seed = 7, .workers = 1,
                                   .progress = Progress::never},
                                  optim::sgd(0.1));
  CHECK_THROWS_WITH(t.fit(m, d), Catch::Contains("rank 0 has \"epochs 2\", rank " + std::to_string(odd) +
                                                 " has \"epochs 3\" (field ") &&
                                     Catch::Contains("differs; the rest agree)") && !Catch::Contains("seed 7"));
}

TEST_CASE("each rank trains on its own shard of a binary file", "[mpi][shards]") {
  const auto world = mpi::Communicator::world();
  const auto ranks = static_cast<std::size_t>(world.size()), rank = static_cast<std::size_t>(world.rank());
  float id = static_cast<float>(::getpid() % 1000000);
  world.broadcast(&id, 1, 0);
  const auto dir = std::filesystem::temp_directory_path() / ("tessera-shards-" + std::to_string(static_cast<int>(id)));
  const std::string even = (dir / "even.tsrd").string(), odd = (dir / "odd.tsrd").string();
  const std::size_t b = 6, steps = 20;
  const auto d_even = blobs(ranks * b * steps, 6, 3), d_odd = blobs(1003, 6, 3);
  if (rank == 0) {
    std::filesystem::create_directories(dir);
    data::write_binary(d_even, even);
    data::write_binary(d_odd, odd);
  }
  world.barrier();

  SECTION("equal shards: the same as one process on the rows in the order the ranks take them") {
    const data::Dataset mine = mpi::read_binary_shard(even);
    CHECK(mine.rows() == b * steps);  // a rank holds 1/ranks of the rows
    CHECK(mine.shard.index == rank);
    Model m = fresh(100 + rank);
    Trainer<Reduce<MpiAllreduce>> t({.batch_size = b, .epochs = 2, .seed = 4, .workers = 1, .progress = Progress::never},
                                    optim::momentum(0.05));
    const History h = t.fit(m, mine);
    CHECK(h.samples == d_even.rows());
    // step s of the sharded run trains on rows [s*b, (s+1)*b) of every shard, rank after rank
    std::vector<std::size_t> index;
    for (std::size_t s = 0; s < steps; ++s)
      for (std::size_t r = 0; r < ranks; ++r)
        for (std::size_t i = 0; i < b; ++i) index.push_back(r * b * steps + s * b + i);
    Model ref = fresh(100);
    Trainer<> one({.batch_size = b * ranks, .epochs = 2, .seed = 4, .workers = 1, .progress = Progress::never},
                  optim::momentum(0.05));
    const History hr = one.fit(ref, d_even.subset(index));
    CHECK(max_relative_difference(m.parameters(), ref.parameters()) < 1e-5);
    CHECK(h.last().loss == Approx(hr.last().loss).epsilon(1e-5));
  }

  SECTION("uneven shards, shuffled, two workers per rank: every rank ends with the same model, as good as unsharded") {
    const data::Dataset mine = mpi::read_binary_shard(odd);
    const auto [lo, hi] = data::shard_rows(1003, rank, ranks);
    CHECK(mine.rows() == hi - lo);
    Model m = fresh(100 + rank);
    Trainer<DataSplit<Random>, Reduce<MpiAllreduce>> t(
        {.batch_size = 8, .epochs = 6, .seed = 2, .workers = 2, .progress = Progress::never}, optim::adam(0.01));
    const History h = t.fit(m, mine);
    std::vector<float> p(m.parameters().begin(), m.parameters().end()), p0 = p;
    world.broadcast(p0.data(), p0.size(), 0);
    CHECK(std::memcmp(p.data(), p0.data(), p.size() * sizeof(float)) == 0);
    CHECK(h.last().loss < h.epochs.front().loss);
    Model whole = fresh(100);
    Trainer<DataSplit<Random>, Reduce<MpiAllreduce>> u(
        {.batch_size = 8, .epochs = 6, .seed = 2, .workers = 2, .progress = Progress::never}, optim::adam(0.01));
    u.fit(whole, d_odd);
    CHECK(metrics::accuracy(m, d_odd) == Approx(metrics::accuracy(whole, d_odd)).margin(0.03));
  }

  SECTION("a shard that is not this rank's is refused on every rank, naming it") {
    if (ranks == 1) return;
    const data::Dataset other = data::read_binary_shard(even, (rank + 1) % ranks, ranks);
    Model m = fresh(1);
    Trainer<Reduce<MpiAllreduce>> t({.batch_size = b, .epochs = 1, .workers = 1, .progress = Progress::never},
                                    optim::sgd(0.1));
    CHECK_THROWS_WITH(t.fit(m, other), Catch::Contains("each rank must train on its own shard") &&
                                           Catch::Contains("rank(s) 0, 1") &&
                                           Catch::Contains("holds shard " + std::to_string((rank + 1) % ranks)));
  }
  world.barrier();
  if (rank == 0) std::filesystem::remove_all(dir);
}

int main(int argc, char** argv) {
  mpi::Environment env(&argc, &argv);
  return Catch::Session().run(argc, argv);
}
