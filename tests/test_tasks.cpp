// Task parallelism: the pool on threads (order, balancing, failures, the cores it shares out),
// k-fold splits, grid and random search, ensembles, and evaluation that counts every row once.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "tessera/tessera.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "support.hpp"

using namespace tessera;
using tessera::test::ErrorWith;

namespace {
/// k Gaussian blobs in d dimensions, class c centred at 3 * e_c, rows in class order c = i % k.
data::Dataset blobs(std::size_t n, std::size_t d, std::size_t k, std::uint64_t seed = 3) {
  Matrix x(n, d);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t c = i % k;
    y[i] = float(c);
    for (std::size_t j = 0; j < d; ++j) x(i, j) = rng::normal(seed, rng::Stream::user, i * d + j, 0) + (j == c ? 3.0f : 0.0f);
  }
  return {std::move(x), std::move(y)};
}
data::Dataset digits() {
  return data::read_csv(std::string(TESSERA_SOURCE_DIR) + "/data/digits.csv", {.label = data::last_column});
}
bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
std::vector<float> params(const Model& m) { return {m.parameters().begin(), m.parameters().end()}; }

/// One small deterministic fit per task, seeded by the task index: its parameters.
/// (A global batch of 16 rows over the task's threads, so that every pool shape trains the same steps.)
std::vector<float> seeded_fit(const data::Dataset& d, const tasks::Context& c) {
  Model m = models::mlp({d.cols(), 8, 3}, act::tanh, loss::softmax_cross_entropy, {.seed = c.index});
  Trainer<> t({.batch_size = 16 / c.threads, .epochs = 3, .seed = c.index, .workers = c.threads, .deterministic = true,
               .progress = Progress::never},
              optim::adam(1e-2));
  t.fit(m, d);
  return params(m);
}
}  // namespace

TEST_CASE("the pool returns outcomes in task order, whatever order they finish in", "[tasks]") {
  const auto out = tasks::run(
      20,
      [](const tasks::Context& c) {
        std::this_thread::sleep_for(std::chrono::milliseconds((20 - c.index) % 5));
        return c.index * 10;
      },
      {.slots = 3, .threads_per_task = 1});
  REQUIRE(out.size() == 20);
  for (std::size_t i = 0; i < out.size(); ++i) {
    CHECK(out[i].index == i);
    REQUIRE(out[i].ok());
    CHECK(*out[i].value == i * 10);
    CHECK(out[i].slot < 3);
  }
  CHECK(tasks::run(0, [](const tasks::Context&) { return 1; }).empty());
}

TEST_CASE("a free slot takes the next task: a long task does not hold back the short ones", "[tasks]") {
  // task 0 takes 300 ms, tasks 1-8 about 1 ms: whichever slot took task 0 runs nothing else
  const auto out = tasks::run(
      9,
      [](const tasks::Context& c) {
        std::this_thread::sleep_for(std::chrono::milliseconds(c.index == 0 ? 300 : 1));
        return c.slot;
      },
      {.slots = 2, .threads_per_task = 1});
  for (std::size_t i = 1; i < out.size(); ++i) CHECK(out[i].slot != out[0].slot);
  CHECK(out[0].seconds >= 0.29);
}

TEST_CASE("a task that throws keeps its error; the others finish", "[tasks]") {
  const auto out = tasks::run(
      6,
      [](const tasks::Context& c) -> double {
        if (c.index == 2) throw Error(ErrorKind::invalid_argument, "task 2 has a bad setting");
        if (c.index == 4) throw std::runtime_error("task 4 ran out of luck");
        return 1.5 * static_cast<double>(c.index);
      },
      {.slots = 2});
  for (std::size_t i : {0, 1, 3, 5}) {
    REQUIRE(out[i].ok());
    CHECK(*out[i].value == 1.5 * static_cast<double>(i));
    CHECK(out[i].error.empty());
  }
  CHECK_FALSE(out[2].ok());
  CHECK(out[2].error == "tessera: task 2 has a bad setting");
  CHECK(out[4].error == "task 4 ran out of luck");
}

