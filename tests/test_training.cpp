// Training outcomes on synthetic and real data, determinism, and the errors fit() raises.
#include <catch2/catch.hpp>

#include <cstring>

#include "tessera/tessera.hpp"

using namespace tessera;

namespace {
/// n samples of d features; y = x . w_true + 0.5 + noise.
data::Dataset linear_data(std::size_t n, std::size_t d, float noise, std::vector<float>& w_true) {
  w_true.resize(d);
  for (std::size_t j = 0; j < d; ++j) w_true[j] = rng::normal(99, rng::Stream::user, j, 7);
  Matrix x(n, d);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    float s = 0.5f;
    for (std::size_t j = 0; j < d; ++j) s += (x(i, j) = rng::normal(1, rng::Stream::user, i * d + j, 0)) * w_true[j];
    y[i] = s + noise * rng::normal(2, rng::Stream::user, i, 0);
  }
  return {std::move(x), std::move(y)};
}
/// k Gaussian blobs in d dimensions, class c centred at 4 * e_c (Bayes accuracy above 99%).
data::Dataset blobs(std::size_t n, std::size_t d, std::size_t k) {
  Matrix x(n, d);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t c = i % k;
    y[i] = float(c);
    for (std::size_t j = 0; j < d; ++j) x(i, j) = rng::normal(3, rng::Stream::user, i * d + j, 0) + (j == c ? 4.0f : 0.0f);
  }
  return {std::move(x), std::move(y)};
}
data::Dataset digits() {
  return data::read_csv(std::string(TESSERA_SOURCE_DIR) + "/data/digits.csv", {.label = data::last_column});
}
}  // namespace

TEST_CASE("linear regression recovers the generating weights", "[training]") {
  std::vector<float> w;
  const auto d = linear_data(4000, 8, 0.01f, w);
  Model m = models::linear_regression(8, {.seed = 1});
  Trainer<DataSplit<Random>> t({.batch_size = 64, .epochs = 30, .seed = 1}, optim::sgd(0.05));
  const History h = t.fit(m, d);
  CHECK(h.last().loss < 1e-3);
  CHECK(h.last().loss < h.epochs.front().loss / 100);
  for (std::size_t j = 0; j < 8; ++j) CHECK(m.parameters()[j] == Approx(w[j]).margin(0.01));
  CHECK(m.parameters()[8] == Approx(0.5).margin(0.01));
  CHECK(t.evaluate(m, d).r2 > 0.999);
}

TEST_CASE("logistic regression separates two classes", "[training]") {
  auto d = blobs(2000, 4, 2);
  Model m = models::logistic_regression(4, {.seed = 2});
  Trainer<DataSplit<Random>> t({.batch_size = 32, .epochs = 10, .seed = 2}, optim::adam(1e-2));
  const History h = t.fit(m, d);
  CHECK(h.last().loss < 0.2);
  const Evaluation e = t.evaluate(m, d);
  CHECK(e.accuracy > 0.98);
  CHECK(e.log_loss == Approx(e.loss).epsilon(1e-3));
}

TEST_CASE("every optimizer and schedule lowers the loss of an MLP", "[training]") {
  const auto d = blobs(1500, 6, 3);
  const optim::Optimizer o = GENERATE(optim::sgd(0.1), optim::momentum(0.05), optim::nesterov(0.05), optim::adam(3e-3),
                                      optim::adamw(3e-3, 1e-2), optim::sgd(0.2).with(optim::step_decay(2, 0.5)),
                                      optim::adam(3e-3).with(optim::cosine_decay(0.1, 1)));
  CAPTURE(o.describe());
  Model m = models::mlp({6, 16, 16, 3}, act::tanh, loss::softmax_cross_entropy, {.seed = 3});
  Trainer<DataSplit<Random>> t({.batch_size = 32, .epochs = 6, .seed = 3}, o);
  const History h = t.fit(m, d);
  CHECK(h.last().loss < 0.5 * h.epochs.front().loss);
  CHECK(metrics::accuracy(m, d) > 0.9);
}

TEST_CASE("softmax regression and an MLP match scikit-learn on the digits test split", "[training][digits]") {
  auto [train, test] = data::train_test_split(digits(), {.test_fraction = 0.2, .seed = 42});
  data::Standardizer s(train.x());
  train = s.transform(train);
  test = s.transform(test);
  Model soft = models::softmax_regression(64, 10, {.seed = 42, .weight_decay = 1e-3f});
  Model net = models::mlp({64, 128, 10}, act::relu, loss::softmax_cross_entropy, {.seed = 42});
  // the settings of examples/digits.cpp; scikit-learn on this split: LogisticRegression 0.9499,
  // MLPClassifier(128) 0.9610 (docs/digits.md)
  Trainer<DataSplit<Random>> t({.batch_size = 8, .epochs = 20, .seed = 42, .workers = 2}, optim::adam(1e-2));
  const History hs = t.fit(soft, train, test);
  const History hm = t.fit(net, train, test);
  CHECK(hs.last().loss < 0.2);
  CHECK(hm.last().loss < 0.05);
  CHECK(metrics::accuracy(soft, test) >= 0.9499 - 0.01);
  CHECK(metrics::accuracy(net, test) >= 0.9610 - 0.01);
  CHECK(hm.last().validation_metric == Approx(metrics::accuracy(net, test)));
}

