// The embedding layer: its kernels against hand-computed values, its gradients against finite
// differences (ids repeated in the batch), every kind of bad id refused with a message that names
// it, width and option errors, the model-file round trip, a categorical data set whose generating
// per-category effects training recovers, and bitwise determinism across worker counts.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "support.hpp"
#include "tessera/tessera.hpp"

using namespace tessera;
using tessera::test::ErrorWith;

namespace {
/// Rows of `lead` normal features followed by `ids.size() / rows` id columns.
Matrix with_ids(std::size_t rows, std::size_t lead, const std::vector<float>& ids, std::uint64_t seed) {
  const std::size_t columns = ids.size() / rows;
  Matrix x(rows, lead + columns);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t j = 0; j < lead; ++j) x(r, j) = rng::normal(seed, rng::Stream::user, r * lead + j, 0);
    for (std::size_t c = 0; c < columns; ++c) x(r, lead + c) = ids[r * columns + c];
  }
  return x;
}

// Generating effects of the 8 categories of the training tests: distinct, in no particular order.
constexpr float effect[8] = {-1.5f, 0.8f, 0.2f, 2.0f, -0.6f, 1.2f, -2.2f, 0.5f};

/// y = effect[id] + 0.5 x + noise (sd 0.05): one numeric feature, then the id.
data::Dataset categorical(std::size_t n, std::uint64_t seed) {
  Matrix x(n, 2);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto id = static_cast<std::size_t>(rng::uniform(seed, rng::Stream::user, i, 1) * 8.0f) % 8;
    x(i, 0) = rng::normal(seed, rng::Stream::user, i, 2);
    x(i, 1) = static_cast<float>(id);
    y[i] = effect[id] + 0.5f * x(i, 0) + 0.05f * rng::normal(seed, rng::Stream::user, i, 3);
  }
  return {std::move(x), std::move(y)};
}

Model categorical_model() {
  return Model(2, {layers::embedding(1, 8, 3), layers::dense(8, act::tanh), layers::dense(1)}, loss::mse, {.seed = 7});
}

std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<std::size_t> order(v.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < order.size(); ++i) r[order[i]] = static_cast<double>(i);
  return r;
}

/// Spearman's rank correlation (no ties).
double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  const auto ra = ranks(a), rb = ranks(b);
  const double n = static_cast<double>(a.size());
  double d2 = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) d2 += (ra[i] - rb[i]) * (ra[i] - rb[i]);
  return 1.0 - 6.0 * d2 / (n * (n * n - 1.0));
}

bool bitwise_equal(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
}  // namespace

TEST_CASE("embedding kernels: lookup, pass-through, table and input gradients", "[embedding]") {
  // 3 rows of 1 pass-through feature and 2 id columns; vocabulary 4, dim 2: 16 parameters
  const Embedding op(2, 4, 2);
  REQUIRE(op.out_width(3) == 1 + 2 * 2);
  REQUIRE(op.parameter_count(3) == 16);
  CHECK(op.decayed_count(3) == 0);
  std::vector<float> params(16);
  std::iota(params.begin(), params.end(), 0.0f);  // table c, row id, entry e holds c*8 + id*2 + e
  const std::vector<float> x = {0.5f, 3.0f, 0.0f,   // ids 3 and 0
                                -1.0f, 1.0f, 0.0f,  // ids 1 and 0
                                2.0f, 3.0f, 2.0f};  // ids 3 and 2
  std::vector<float> y(3 * 5, -9.0f);
  LayerPass p;
  p.rows = 3;
  p.in = 3;
  p.out = 5;
  p.params = params.data();
  p.x = x.data();
  p.y = y.data();
  layer_forward<Cpu>(op, p);
  CHECK(y == std::vector<float>{0.5f, 6, 7, 8, 9, -1.0f, 2, 3, 8, 9, 2.0f, 6, 7, 12, 13});

  std::vector<float> dy(15);
  for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = static_cast<float>(i + 1);
  std::vector<float> grads(16, 99.0f), dx(9, 99.0f);
  p.dy = dy.data();
  p.grads = grads.data();
  p.dx = dx.data();
  layer_backward<Cpu>(op, p);
  // table 0: id 3 gets rows 0 and 2 (dy 2,3 and 12,13), id 1 row 1 (7, 8); table 1: id 0 gets
  // rows 0 and 1 (4,5 and 9,10), id 2 row 2 (14, 15); the rest is zeroed
  const std::vector<float> expected = {0, 0, 7, 8, 0, 0, 14, 16, 13, 15, 0, 0, 14, 15, 0, 0};
  CHECK(grads == expected);
  CHECK(dx == std::vector<float>{1, 0, 0, 6, 0, 0, 11, 0, 0});
  // accumulate adds to what is there
  p.accumulate = true;
  layer_backward<Cpu>(op, p);
  for (std::size_t i = 0; i < grads.size(); ++i) CHECK(grads[i] == 2.0f * expected[i]);
}