TEST_CASE("the pool shares the cores: slots x threads, and a Trainer in a task takes its share", "[tasks]") {
  const auto seen = tasks::run(
      4, [](const tasks::Context& c) { return std::pair<std::size_t, std::size_t>{c.threads, Trainer<>({}, optim::sgd(0.1)).workers()}; },
      {.slots = 2, .cores = 6});
  for (const auto& o : seen) {
    CHECK(o.value->first == 3);   // 6 cores over 2 slots
    CHECK(o.value->second == 3);  // workers = 0 inside the task: its 3 cores
  }
  // outside a task, workers = 0 is one per hardware thread again
  CHECK(Trainer<>({}, optim::sgd(0.1)).workers() == detail::hardware_threads());
  // a pool inside a task shares that task's cores, not the machine's
  const auto nested = tasks::run(
      1,
      [](const tasks::Context&) {
        return tasks::run(4, [](const tasks::Context& c) { return c.threads; }, {.slots = 2}).front().value.value();
      },
      {.slots = 1, .threads_per_task = 4});
  CHECK(*nested.front().value == 2);
}

TEST_CASE("a task's OpenMP share survives a fit of several workers; slots are never idle", "[tasks]") {
#if defined(_OPENMP)
  const data::Dataset d = blobs(96, 4, 3);
  const auto out = tasks::run(
      2,
      [&](const tasks::Context& c) {
        Model m = models::softmax_regression(4, 3, {.seed = 1});
        Trainer<>({.batch_size = 8, .epochs = 1, .workers = 2, .progress = Progress::never}, optim::sgd(0.1)).fit(m, d);
        return std::pair<std::size_t, int>{c.threads, omp_get_max_threads()};
      },
      {.slots = 2, .cores = 6});
  for (const auto& o : out) CHECK(static_cast<int>(o.value->first) == o.value->second);
#endif
  // 2 tasks on 8 asked slots of 16 cores: 2 slots of 8 cores, not 8 slots of 2 with 6 idle
  const auto shares = tasks::run(2, [](const tasks::Context& c) { return c.threads; }, {.slots = 8, .cores = 16});
  for (const auto& o : shares) CHECK(*o.value == 8);
}

TEST_CASE("the same seeds give the same bits sequentially and on 2 threads", "[tasks]") {
  const data::Dataset d = blobs(120, 4, 3);
  const auto run = [&](tasks::PoolOptions o) {
    return tasks::run(6, [&](const tasks::Context& c) { return seeded_fit(d, c); }, o);
  };
  const auto sequential = run({.slots = 1, .threads_per_task = 1});
  const auto two_slots = run({.slots = 2, .threads_per_task = 1});
  const auto two_threads_each = run({.slots = 1, .threads_per_task = 2});
  for (std::size_t i = 0; i < 6; ++i) {
    INFO("task " << i);
    CHECK(same_bits(*sequential[i].value, *two_slots[i].value));
    CHECK(same_bits(*sequential[i].value, *two_threads_each[i].value));
  }
}

TEST_CASE("codecs carry results between processes and refuse short input", "[tasks]") {
  std::string bytes;
  using V = std::vector<std::pair<std::string, double>>;
  const V v{{"a", 1.0}, {"bb", -2.5}};
  tasks::Codec<V>::write(bytes, v);
  std::string_view in = bytes;
  CHECK(tasks::Codec<V>::read(in) == v);
  CHECK(in.empty());
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    std::string_view part(bytes.data(), cut);
    CHECK_THROWS_MATCHES(tasks::Codec<V>::read(part), Error, ErrorWith(ErrorKind::format, "ends early"));
  }
  const Model m = models::mlp({3, 4, 2}, act::relu, loss::softmax_cross_entropy, {.seed = 9});
  std::string mb;
  tasks::Codec<Model>::write(mb, m);
  std::string_view min = mb;
  CHECK(tasks::Codec<Model>::read(min) == m);
}

