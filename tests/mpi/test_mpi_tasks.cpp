// The task pool over ranks and groups of ranks, run under mpirun with 1, 2, 3 and 4 ranks: every
// rank gets every outcome in task order, with the same bits as the tasks run one after another in
// one process (deterministic fits), on single ranks and on groups of 2 and of all ranks; a task
// that fails on one rank of its group ends only that task; a search over rank groups scores like
// one on threads; evaluation of per-rank shards counts every row once, as one process would.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include <mpi.h>

#include "tessera/mpi.hpp"
#include "tessera/tasks/mpi.hpp"
#include "tessera/tessera.hpp"

#include "blobs.hpp"
#include "../support.hpp"

using namespace tessera;
using tessera::test::blobs;

namespace {
int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}
int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

/// A deterministic fit seeded by the task: a global batch of 24 rows over the task's ranks and
/// threads. TrainerT trains over the ranks of the task's group (MpiAllreduce) or on threads.
template <class TrainerT>
std::vector<float> seeded_fit(const data::Dataset& d, const tasks::Context& c) {
  Model m = models::mlp({d.cols(), 8, 3}, act::tanh, loss::softmax_cross_entropy, {.seed = c.index});
  TrainerT t({.batch_size = 24 / c.ranks, .epochs = 2, .seed = c.index, .workers = 1, .deterministic = true,
              .progress = Progress::never},
             optim::adam(1e-2));
  t.fit(m, d);
  return {m.parameters().begin(), m.parameters().end()};
}

const data::Dataset& data_set() {
  static const data::Dataset d = blobs(240, 5);
  return d;
}

/// The outcomes of the tasks run one after another in this process.
const std::vector<tasks::Outcome<std::vector<float>>>& reference() {
  static const auto r = tasks::run(
      7, [](const tasks::Context& c) { return seeded_fit<Trainer<>>(data_set(), c); }, {.slots = 1, .threads_per_task = 1});
  return r;
}
}  // namespace

TEST_CASE("tasks on single ranks: every outcome on every rank, the sequential bits", "[mpi][tasks]") {
  const auto out = tasks::run_on_ranks(
      7, [](const tasks::Context& c) { return seeded_fit<Trainer<>>(data_set(), c); }, {.ranks_per_task = 1, .threads_per_rank = 1});
  REQUIRE(out.size() == 7);
  for (std::size_t i = 0; i < out.size(); ++i) {
    INFO("task " << i << ": " << out[i].error);
    CHECK(out[i].index == i);
    REQUIRE(out[i].ok());
    CHECK(same_bits(*out[i].value, *reference()[i].value));
    CHECK(out[i].slot < static_cast<std::size_t>(world_size()));
  }
}

TEST_CASE("tasks on groups of ranks train data-parallel on their group, to the sequential bits", "[mpi][tasks]") {
  for (int g : {2, world_size()}) {
    if (world_size() % g != 0 || g < 2) continue;
    INFO(g << " ranks per task");
    const auto out = tasks::run_on_ranks(
        7, [](const tasks::Context& c) { return seeded_fit<Trainer<Reduce<MpiAllreduce>>>(data_set(), c); },
        {.ranks_per_task = static_cast<std::size_t>(g), .threads_per_rank = 1});
    for (std::size_t i = 0; i < out.size(); ++i) {
      INFO("task " << i << ": " << out[i].error);
      REQUIRE(out[i].ok());
      CHECK(same_bits(*out[i].value, *reference()[i].value));
      CHECK(out[i].slot < static_cast<std::size_t>(world_size() / g));
    }
  }
}

