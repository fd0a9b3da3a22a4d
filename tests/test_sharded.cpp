// Sync<Sharded> (ZeRO-1) on threads: the same training as Sync<EveryStep> (reduce-scatter, a slice
// of the update each, all-gather), bitwise in deterministic mode, with 1/N of the optimizer state
// per worker.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "tessera/tessera.hpp"

using namespace tessera;

namespace {
data::Dataset blobs(std::size_t n, std::size_t d, std::size_t k) {
  Matrix x(n, d);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t c = (i * 7 + i / 5) % k;
    y[i] = float(c);
    for (std::size_t j = 0; j < d; ++j) x(i, j) = rng::normal(5, rng::Stream::user, i * d + j, 0) + (j == c ? 2.0f : 0.0f);
  }
  return {std::move(x), std::move(y)};
}

template <class... Ps>
std::vector<float> train(const data::Dataset& d, TrainerOptions o) {
  Model m = models::mlp({d.cols(), 24, 3}, act::tanh, loss::softmax_cross_entropy, {.seed = 5, .weight_decay = 1e-3f});
  o.progress = Progress::never;
  Trainer<Ps...>(o, optim::adam(1e-2)).fit(m, d);
  return {m.parameters().begin(), m.parameters().end()};
}

double max_relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0.0, scale = 0.0;
  for (float v : b) scale = std::max(scale, double(std::fabs(v)));
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(double(a[i]) - b[i]) / scale);
  return worst;
}
}  // namespace

TEST_CASE("Sync<Sharded> trains like Sync<EveryStep> on 1 to 4 workers", "[sharded][equivalence]") {
  const data::Dataset d = blobs(501, 7, 3);
  for (std::size_t w : {1u, 2u, 3u, 4u}) {
    CAPTURE(w);
    const TrainerOptions o{.batch_size = 16, .epochs = 3, .seed = 2, .workers = w, .micro_batches = 2};
    const auto every = train<DataSplit<Random>>(d, o);
    const auto sharded = train<DataSplit<Random>, Sync<Sharded>>(d, o);
    // on threads the sum runs in worker order either way: the same bits
    CHECK(max_relative_difference(sharded, every) <= 1e-6);
    CHECK(std::memcmp(sharded.data(), every.data(), every.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("Sync<Sharded> in deterministic mode: the same bits as Sync<EveryStep>, for any worker count",
          "[sharded][deterministic]") {
  const data::Dataset d = blobs(333, 5, 3);
  const TrainerOptions one{.batch_size = 48, .epochs = 2, .seed = 9, .workers = 1, .deterministic = true};
  const auto reference = train<DataSplit<Random>>(d, one);
  for (std::size_t w : {1u, 2u, 3u, 4u}) {
    CAPTURE(w);
    TrainerOptions o = one;
    o.workers = w;
    o.batch_size = 48 / w;
    const auto p = train<DataSplit<Random>, Sync<Sharded>>(d, o);
    CHECK(std::memcmp(p.data(), reference.data(), p.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("Sync<Sharded> keeps 1/N of the optimizer state per worker", "[sharded][memory]") {
  const Model m = models::mlp({32, 64, 10}, act::relu, loss::softmax_cross_entropy);
  const std::size_t p = m.parameter_count();
  for (std::size_t n : {1u, 2u, 4u}) {
    CAPTURE(n);
    comm::LocalGroup group(n);
    detail::EngineConfig cfg;
    cfg.batch = 8;
    detail::ReplicateEngine<detail::CpuWorker, comm::LocalGroup, Sharded> e(group, m.architecture(), 0.0f, optim::adam(),
                                                                              m.parameters(), cfg);
    const std::vector<WorkerMemory> mem = e.memory();
    REQUIRE(mem.size() == n);
    std::size_t state = 0;
    for (const WorkerMemory& w : mem) {
      CHECK(w.optimizer_state == 2 * w.parameters);  // Adam: two moments of the slice it updates
      CHECK(w.optimizer_state <= 2 * (p / n + 16));  // 1/N, up to a cache line of slice alignment
      state += w.optimizer_state;
    }
    CHECK(state == 2 * p);  // every moment held once, by one worker
  }
}