TEST_CASE("embedding gradients match finite differences, ids repeated in the batch", "[embedding][gradients]") {
  const float wd = GENERATE(0.0f, 0.05f);
  CAPTURE(wd);
  // 2 pass-through features and 2 id columns (vocabularies of 5), embedding first, then dense
  Model m(4, {layers::embedding(2, 5, 3), layers::dense(6, act::tanh), layers::dense(2)}, loss::mse,
          {.seed = 3, .weight_decay = wd});
  REQUIRE(m.architecture().layers[0].out == 2 + 2 * 3);
  REQUIRE(m.architecture().layers[0].parameter_count() == 2 * 5 * 3);
  std::vector<float> ids;
  for (std::size_t r = 0; r < 12; ++r) {
    ids.push_back(static_cast<float>((r * 3) % 5));  // every id, each twice or more
    ids.push_back(static_cast<float>(r % 2 == 0 ? 4 : 1));  // ids 1 and 4 only: the other rows get no gradient
  }
  const Matrix x = with_ids(12, 2, ids, 5);
  std::vector<float> y(12 * 2);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = rng::normal(9, rng::Stream::user, i, 1);
  const GradientCheckResult r = check_gradients(m, x, y);
  CAPTURE(r.max_error, r.where, r.analytic, r.numeric, r.skipped);
  CHECK(r.ok);
  CHECK(r.checked + r.skipped == m.parameter_count());
  CHECK(r.skipped == 0);

  std::vector<float> g;
  m.loss_and_gradient(x, y, g);
  for (std::size_t id : {0u, 2u, 3u})  // unused rows of table 1
    for (std::size_t e = 0; e < 3; ++e) CHECK(g[15 + id * 3 + e] == 0.0f);
  // weight decay leaves the tables alone
  Model plain = m;
  plain.set_weight_decay(0.0f);
  std::vector<float> g0;
  plain.loss_and_gradient(x, y, g0);
  CHECK(std::equal(g.begin(), g.begin() + 30, g0.begin()));
}

TEST_CASE("a bad id is refused with its row, column, value and the vocabulary", "[embedding][errors]") {
  Model m(4, {layers::embedding(2, 5, 3), layers::dense(1)}, loss::mse, {.seed = 1});
  std::vector<float> ids(6 * 2, 1.0f);
  const Matrix good = with_ids(6, 2, ids, 2);
  CHECK_NOTHROW(m.forward(good));
  struct Case {
    float value;
    const char* shown;
    const char* why;
  };
  const Case c = GENERATE(Case{std::numeric_limits<float>::quiet_NaN(), "holds nan", "which is not finite"},
                          Case{std::numeric_limits<float>::infinity(), "holds inf", "which is not finite"},
                          Case{-std::numeric_limits<float>::infinity(), "holds -inf", "which is not finite"},
                          Case{-1.0f, "holds -1", "which is negative"},
                          Case{2.5f, "holds 2.5", "which is not a whole number"},
                          Case{5.0f, "holds 5", "which is not below the vocabulary size"},
                          Case{1e30f, "holds 1e+30", "which is not below the vocabulary size"});
  CAPTURE(c.shown);
  Matrix x = good;
  x(3, 3) = c.value;  // row 3, id column 1 (input feature 3)
  x(4, 2) = c.value;  // a later bad one: counted, not named
  // Catch's && keeps references to its operands: the matchers are named
  const auto kind = ErrorKind::invalid_argument;
  const ErrorWith where(kind, "layer 0 (embedding(columns=2,vocabulary=5,dim=3)): row 3 of the pass (of 6), id column 1 "
                              "(input feature 3) ");
  const ErrorWith what(kind, std::string(c.shown) + ", " + c.why);
  const ErrorWith rule(kind, "; an id must be a whole number in [0, 5) (vocabulary 5); 2 of the pass's 12 ids are bad");
  CHECK_THROWS_MATCHES(m.forward(x), Error, where && what && rule);
  std::vector<float> g, y(6, 0.0f);
  CHECK_THROWS_MATCHES(m.loss_and_gradient(x, y, g), Error, where && what && rule);
  // the pass-through features may hold anything
  Matrix lead = good;
  lead(0, 0) = c.value;
  CHECK_NOTHROW(m.forward(lead));
}