TEST_CASE("a task that fails on one rank of its group ends that task only", "[mpi][tasks]") {
  const std::size_t g = world_size() % 2 == 0 ? 2 : 1;
  const auto out = tasks::run_on_ranks(
      6,
      [](const tasks::Context& c) {
        // task 2 fails on the last rank of its group only, before the fit its group waits in
        if (c.index == 2 && mpi::current()->rank() + 1 == mpi::current()->size())
          throw Error(ErrorKind::invalid_argument, "task 2 cannot read its settings on this rank");
        if (c.index == 4) throw Error(ErrorKind::runtime, "task 4 fails everywhere");
        return seeded_fit<Trainer<Reduce<MpiAllreduce>>>(data_set(), c);
      },
      {.ranks_per_task = g, .threads_per_rank = 1});
  for (std::size_t i : {0, 1, 3, 5}) {
    INFO("task " << i << ": " << out[i].error);
    REQUIRE(out[i].ok());
    CHECK(same_bits(*out[i].value, *reference()[i].value));
  }
  REQUIRE_FALSE(out[2].ok());
  CHECK_THAT(out[2].error, Catch::Contains("task 2 cannot read its settings on this rank"));
  REQUIRE_FALSE(out[4].ok());
  CHECK_THAT(out[4].error, Catch::Contains("task 4 fails everywhere"));
  CHECK_FALSE(mpi::job_failed());
  // the job goes on: a collective over every rank after the failures
  double one = 1.0;
  mpi::Communicator::world().all_reduce(&one, 1);
  CHECK(one == world_size());
}

TEST_CASE("a failure on a later rank of a group after the task's last collective is reported", "[mpi][tasks]") {
  if (world_size() % 2 != 0) return;
  const auto out = tasks::run_on_ranks(
      4,
      [](const tasks::Context& c) {
        auto params = seeded_fit<Trainer<Reduce<MpiAllreduce>>>(data_set(), c);
        if (c.index == 1 && mpi::current()->rank() == 1)
          throw Error(ErrorKind::runtime, "task 1 fails on its second rank after training");
        return params;
      },
      {.ranks_per_task = 2, .threads_per_rank = 1});
  REQUIRE_FALSE(out[1].ok());
  CHECK_THAT(out[1].error, Catch::Contains("rank 1 of the task's 2 ranks") &&
                               Catch::Contains("task 1 fails on its second rank after training"));
  for (std::size_t i : {0, 2, 3}) {
    REQUIRE(out[i].ok());
    CHECK(same_bits(*out[i].value, *reference()[i].value));
  }
}

TEST_CASE("a failure on one rank in the middle of a group's fit ends that task only", "[mpi][tasks]") {
  if (world_size() % 2 != 0) return;
  struct ThrowAtEpoch2 {
    bool armed;
    void on_epoch(const EpochRecord& r) const {
      if (armed && r.epoch == 2) throw Error(ErrorKind::runtime, "a callback fails in epoch 2 on one rank");
    }
  };
  const auto out = tasks::run_on_ranks(
      5,
      [](const tasks::Context& c) {
        Model m = models::mlp({data_set().cols(), 8, 3}, act::tanh, loss::softmax_cross_entropy, {.seed = c.index});
        Trainer<Reduce<MpiAllreduce>> t({.batch_size = 12, .epochs = 3, .seed = c.index, .workers = 1,
                                         .deterministic = true, .progress = Progress::never},
                                        optim::adam(1e-2));
        t.fit(m, data_set(), ThrowAtEpoch2{c.index == 2 && mpi::current()->rank() == 1});
        return std::vector<float>(m.parameters().begin(), m.parameters().end());
      },
      {.ranks_per_task = 2, .threads_per_rank = 1});
  REQUIRE_FALSE(out[2].ok());
  CHECK_THAT(out[2].error, Catch::Contains("a callback fails in epoch 2 on one rank"));
  for (std::size_t i : {0, 1, 3, 4}) {
    INFO("task " << i << ": " << out[i].error);
    CHECK(out[i].ok());
  }
  CHECK_FALSE(mpi::job_failed());
}

