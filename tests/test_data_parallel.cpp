// Data parallelism on threads: equivalence with one worker, bitwise determinism across worker
// counts, local SGD, uneven data, and failures that end the fit instead of hanging it.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <limits>
#include <thread>

#include "support.hpp"
#include "tessera/tessera.hpp"

using namespace tessera;

namespace {
data::Dataset blobs(std::size_t n, std::size_t d, std::size_t k, std::uint64_t seed = 3) {
  Matrix x(n, d);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t c = (i * 7 + i / 5) % k;
    y[i] = float(c);
    for (std::size_t j = 0; j < d; ++j) x(i, j) = rng::normal(seed, rng::Stream::user, i * d + j, 0) + (j == c ? 2.0f : 0.0f);
  }
  return {std::move(x), std::move(y)};
}

template <class... Ps>
std::vector<float> train(const data::Dataset& d, TrainerOptions o, optim::Optimizer opt = optim::momentum(0.05)) {
  Model m = models::mlp({d.cols(), 16, 3}, act::tanh, loss::softmax_cross_entropy, {.seed = 5, .weight_decay = 1e-3f});
  o.progress = Progress::never;
  Trainer<Ps...> t(o, opt);
  t.fit(m, d);
  return {m.parameters().begin(), m.parameters().end()};
}

double max_relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0.0, scale = 0.0;
  for (float v : b) scale = std::max(scale, double(std::fabs(v)));
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(double(a[i]) - b[i]) / scale);
  return worst;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
}  // namespace

TEMPLATE_TEST_CASE("N workers x batch b equal one worker with batch N*b", "[data_parallel][equivalence]", Uniform,
                   Random, Stratified) {
  const auto d = blobs(1003, 6, 3);  // 1003: no worker count divides it
  const std::size_t b = 12;
  const auto reference = train<DataSplit<TestType>>(d, {.batch_size = 12 * 4, .epochs = 3, .seed = 9, .workers = 1});
  for (std::size_t n : {1u, 2u, 3u, 4u}) {
    CAPTURE(n);
    // the same global batch (48 samples) cut into n shares
    const auto p = train<DataSplit<TestType>>(d, {.batch_size = 4 * b / n, .epochs = 3, .seed = 9, .workers = n});
    CHECK(max_relative_difference(p, reference) < 1e-5);  // float summation order only
  }
}

TEST_CASE("deterministic mode: bitwise-identical parameters for 1, 2, 3 and 4 workers", "[data_parallel][determinism]") {
  const auto d = blobs(997, 5, 3);
  const auto opt = optim::adam(3e-3);
  const auto one = train<DataSplit<Random>>(d, {.batch_size = 60, .epochs = 3, .seed = 4, .workers = 1, .deterministic = true}, opt);
  for (std::size_t n : {2u, 3u, 4u}) {
    CAPTURE(n);
    const auto p = train<DataSplit<Random>>(d, {.batch_size = 60 / n, .epochs = 3, .seed = 4, .workers = n, .deterministic = true}, opt);
    CHECK(bitwise_equal(p, one));
  }
  // run after run
  CHECK(bitwise_equal(one, train<DataSplit<Random>>(d, {.batch_size = 60, .epochs = 3, .seed = 4, .workers = 1, .deterministic = true}, opt)));
  // and it is the same computation as the default mode, up to summation order
  const auto plain = train<DataSplit<Random>>(d, {.batch_size = 60, .epochs = 3, .seed = 4, .workers = 1}, opt);
  CHECK(max_relative_difference(plain, one) < 1e-3);
}

TEST_CASE("the default mode is repeatable for a fixed number of workers", "[data_parallel][determinism]") {
  const auto d = blobs(500, 4, 3);
  const auto a = train<DataSplit<Random>>(d, {.batch_size = 16, .epochs = 2, .seed = 1, .workers = 3});
  const auto b = train<DataSplit<Random>>(d, {.batch_size = 16, .epochs = 2, .seed = 1, .workers = 3});
  CHECK(bitwise_equal(a, b));
}