TEST_CASE("embedding widths and options: errors name the numbers", "[embedding][errors]") {
  using tessera::test::IsError;
  const auto kind = ErrorKind::invalid_argument;
  CHECK_THROWS_MATCHES(Embedding(0, 5, 3), Error,
                       IsError(kind, "layers::embedding(columns=0, vocabulary=5, dim=3): columns, vocabulary and dim "
                                     "must be positive"));
  CHECK_THROWS_MATCHES(Embedding(2, 0, 3), Error, ErrorWith(kind, "vocabulary=0"));
  CHECK_THROWS_MATCHES(layers::embedding(2, 5, 0), Error, ErrorWith(kind, "dim=0"));
  CHECK_THROWS_MATCHES(Embedding(1, Embedding::max_vocabulary + 1, 1), Error, ErrorWith(kind, "exceeds 2^24"));
  CHECK_NOTHROW(Embedding(1, Embedding::max_vocabulary, 1));
  const std::size_t huge = std::numeric_limits<std::size_t>::max() / 2;
  CHECK_THROWS_MATCHES(Embedding(huge, 4, 1), Error,
                       ErrorWith(kind, "the parameter count columns x vocabulary x dim overflows 2^64"));
  CHECK_THROWS_MATCHES(Embedding(2, 5, 3).out_width(1), Error,
                       IsError(kind, "layers::embedding(columns=2, vocabulary=5, dim=3): 2 id columns, but the "
                                     "layer's input has only 1 feature"));
  CHECK(Embedding(2, 5, 3).out_width(2) == 6);
  CHECK(Embedding(2, 5, 3).out_width(7) == 5 + 6);
  const std::size_t wide = std::numeric_limits<std::size_t>::max() / 8;  // 1 x 1 x wide parameters
  CHECK_THROWS_MATCHES(Embedding(1, 1, wide).out_width(std::numeric_limits<std::size_t>::max() - 1), Error,
                       ErrorWith(kind, "overflows 2^64"));
  CHECK_THROWS_MATCHES(Model(1, {layers::embedding(2, 5, 3), layers::dense(1)}, loss::mse), Error,
                       ErrorWith(kind, "2 id columns, but the layer's input has only 1 feature"));

  // the options text reads back; malformed numbers are format errors
  const Embedding e(3, 10, 4);
  CHECK(e.options() == "columns=3,vocabulary=10,dim=4");
  CHECK(e.describe() == "embedding(columns=3,vocabulary=10,dim=4)");
  const auto back = make_layer("embedding", e.options());
  REQUIRE(back->builtin() == detail::BuiltinLayer::embedding);
  const auto& b = static_cast<const Embedding&>(*back);
  CHECK((b.columns() == 3 && b.vocabulary() == 10 && b.dim() == 4));
  CHECK(layer_registered("embedding"));
  const auto factory = [](const std::string&) { return std::make_shared<Embedding>(1, 2, 3); };
  CHECK_THROWS_MATCHES(register_layer("embedding", factory), Error, ErrorWith(kind, "'embedding' is a shipped layer kind"));
  const auto format = ErrorKind::format;
  CHECK_THROWS_MATCHES(make_layer("embedding", "columns=-1,vocabulary=10,dim=4"), Error,
                       IsError(format, "layer kind 'embedding': option 'columns' is not a whole number: '-1'"));
  CHECK_THROWS_MATCHES(make_layer("embedding", "columns=1,vocabulary=1.5,dim=4"), Error,
                       ErrorWith(format, "option 'vocabulary' is not a whole number: '1.5'"));
  CHECK_THROWS_MATCHES(make_layer("embedding", "columns=1,vocabulary=10,dim="), Error,
                       ErrorWith(format, "option 'dim' is not a whole number: ''"));
  CHECK_THROWS_MATCHES(make_layer("embedding", "columns= 1,vocabulary=10,dim=4"), Error,
                       ErrorWith(format, "option 'columns' is not a whole number"));
  CHECK_THROWS_MATCHES(make_layer("embedding", "columns=1,vocabulary=10,dim=18446744073709551616"), Error,
                       ErrorWith(format, "option 'dim' overflows 2^64: '18446744073709551616'"));
  CHECK_THROWS_MATCHES(make_layer("embedding", "columns=1,dim=4"), Error,
                       ErrorWith(format, "option 'vocabulary' missing"));
  CHECK_THROWS_MATCHES(make_layer("embedding", "columns=0,vocabulary=10,dim=4"), Error,
                       ErrorWith(kind, "must be positive"));
}

