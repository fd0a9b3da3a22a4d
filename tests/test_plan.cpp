// Trainer::plan: what a fit will do, before anything is built - the policies, workers, batches,
// steps, a pipeline's stages and the memory per worker - and the progress line's time left.
#include <catch2/catch.hpp>

#include <string>

#include "support.hpp"
#include "tessera/partition.hpp"
#include "tessera/tessera.hpp"

using namespace tessera;

namespace {
data::Dataset rows(std::size_t n) {
  Matrix x(n, 8);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    y[i] = float(i % 4);
    for (std::size_t j = 0; j < 8; ++j) x(i, j) = float((i * 7 + j) % 5);
  }
  return {std::move(x), std::move(y)};
}
bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("plan: data parallelism on threads", "[plan]") {
  Model m = models::mlp({8, 32, 4}, act::relu, loss::softmax_cross_entropy, {.seed = 1});
  Trainer<DataSplit<Random>, Sync<Sharded>> t({.batch_size = 16, .epochs = 3, .workers = 2, .micro_batches = 2},
                                             optim::adam());
  const FitPlan p = t.plan(m, rows(1000));
  CHECK(p.policies == "DataSplit<Random>, Load<Sequential>, Partition<Replicate>, Reduce<ThreadAllreduce>, "
                      "Sync<Sharded>, Device<Cpu>");
  CHECK(p.workers == 2);
  CHECK(p.processes == 1);
  CHECK(p.replicas == 2);
  CHECK(p.batch == 16);
  CHECK(p.global_batch == 32);
  CHECK(p.steps_per_epoch == 32);  // ceil(1000 / 32)
  CHECK(p.micro_batches == 2);
  REQUIRE(p.memory_known);
  CHECK(p.memory.workers.size() == 2);
  // Adam's two moments, half of them per worker (Sync<Sharded>)
  CHECK(p.memory.largest_worker().optimizer_state == 2 * 4 * m.parameter_count() / 2);
  const std::string d = p.describe();
  CHECK(has(d, "workers: 2 per process x 1 process(es); 2 data-parallel replica(s)"));
  CHECK(has(d, "batch: 16 rows per replica per step, 32 per step in 2 micro-batches"));
  CHECK(has(d, "steps: 32 per epoch x 3 epochs"));
  CHECK(has(d, "memory (host): about "));
  // the plan trains nothing
  Model before = m;
  CHECK(std::equal(before.parameters().begin(), before.parameters().end(), m.parameters().begin()));
}

TEST_CASE("plan: a batch larger than the data is fitted to it, and a pipeline shows its stages", "[plan]") {
  Model m = models::mlp({8, 32, 32, 4}, act::relu, loss::softmax_cross_entropy, {.seed = 1});
  {
    Trainer<> t({.batch_size = 500, .workers = 2}, optim::sgd(0.1));
    const FitPlan p = t.plan(m, rows(100));
    CHECK(p.batch == 50);
    CHECK(p.steps_per_epoch == 1);
  }
  {
    Trainer<Partition<Layerwise>> t({.batch_size = 32, .workers = 3, .micro_batches = 4}, optim::sgd(0.1));
    const FitPlan p = t.plan(m, rows(640));
    CHECK(p.replicas == 1);
    CHECK(p.global_batch == 32);
    CHECK(p.steps_per_epoch == 20);
    CHECK(has(p.layout, "3 stages x 1 replica(s), 1F1B: "));
    CHECK(p.memory.workers.size() == 3);
  }
  {
    Trainer<Partition<Columnwise>> t({.batch_size = 32, .workers = 2}, optim::sgd(0.1));
    CHECK(has(t.plan(m, rows(64)).layout, "split by columns and rows over 2 workers"));
  }
  {
    Trainer<> t({.batch_size = 8, .workers = 1}, optim::sgd(0.1));
    CHECK_THROWS_MATCHES(t.plan(m, rows(0)), Error, test::ErrorWith(ErrorKind::invalid_argument, "no rows"));
  }
}

TEST_CASE("the progress line's time left reads as a clock", "[plan][progress]") {
  CHECK(detail::ProgressLine::clock_text(0.2) == "0s");
  CHECK(detail::ProgressLine::clock_text(42.4) == "42s");
  CHECK(detail::ProgressLine::clock_text(187) == "3m07s");
  CHECK(detail::ProgressLine::clock_text(7500) == "2h05m");
}