TEST_CASE("a search over rank groups scores every fold as a search on threads does", "[mpi][tasks][search]") {
  select::Grid grid;
  grid.base.epochs = 3;
  grid.base.batch_size = 24;
  grid.hidden = {{}, {6}};
  grid.learning_rates = {3e-3, 3e-2};
  const auto points = grid.points();
  const select::SearchOptions o{.folds = {3, 5, true}, .deterministic = true};
  const auto threads = select::search(data_set(), points, o, tasks::OnThreads{{.slots = 1, .threads_per_task = 1}});
  const std::size_t g = world_size() % 2 == 0 ? 2 : 1;
  const auto ranks = select::search<Trainer<Reduce<MpiAllreduce>>>(
      data_set(), points, o, tasks::OnRanks{{.ranks_per_task = g, .threads_per_rank = 1}});
  REQUIRE(ranks.points.size() == threads.points.size());
  for (std::size_t p = 0; p < points.size(); ++p) {
    INFO("point " << p << ": " << ranks.points[p].scores.error);
    REQUIRE(ranks.points[p].scores.ok());
    for (std::size_t f = 0; f < 3; ++f) CHECK(same_bits(ranks.points[p].scores.folds[f], threads.points[p].scores.folds[f]));
  }
  CHECK(ranks.best == threads.best);
  // the refit trains over every rank: the same bits as on one worker
  CHECK(same_bits(std::vector<float>(ranks.model.parameters().begin(), ranks.model.parameters().end()),
                  std::vector<float>(threads.model.parameters().begin(), threads.model.parameters().end())));
}

TEST_CASE("evaluate on per-rank shards counts every row once, with one process's bits", "[mpi][evaluate]") {
  const data::Dataset all = blobs(1001, 5);
  Model m = models::mlp({5, 7, 3}, act::relu, loss::softmax_cross_entropy, {.seed = 4, .weight_decay = 1e-3f});
  const Evaluation whole = Trainer<>({.workers = 1}, optim::sgd(0.1)).evaluate(m, all);
  const auto size = static_cast<std::size_t>(world_size()), rank = static_cast<std::size_t>(world_rank());
  const auto [lo, hi] = data::shard_rows(all.rows(), rank, size);
  std::vector<std::size_t> rows;
  for (std::size_t r = lo; r < hi; ++r) rows.push_back(r);
  data::Dataset shard = all.subset(rows);
  shard.shard = {.index = rank, .count = size, .first_row = lo, .total_rows = all.rows()};
  const Evaluation spread = Trainer<Reduce<MpiAllreduce>>({.workers = 2}, optim::sgd(0.1)).evaluate(m, shard);
  CHECK(spread.rows == all.rows());
  CHECK(same_bits(spread.loss, whole.loss));
  CHECK(same_bits(spread.accuracy, whole.accuracy));
  CHECK(same_bits(spread.log_loss, whole.log_loss));
  // shards that are not this rank's own: every rank refuses, naming the problem
  if (size > 1) {
    data::Dataset wrong = shard;
    wrong.shard.index = (rank + 1) % size;
    CHECK_THROWS_MATCHES(Trainer<Reduce<MpiAllreduce>>({.workers = 1}, optim::sgd(0.1)).evaluate(m, wrong), Error,
                         tessera::test::ErrorWith(ErrorKind::invalid_argument, "cannot evaluate"));
  }
}

TEST_CASE("a fit across ranks on a thread of tasks::run is refused before it calls MPI", "[mpi][tasks]") {
  const auto out = tasks::run(
      2, [](const tasks::Context& c) { return seeded_fit<Trainer<Reduce<MpiAllreduce>>>(data_set(), c); },
      {.slots = 2, .threads_per_task = 1});
  for (const auto& o : out) {
    CHECK_FALSE(o.ok());
    CHECK_THAT(o.error, Catch::Contains("must run on the thread that initialised MPI") &&
                            Catch::Contains("tasks::run_on_ranks"));
  }
  CHECK_FALSE(mpi::job_failed());
}

int main(int argc, char** argv) {
  mpi::Environment env(&argc, &argv);
  return Catch::Session().run(argc, argv);
}