TEST_CASE("a model with an embedding survives its model file", "[embedding][io]") {
  tessera::test::TempDir dir;
  Model m(3, {layers::embedding(2, 6, 4), layers::dense(5, act::relu), layers::dense(1)}, loss::mse,
          {.seed = 4, .weight_decay = 0.01f});
  const std::string path = dir.file("embedding.tsm");
  save(m, path);
  const Model back = load_model(path);
  CHECK(back == m);
  CHECK(back.architecture().describe() == m.architecture().describe());
  CHECK(bitwise_equal(back.parameters(), m.parameters()));
  const Matrix x = with_ids(4, 1, {0, 5, 3, 3, 5, 0, 1, 2}, 6);
  const Matrix a = m.forward(x), b = back.forward(x);
  CHECK(std::equal(a.data(), a.data() + a.size(), b.data()));
}

TEST_CASE("training recovers the generating ranking of the categories", "[embedding][training]") {
  const data::Dataset d = categorical(1200, 11);
  Model m = categorical_model();
  Trainer<> t({.batch_size = 32, .epochs = 12, .seed = 2, .workers = 1, .progress = Progress::never},
              optim::adam(0.02));
  t.fit(m, d);
  // each category's learned effect: the prediction at numeric feature 0
  Matrix probe(8, 2);
  for (std::size_t k = 0; k < 8; ++k) probe(k, 1) = static_cast<float>(k);
  const Matrix pred = m.forward(probe);
  std::vector<double> learned(8), truth(8);
  for (std::size_t k = 0; k < 8; ++k) {
    learned[k] = pred(k, 0);
    truth[k] = effect[k];
  }
  CAPTURE(learned);
  CHECK(spearman(learned, truth) >= 0.95);
  for (std::size_t k = 0; k < 8; ++k) CHECK(learned[k] == Approx(truth[k]).margin(0.1));  // about 0.04 off here
}

TEST_CASE("embedding in deterministic mode: bitwise-equal parameters for 1, 2 and 3 workers",
          "[embedding][data_parallel][determinism]") {
  const data::Dataset d = categorical(601, 5);  // 601: no worker count divides it
  const auto train = [&](std::size_t workers) {
    Model m = categorical_model();
    Trainer<DataSplit<Random>> t({.batch_size = 60 / workers, .epochs = 3, .seed = 4, .workers = workers,
                                  .deterministic = true, .progress = Progress::never},
                                 optim::adam(1e-2));
    t.fit(m, d);
    return m;
  };
  const Model one = train(1);
  for (std::size_t n : {2u, 3u}) {
    CAPTURE(n);
    CHECK(bitwise_equal(train(n).parameters(), one.parameters()));
  }
  CHECK(!bitwise_equal(one.parameters(), categorical_model().parameters()));  // it did train
}