TEST_CASE("k-fold: every row tested once, folds balanced, classes stratified, seeded", "[tasks][folds]") {
  const data::Dataset d = digits();
  for (bool stratify : {false, true}) {
    INFO("stratify " << stratify);
    const auto folds = data::kfold(d, {.k = 5, .seed = 7, .stratify = stratify});
    REQUIRE(folds.size() == 5);
    std::vector<int> tested(d.rows(), 0);
    std::size_t smallest = d.rows(), largest = 0;
    for (const auto& f : folds) {
      CHECK(f.train.size() + f.test.size() == d.rows());
      CHECK(std::is_sorted(f.test.begin(), f.test.end()));
      std::set<std::size_t> test(f.test.begin(), f.test.end());
      for (std::size_t r : f.train) CHECK(test.count(r) == 0);
      for (std::size_t r : f.test) ++tested[r];
      smallest = std::min(smallest, f.test.size());
      largest = std::max(largest, f.test.size());
    }
    CHECK(std::all_of(tested.begin(), tested.end(), [](int t) { return t == 1; }));
    CHECK(largest - smallest <= 1);
    if (stratify) {
      for (std::size_t c = 0; c < 10; ++c) {
        std::size_t lo = d.rows(), hi = 0;
        for (const auto& f : folds) {
          const auto n = static_cast<std::size_t>(
              std::count_if(f.test.begin(), f.test.end(), [&](std::size_t r) { return d.targets[r] == float(c); }));
          lo = std::min(lo, n);
          hi = std::max(hi, n);
        }
        CHECK(hi - lo <= 1);
      }
    }
    CHECK(data::fold_of_rows(d, {.k = 5, .seed = 7, .stratify = stratify}) ==
          data::fold_of_rows(d, {.k = 5, .seed = 7, .stratify = stratify}));
    CHECK(data::fold_of_rows(d, {.k = 5, .seed = 7, .stratify = stratify}) !=
          data::fold_of_rows(d, {.k = 5, .seed = 8, .stratify = stratify}));
  }
  CHECK_THROWS_MATCHES(data::kfold(d, {.k = 1}), Error, ErrorWith(ErrorKind::invalid_argument, "k must be at least 2"));
  const data::Dataset three = blobs(3, 2, 3);
  CHECK_THROWS_MATCHES(data::kfold(three, {.k = 4}), Error, ErrorWith(ErrorKind::invalid_argument, "4 folds of 3 rows"));
}

TEST_CASE("grids list every combination once; random search draws reproducibly inside its ranges", "[tasks][search]") {
  select::Grid g;
  g.hidden = {{}, {16}, {16, 8}};
  g.activations = {Activation::relu, Activation::tanh};
  g.learning_rates = {1e-3, 1e-2};
  g.weight_decays = {0.0f, 1e-3f};
  const auto points = g.points();
  CHECK(points.size() == (1 + 2 + 2) * 2 * 2);  // no activation variants without hidden layers
  std::set<std::string> seen;
  for (const auto& p : points) seen.insert(p.describe());
  CHECK(seen.size() == points.size());
  CHECK(points.front().hidden.empty());
  CHECK(points.front().optimizer.learning_rate == 1e-3);
  CHECK(points[1].weight_decay == 1e-3f);  // the last list varies fastest

  select::RandomSearch rs;
  rs.count = 50;
  rs.seed = 4;
  rs.learning_rate_min = 1e-4;
  rs.learning_rate_max = 1e-1;
  rs.weight_decay_min = 1e-5;
  rs.weight_decay_max = 1e-2;
  rs.hidden = {{8}, {32}};
  rs.batch_sizes = {16, 64};
  const auto a = rs.points(), b = rs.points();
  REQUIRE(a.size() == 50);
  std::set<std::size_t> batches;
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].describe() == b[i].describe());
    CHECK(a[i].optimizer.learning_rate >= 1e-4);
    CHECK(a[i].optimizer.learning_rate <= 1e-1);
    CHECK(a[i].weight_decay >= 1e-5f);
    CHECK(a[i].weight_decay <= 1e-2f);
    batches.insert(a[i].batch_size);
  }
  CHECK(batches.size() == 2);
  rs.seed = 5;
  CHECK(rs.points().front().optimizer.learning_rate != a.front().optimizer.learning_rate);
}