TEST_CASE("same seed, same program: bitwise-identical parameters", "[training][determinism]") {
  auto run = [] {
    const auto d = blobs(1000, 5, 4);
    Model m = models::mlp({5, 32, 4}, act::relu, loss::softmax_cross_entropy, {.seed = 7, .weight_decay = 1e-4f});
    Trainer<DataSplit<Random>> t({.batch_size = 50, .epochs = 3, .seed = 7}, optim::adam(1e-3));
    t.fit(m, d);
    return std::vector<float>(m.parameters().begin(), m.parameters().end());
  };
  const auto a = run(), b = run();
  REQUIRE(a.size() == b.size());
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  // and a different seed gives different parameters
  Model m = models::mlp({5, 32, 4}, act::relu, loss::softmax_cross_entropy, {.seed = 8});
  CHECK(std::memcmp(a.data(), m.parameters().data(), a.size() * sizeof(float)) != 0);
}

TEST_CASE("every sample is visited once per epoch under each split policy", "[training][split]") {
  const auto d = blobs(103, 3, 3);
  auto check = [&](std::vector<std::size_t> o) {
    REQUIRE(o.size() == 103);
    std::sort(o.begin(), o.end());
    for (std::size_t i = 0; i < o.size(); ++i) REQUIRE(o[i] == i);
  };
  check(detail::epoch_order<Random>(d, 1, 0));
  check(detail::epoch_order<Stratified>(d, 1, 0));
  CHECK(detail::epoch_order<Uniform>(d, 1, 0).empty());  // the data's own order
  CHECK(detail::epoch_order<Random>(d, 1, 0) != detail::epoch_order<Random>(d, 1, 1));  // redrawn each epoch
  // stratified: every window of 30 consecutive samples holds 10 +- 1 of each class
  const auto o = detail::epoch_order<Stratified>(d, 5, 2);
  for (std::size_t start = 0; start + 30 <= o.size(); start += 30) {
    int count[3] = {0, 0, 0};
    for (std::size_t i = start; i < start + 30; ++i) ++count[static_cast<int>(d.targets[o[i]])];
    for (int c : count) CHECK(std::abs(c - 10) <= 1);
  }
}

TEST_CASE("a last partial batch is trained on, not dropped", "[training]") {
  const auto d = blobs(10, 2, 2);
  Model m = models::logistic_regression(2, {.seed = 1});
  // batch 4 over 10 samples: steps of 4, 4, 2; a batch larger than the data set is clamped.
  Trainer<> t({.batch_size = 4, .epochs = 1}, optim::sgd(0.1));
  Trainer<> whole({.batch_size = 1000, .epochs = 1}, optim::sgd(0.1));
  Model m2 = m;
  t.fit(m, d);
  whole.fit(m2, d);
  CHECK(m.parameters()[0] != m2.parameters()[0]);
  // samples 8 and 9 only appear in the 2-row batch; removing them changes the result
  Model m3 = models::logistic_regression(2, {.seed = 1});
  const std::vector<std::size_t> first8 = {0, 1, 2, 3, 4, 5, 6, 7};
  t.fit(m3, d.subset(first8));
  CHECK(m.parameters()[0] != m3.parameters()[0]);
}

TEST_CASE("callbacks see every epoch and can stop early", "[training]") {
  const auto d = blobs(300, 3, 3);
  Model m = models::softmax_regression(3, 3);
  struct StopAfter {
    std::size_t seen = 0;
    bool on_epoch(const EpochRecord& r) { return ++seen, r.epoch < 3; }
  } stop;
  Trainer<> t({.batch_size = 30, .epochs = 10}, optim::sgd(0.1));
  const History h = t.fit(m, d, d, stop);
  CHECK(h.epochs.size() == 3);
  CHECK(stop.seen == 3);
  CHECK(std::isfinite(h.last().validation_loss));
  CHECK(h.to_csv().find("epoch,loss,") == 0);
  CHECK(h.to_json().find("\"epochs\": [{\"epoch\": 1") != std::string::npos);
}

TEST_CASE("fit rejects data that does not fit the model, naming both", "[training][errors]") {
  const auto d = blobs(50, 4, 3);
  Trainer<> t({}, optim::sgd(0.1));
  Model wrong_width = models::softmax_regression(5, 3);
  CHECK_THROWS_WITH(t.fit(wrong_width, d), Catch::Contains("takes 5 features, the data set has 4"));
  Model two = models::softmax_regression(4, 2);
  CHECK_THROWS_WITH(t.fit(two, d), Catch::Contains("has label 2.000000, expected an integer class in [0, 2)"));
  CHECK_THROWS_AS(Trainer<>({.batch_size = 0}, optim::sgd(0.1)), Error);
  CHECK_THROWS_WITH(optim::sgd(-1.0), Catch::Contains("learning rate must be positive"));
}

TEST_CASE("a diverging fit throws and leaves the model unchanged", "[training][errors]") {
  std::vector<float> w;
  const auto d = linear_data(500, 4, 0.0f, w);
  Model m = models::linear_regression(4, {.seed = 3});
  const std::vector<float> before(m.parameters().begin(), m.parameters().end());
  Trainer<> t({.batch_size = 10, .epochs = 50}, optim::sgd(50.0));
  try {
    t.fit(m, d);
    FAIL("expected the fit to diverge");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::runtime);
    CHECK_THAT(e.what(), Catch::Contains("the model is left unchanged"));
  }
  CHECK(std::equal(before.begin(), before.end(), m.parameters().begin()));
}
