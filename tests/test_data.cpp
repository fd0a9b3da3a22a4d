// Data set utilities: train/test split, standardisation, subsets.
#include <catch2/catch.hpp>

#include "tessera/data/split.hpp"
#include "tessera/data/standardize.hpp"

using namespace tessera;

namespace {
data::Dataset counting(std::size_t n, std::size_t classes) {
  Matrix x(n, 2);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    x(i, 0) = float(i);
    x(i, 1) = 3.0f * float(i) + 7.0f;
    y[i] = float(i % classes);
  }
  return {std::move(x), std::move(y)};
}
}  // namespace

TEST_CASE("train_test_split is a seeded partition of the rows", "[data]") {
  const auto d = counting(100, 4);
  auto [tr, te] = data::train_test_split(d, {.test_fraction = 0.25, .seed = 3});
  CHECK(tr.rows() == 75);
  CHECK(te.rows() == 25);
  std::vector<int> seen(100, 0);
  for (std::size_t i = 0; i < tr.rows(); ++i) ++seen[static_cast<std::size_t>(tr.features(i, 0))];
  for (std::size_t i = 0; i < te.rows(); ++i) ++seen[static_cast<std::size_t>(te.features(i, 0))];
  for (int s : seen) CHECK(s == 1);
  auto [tr2, te2] = data::train_test_split(d, {.test_fraction = 0.25, .seed = 3});
  CHECK(te2.features.values() == te.features.values());
  auto [tr3, te3] = data::train_test_split(d, {.test_fraction = 0.25, .seed = 4});
  CHECK(te3.features.values() != te.features.values());
  // targets travel with their rows
  for (std::size_t i = 0; i < te.rows(); ++i) CHECK(te.targets[i] == float(static_cast<int>(te.features(i, 0)) % 4));
}

TEST_CASE("a stratified split keeps class proportions", "[data]") {
  const auto d = counting(200, 4);
  auto [tr, te] = data::train_test_split(d, {.test_fraction = 0.2, .seed = 1, .stratify = true});
  std::vector<int> count(4, 0);
  for (float y : te.targets) ++count[static_cast<std::size_t>(y)];
  for (int c : count) CHECK(c == 10);
}

TEST_CASE("split arguments are checked", "[data][errors]") {
  const auto d = counting(10, 2);
  CHECK_THROWS_WITH(data::train_test_split(d, {.test_fraction = 1.5}), Catch::Contains("test_fraction must be in (0, 1)"));
  CHECK_THROWS_AS(data::train_test_split(counting(1, 1), {}), Error);
}

TEST_CASE("standardisation is fitted on training data and applied to test data", "[data]") {
  const auto d = counting(101, 2);
  data::Standardizer s(d.x());
  const auto z = s.transform(d);
  for (std::size_t c = 0; c < 2; ++c) {
    double m = 0, v = 0;
    for (std::size_t r = 0; r < z.rows(); ++r) m += z.features(r, c);
    m /= 101;
    for (std::size_t r = 0; r < z.rows(); ++r) v += (z.features(r, c) - m) * (z.features(r, c) - m);
    CHECK(m == Approx(0.0).margin(1e-5));
    CHECK(v / 101 == Approx(1.0).epsilon(1e-4));
  }
  // applied to other data with the training statistics, not its own
  Matrix other(1, 2);
  other(0, 0) = 50.0f;
  other(0, 1) = 157.0f;
  s.transform_in_place(other);
  CHECK(other(0, 0) == Approx(0.0).margin(1e-5));
  Matrix wrong(3, 3);
  CHECK_THROWS_WITH(s.transform_in_place(wrong), Catch::Contains("fitted on 2 columns, got 3 x 3"));
}

TEST_CASE("a constant column is centred, not divided by zero", "[data]") {
  Matrix x(4, 1, 5.0f);
  data::Standardizer s(x);
  s.transform_in_place(x);
  for (std::size_t r = 0; r < 4; ++r) CHECK(x(r, 0) == 0.0f);
}