TEST_CASE("micro-batches accumulate to the same gradient", "[data_parallel]") {
  const auto d = blobs(640, 4, 3);
  const auto whole = train<>(d, {.batch_size = 32, .epochs = 2, .seed = 2, .workers = 2});
  const auto micro = train<>(d, {.batch_size = 32, .epochs = 2, .seed = 2, .workers = 2, .micro_batches = 4});
  CHECK(max_relative_difference(micro, whole) < 1e-5);
}

TEST_CASE("local SGD converges to within a point of synchronous SGD", "[data_parallel][local_sgd]") {
  auto [tr, te] = data::train_test_split(blobs(3000, 8, 3, 11), {.test_fraction = 0.25, .seed = 1});
  auto accuracy_of = [&](auto trainer) {
    Model m = models::mlp({8, 32, 3}, act::relu, loss::softmax_cross_entropy, {.seed = 3});
    const History h = trainer.fit(m, tr);
    CHECK(h.workers == 2);
    CHECK(h.last().communication_seconds >= 0.0);
    return metrics::accuracy(m, te);
  };
  const TrainerOptions o{.batch_size = 32, .epochs = 8, .seed = 2, .workers = 2, .progress = Progress::never};
  const double sync = accuracy_of(Trainer<DataSplit<Random>>(o, optim::sgd(0.05)));
  const double local = accuracy_of(Trainer<DataSplit<Random>, Sync<Periodic<8>>>(o, optim::sgd(0.05)));
  const double per_epoch = accuracy_of(Trainer<DataSplit<Random>, Sync<Periodic<36>>>(o, optim::sgd(0.05)));  // 2250/64 steps
  CAPTURE(sync, local, per_epoch);
  CHECK(sync > 0.85);
  CHECK(local >= sync - 0.01);
  CHECK(per_epoch >= sync - 0.01);
}

TEST_CASE("every worker takes part in every step when samples do not divide evenly", "[data_parallel][uneven]") {
  // 10 samples, 4 workers x 4: one step of 10 (shares 3, 3, 2, 2), then nothing is dropped.
  const auto d = blobs(10, 3, 3);
  Model m = models::softmax_regression(3, 3, {.seed = 1});
  Trainer<> t({.batch_size = 4, .epochs = 2, .workers = 4, .progress = Progress::never}, optim::sgd(0.1));
  const History h = t.fit(m, d);
  CHECK(h.epochs.size() == 2);
  // 3 samples and 4 workers: one worker has an empty share every step
  const auto tiny = blobs(3, 3, 3);
  Model m2 = models::softmax_regression(3, 3, {.seed = 1});
  Trainer<> t2({.batch_size = 1, .epochs = 3, .workers = 4, .progress = Progress::never}, optim::sgd(0.1));
  CHECK_NOTHROW(t2.fit(m2, tiny));
  // the result equals one worker with batch 3
  Model m3 = models::softmax_regression(3, 3, {.seed = 1});
  Trainer<> t3({.batch_size = 4, .epochs = 3, .workers = 1, .progress = Progress::never}, optim::sgd(0.1));
  t3.fit(m3, tiny);
  for (std::size_t i = 0; i < m2.parameter_count(); ++i) CHECK(m2.parameters()[i] == Approx(m3.parameters()[i]).margin(1e-6));
}