TEST_CASE("a candidate's global batch splits over the workers and ranks of its task", "[tasks][search]") {
  select::Candidate c;
  c.batch_size = 24;
  CHECK(c.trainer_options(false, 1, 1).batch_size == 24);
  const auto two = c.trainer_options(false, 2, 1);
  CHECK((two.workers == 2 && two.batch_size == 12));
  const auto five = c.trainer_options(false, 5, 1);  // 24 rows over 4 workers, the most that divide it
  CHECK((five.workers == 4 && five.batch_size == 6));
  const auto ranks = c.trainer_options(true, 2, 3);
  CHECK((ranks.workers == 2 && ranks.batch_size == 4 && ranks.deterministic));
  CHECK_THROWS_MATCHES(c.trainer_options(false, 1, 5), Error,
                       ErrorWith(ErrorKind::invalid_argument, "a batch of 24 rows does not divide over 5 ranks"));
}

TEST_CASE("grid search: every point scored on every fold, the best refit; a failing point leaves the rest", "[tasks][search]") {
  const data::Dataset d = blobs(300, 5, 3);
  select::Grid g;
  g.base.epochs = 5;
  g.base.batch_size = 20;
  g.hidden = {{}, {8}};
  g.learning_rates = {1e-3, 3e-2};
  auto points = g.points();
  select::Candidate bad = points.front();
  bad.batch_size = 0;  // the trainer refuses it on every fold
  points.insert(points.begin() + 1, bad);
  const auto r = select::search(d, points, {.folds = {4, 1, true}, .deterministic = true}, tasks::OnThreads{{.slots = 2}});
  REQUIRE(r.points.size() == points.size());
  CHECK(r.metric == select::Metric::accuracy);
  CHECK_FALSE(r.points[1].scores.ok());
  CHECK_THAT(r.points[1].scores.error, Catch::Contains("fold 1:") && Catch::Contains("batch_size must be at least 1"));
  for (std::size_t i : {0, 2, 3, 4}) {
    INFO("point " << i << ": " << r.points[i].scores.error);
    REQUIRE(r.points[i].scores.ok());
    CHECK(r.points[i].scores.folds.size() == 4);
    CHECK(r.points[i].scores.mean > 0.5);
  }
  REQUIRE(r.found());
  for (const auto& p : r.points)
    if (p.scores.ok()) CHECK(p.scores.mean <= r.best_point().scores.mean);
  CHECK(r.model.parameter_count() > 0);
  REQUIRE(r.model.input_transform() != nullptr);  // the refit serves raw rows
  CHECK(metrics::accuracy(r.model.predict_classes(r.model.transform_input(d.x())), d.targets) > 0.8);
  const std::string table = r.table();
  CHECK_THAT(table, Catch::Contains("<- best") && Catch::Contains("failed"));

  // the same search sequentially: the same bits for every fold of every point
  const auto s = select::search(d, points, {.folds = {4, 1, true}, .deterministic = true, .refit = false},
                                tasks::OnThreads{{.slots = 1, .threads_per_task = 2}});
  for (std::size_t i = 0; i < points.size(); ++i)
    for (std::size_t f = 0; f < 4; ++f)
      if (r.points[i].scores.ok()) CHECK(same_bits(r.points[i].scores.folds[f], s.points[i].scores.folds[f]));
}

TEST_CASE("a point that diverges is reported with its error; the other points are ranked", "[tasks][search]") {
  data::Dataset d = blobs(200, 3, 2);
  for (std::size_t r = 0; r < d.rows(); ++r) d.targets[r] = d.features(r, 0) - 2.0f * d.features(r, 2);
  select::Candidate calm;
  calm.loss = Loss::mean_squared_error;
  calm.optimizer = optim::sgd(0.05);
  calm.epochs = 5;
  calm.batch_size = 10;
  select::Candidate wild = calm;
  wild.optimizer = optim::sgd(1e4);
  const auto r = select::search(d, {calm, wild}, {.folds = {3, 0, false}}, tasks::OnThreads{{.slots = 2}});
  CHECK(r.metric == select::Metric::r2);
  REQUIRE(r.points[0].scores.ok());
  CHECK(r.points[0].scores.mean > 0.95);
  CHECK_FALSE(r.points[1].scores.ok());
  CHECK_THAT(r.points[1].scores.error, Catch::Contains("fold 1: tessera: Trainer::fit: the loss became") && Catch::Contains("Lower the learning rate"));
  CHECK(r.best == 0);
}