TEST_CASE("a worker that fails ends the fit with its message, without a hang", "[data_parallel][errors]") {
  auto d = blobs(400, 4, 3);
  d.features(300, 2) = std::numeric_limits<float>::infinity();  // in the last worker's share (Uniform)
  Model m = models::mlp({4, 8, 3}, act::relu, loss::softmax_cross_entropy, {.seed = 1});
  const std::vector<float> before(m.parameters().begin(), m.parameters().end());
  SECTION("synchronous") {
    Trainer<> t({.batch_size = 100, .epochs = 2, .workers = 4, .progress = Progress::never}, optim::sgd(0.1));
    CHECK_THROWS_WITH(t.fit(m, d), Catch::Contains("the loss became") && Catch::Contains("epoch 1, step 1"));
  }
  SECTION("local SGD: only one worker sees the bad sample") {
    Trainer<Sync<Periodic<3>>> t({.batch_size = 100, .epochs = 2, .workers = 4, .progress = Progress::never}, optim::sgd(0.1));
    CHECK_THROWS_WITH(t.fit(m, d), Catch::Contains("the loss became"));
  }
  CHECK(std::equal(before.begin(), before.end(), m.parameters().begin()));
}

TEST_CASE("history splits time into compute and communication", "[data_parallel]") {
  const auto d = blobs(2000, 16, 3);
  Model m = models::mlp({16, 64, 3}, act::relu, loss::softmax_cross_entropy);
  Trainer<> t({.batch_size = 32, .epochs = 1, .workers = 2, .progress = Progress::never}, optim::sgd(0.1));
  const History h = t.fit(m, d);
  const EpochRecord& e = h.last();
  CHECK(e.compute_seconds > 0.0);
  CHECK(e.communication_seconds > 0.0);
  CHECK(e.compute_seconds + e.communication_seconds <= e.seconds * 1.05);
}

TEST_CASE("option errors name the option", "[data_parallel][errors]") {
  CHECK_THROWS_WITH(Trainer<>({.batch_size = 4, .micro_batches = 5}, optim::sgd(0.1)), Catch::Contains("micro_batches must be in [1, batch_size = 4]"));
  Model m = models::softmax_regression(3, 3);
  Trainer<Sync<Periodic<2>>> t({.deterministic = true}, optim::sgd(0.1));
  CHECK_THROWS_WITH(t.fit(m, blobs(10, 3, 3)), Catch::Contains("deterministic mode applies to Sync<EveryStep>"));
}

TEST_CASE("Load<Prefetch> trains exactly as Load<Sequential>", "[data_parallel][prefetch]") {
  const auto d = blobs(777, 5, 3);
  for (std::size_t n : {1u, 3u}) {
    CAPTURE(n);
    const TrainerOptions o{.batch_size = 20, .epochs = 2, .seed = 6, .workers = n};
    CHECK(bitwise_equal(train<DataSplit<Random>, Load<Prefetch>>(d, o), train<DataSplit<Random>>(d, o)));
    CHECK(bitwise_equal(train<Load<Prefetch>, Sync<Periodic<5>>>(d, o), train<Sync<Periodic<5>>>(d, o)));
  }
}

TEST_CASE("the prefetcher hands out every batch in order with bounded slots", "[prefetch]") {
  std::atomic<int> produced{0};
  detail::Prefetcher<std::vector<int>> pf(50, 2, [&](std::size_t s, std::vector<int>& b) {
    b.assign(3, static_cast<int>(s));
    ++produced;
  });
  for (std::size_t s = 0; s < 50; ++s) {
    for (int reader = 0; reader < 2; ++reader) CHECK(pf.acquire(s) == std::vector<int>(3, static_cast<int>(s)));
    CHECK(produced.load() <= static_cast<int>(s) + 2);  // never more than two slots ahead
    pf.release(s);
    pf.release(s);
  }
}

TEST_CASE("an error in the producer reaches the consumer, no deadlock", "[prefetch][errors]") {
  detail::Prefetcher<int> pf(10, 1, [](std::size_t s, int& b) {
    if (s == 3) throw Error(ErrorKind::io, "batch 3 could not be read");
    b = static_cast<int>(s);
  });
  for (std::size_t s = 0; s < 3; ++s) {
    CHECK(pf.acquire(s) == static_cast<int>(s));
    pf.release(s);
  }
  CHECK_THROWS_WITH(pf.acquire(3), Catch::Contains("batch 3 could not be read"));
}