TEST_CASE("scores: the mean and standard deviation of the folds; a lower-is-better metric ranks the lowest first", "[tasks][search]") {
  const data::Dataset d = blobs(240, 4, 3);
  select::Grid g;
  g.base.epochs = 4;
  g.base.batch_size = 24;
  g.learning_rates = {1e-3, 3e-2};
  const auto points = g.points();
  for (select::Metric m : {select::Metric::accuracy, select::Metric::log_loss, select::Metric::loss}) {
    INFO(select::to_string(m));
    const auto r = select::search(d, points, {.folds = {4, 3, true}, .metric = m, .refit = false});
    REQUIRE(r.found());
    CHECK(r.metric == m);
    for (const auto& p : r.points) {
      double mean = 0.0, var = 0.0;
      for (double f : p.scores.folds) mean += f / 4.0;
      for (double f : p.scores.folds) var += (f - mean) * (f - mean) / 4.0;
      CHECK(p.scores.mean == Approx(mean).epsilon(1e-12));
      CHECK(p.scores.stddev == Approx(std::sqrt(var)).margin(1e-12));
    }
    const double a = r.points[0].scores.mean, b = r.points[1].scores.mean;
    REQUIRE(a != b);
    const std::size_t better = select::higher_is_better(m) ? (a > b ? 0 : 1) : (a < b ? 0 : 1);
    CHECK(r.best == better);
    CHECK(r.best == 1);  // the faster rate fits these blobs better in 4 epochs, by every metric
  }
  CHECK_THROWS_MATCHES(select::search(d, points, {.metric = select::Metric::r2}).best_point(), Error,
                       ErrorWith(ErrorKind::runtime, "no candidate ran on every fold"));
}

TEST_CASE("a search refuses a shard of a data set", "[tasks][search]") {
  data::Dataset d = blobs(60, 3, 3);
  d.shard = {.index = 0, .count = 2, .first_row = 0, .total_rows = 120};
  select::Candidate c;
  CHECK_THROWS_MATCHES(select::search(d, {c}), Error, ErrorWith(ErrorKind::invalid_argument, "is shard 0 of 2"));
}

TEST_CASE("cross-validation fits the standardizer inside each fold", "[tasks][search]") {
  // a feature on a huge offset and scale: without standardizing, Adam at this rate cannot fit it
  data::Dataset d = blobs(200, 3, 2);
  for (std::size_t r = 0; r < d.rows(); ++r) d.features(r, 0) = d.features(r, 0) * 1000.0f + 5e4f;
  select::Candidate c;
  c.epochs = 10;
  c.batch_size = 10;
  c.optimizer = optim::adam(1e-2);
  const auto with = select::cross_validate(d, c, {.folds = {5, 2, true}});
  REQUIRE(with.ok());
  CHECK(with.folds.size() == 5);
  CHECK(with.mean > 0.9);
  CHECK(with.stddev >= 0.0);
  // what a fold's score is: the fold's test rows standardized with the fold's training statistics
  const auto folds = data::kfold(d, {.k = 5, .seed = 2, .stratify = true});
  data::Dataset train = d.subset(folds[0].train), test = d.subset(folds[0].test);
  const data::Standardizer s(train.x());
  s.transform_in_place(train.features);
  s.transform_in_place(test.features);
  Model m = c.make_model(3, 2);
  Trainer<> t(c.trainer_options(false), c.optimizer);
  t.fit(m, train);
  CHECK(same_bits(t.evaluate(m, test).accuracy, with.folds[0]));
}

TEST_CASE("an ensemble averages its members' probabilities and keeps the errors of those that fail", "[tasks][search]") {
  const data::Dataset all = digits();
  auto [train, test] = data::train_test_split(all, {.test_fraction = 0.25, .seed = 3});
  std::vector<select::Candidate> members(3);
  for (std::size_t i = 0; i < 3; ++i) {
    members[i].hidden = {32};
    members[i].epochs = 8;
    members[i].seed = 10 + i;
  }
  members.push_back(members.front());
  members.back().batch_size = 0;
  const select::Ensemble e = select::train_ensemble(train, members, {}, tasks::OnThreads{{.slots = 2}});
  REQUIRE(e.members.size() == 3);
  REQUIRE(e.errors.size() == 1);
  CHECK_THAT(e.errors.front(), Catch::StartsWith("member 3:"));
  double best = 0.0, sum = 0.0;
  for (const Model& m : e.members) {
    const double a = metrics::accuracy(m.predict_classes(m.transform_input(test.x())), test.targets);
    best = std::max(best, a);
    sum += a;
  }
  const double ens = e.accuracy(test);
  CHECK(ens >= sum / 3.0 - 1e-9);
  CHECK(ens > 0.93);
  const Matrix p = e.predict(test.x());
  for (std::size_t r = 0; r < p.rows(); ++r) {
    double s = 0.0;
    for (std::size_t j = 0; j < p.cols(); ++j) s += p(r, j);
    CHECK(s == Approx(1.0).epsilon(1e-5));
  }
  select::Ensemble none;
  CHECK_THROWS_MATCHES(none.predict(test.x()), Error, ErrorWith(ErrorKind::runtime, "no member trained"));
}

TEST_CASE("evaluate counts every row once, with the same bits on any number of workers", "[tasks][evaluate]") {
  const data::Dataset d = blobs(2501, 6, 4);  // not a multiple of any block or worker count
  Model m = models::mlp({6, 10, 4}, act::relu, loss::softmax_cross_entropy, {.seed = 2, .weight_decay = 1e-3f});
  Trainer<>({.batch_size = 32, .epochs = 2, .progress = Progress::never}, optim::adam(1e-2)).fit(m, d);
  const Evaluation one = Trainer<>({.workers = 1}, optim::sgd(0.1)).evaluate(m, d);
  CHECK(one.rows == d.rows());
  CHECK(one.accuracy == Approx(metrics::accuracy(m, d)).epsilon(1e-12));
  CHECK(one.log_loss == Approx(metrics::log_loss(m, d)).epsilon(1e-9));
  CHECK(one.loss == Approx(m.loss_value(d.x(), d.targets)).epsilon(1e-6));
  for (std::size_t w : {2, 3, 4, 7}) {
    INFO(w << " workers");
    const Evaluation e = Trainer<>({.workers = w}, optim::sgd(0.1)).evaluate(m, d);
    CHECK(e.rows == d.rows());
    CHECK(same_bits(e.loss, one.loss));
    CHECK(same_bits(e.accuracy, one.accuracy));
    CHECK(same_bits(e.log_loss, one.log_loss));
  }
  // regression: MSE and R^2 from the same table
  data::Dataset reg = blobs(777, 3, 2);
  for (std::size_t r = 0; r < reg.rows(); ++r) reg.targets[r] = reg.features(r, 0) * 2.0f - reg.features(r, 1) + 0.5f;
  Model lin = models::linear_regression(3, {.seed = 1});
  Trainer<>({.batch_size = 16, .epochs = 3, .progress = Progress::never}, optim::adam(3e-2)).fit(lin, reg);
  const Evaluation r1 = Trainer<>({.workers = 1}, optim::sgd(0.1)).evaluate(lin, reg);
  const Evaluation r3 = Trainer<>({.workers = 3}, optim::sgd(0.1)).evaluate(lin, reg);
  CHECK(r1.mse == Approx(metrics::mse(lin, reg)).epsilon(1e-9));
  CHECK(r1.r2 == Approx(metrics::r2(lin, reg)).epsilon(1e-9));
  CHECK(same_bits(r1.mse, r3.mse));
  CHECK(same_bits(r1.r2, r3.r2));
  // a shard held by one process alone: its own rows
  data::Dataset shard = d.subset(std::vector<std::size_t>{0, 1, 2, 3, 4});
  shard.shard = {.index = 1, .count = 3, .first_row = 5, .total_rows = 15};
  CHECK(Trainer<>({.workers = 2}, optim::sgd(0.1)).evaluate(m, shard).rows == 5);
}