TEST_CASE("abort wakes a consumer waiting for a batch that will never come", "[prefetch][errors]") {
  detail::Prefetcher<int> pf(10, 2, [](std::size_t s, int& b) { b = static_cast<int>(s); });
  pf.acquire(0);
  pf.release(0);  // only one of two consumers: slot 0 stays busy, so step 2 can never be produced
  pf.acquire(1);
  std::thread aborter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    pf.abort();
  });
  CHECK_THROWS_WITH(pf.acquire(2), Catch::Contains("stopped because a worker failed"));
  aborter.join();
}

TEST_CASE("a worker failure with Load<Prefetch> and local SGD ends the fit", "[data_parallel][prefetch][errors]") {
  auto d = blobs(400, 4, 3);
  d.features(390, 1) = std::numeric_limits<float>::quiet_NaN();
  Model m = models::mlp({4, 8, 3}, act::relu, loss::softmax_cross_entropy, {.seed = 1});
  Trainer<Load<Prefetch>, Sync<Periodic<50>>> t({.batch_size = 10, .epochs = 3, .workers = 4, .progress = Progress::never},
                                                optim::sgd(0.1));
  CHECK_THROWS_WITH(t.fit(m, d), Catch::Contains("the loss became"));
}

TEST_CASE("local SGD on the digits reaches the synchronous accuracy within a point", "[data_parallel][local_sgd][digits]") {
  auto [train, test] = data::train_test_split(
      data::read_csv(std::string(TESSERA_SOURCE_DIR) + "/data/digits.csv", {.num_classes = 10}),
      {.test_fraction = 0.2, .seed = 42, .stratify = true});
  const data::Standardizer s(train.x());
  train = s.transform(train);
  test = s.transform(test);
  const TrainerOptions o{.batch_size = 16, .epochs = 15, .seed = 42, .workers = 2, .progress = Progress::never};
  std::vector<std::vector<float>> params;
  auto accuracy = [&](auto trainer) {
    Model m = models::mlp({64, 128, 10}, act::relu, loss::softmax_cross_entropy, {.seed = 42});
    trainer.fit(m, train);
    params.emplace_back(m.parameters().begin(), m.parameters().end());
    return metrics::accuracy(m, test);
  };
  const double sync = accuracy(Trainer<DataSplit<Stratified>>(o, optim::adam(2e-3)));
  const double every10 = accuracy(Trainer<DataSplit<Stratified>, Sync<Periodic<10>>>(o, optim::adam(2e-3)));
  // 1437 samples / (2 x 16) = 45 steps per epoch: sub-models trained for an epoch, then averaged
  const double per_epoch = accuracy(Trainer<DataSplit<Stratified>, Sync<Periodic<45>>>(o, optim::adam(2e-3)));
  CAPTURE(sync, every10, per_epoch);
  // three different trainings (measured: mean |difference| about 0.009), whatever their accuracy
  CHECK(max_relative_difference(params[1], params[0]) > 1e-3);
  CHECK(max_relative_difference(params[2], params[1]) > 1e-3);
  CHECK(sync > 0.94);
  CHECK(every10 >= sync - 0.01);
  CHECK(per_epoch >= sync - 0.01);
}

TEST_CASE("a shard of a data set trains only across processes", "[data_parallel][errors]") {
  const test::TempDir dir;
  const std::string path = dir.file("d.tsrd");
  Matrix x(40, 3, std::vector<float>(120, 0.5f));
  data::write_binary(data::Dataset(std::move(x), std::vector<float>(40, 1.0f)), path);
  const data::Dataset shard = data::read_binary_shard(path, 1, 2);
  Model m = models::linear_regression(3);
  Trainer<> t({.batch_size = 4, .epochs = 1, .workers = 2, .progress = Progress::never}, optim::sgd(0.1));
  CHECK_THROWS_MATCHES(t.fit(m, shard), Error,
                       test::ErrorWith(ErrorKind::invalid_argument,
                                       "Trainer::fit: the data set is shard 1 of 2; training on shards needs Reduce<MpiAllreduce>"));
}
