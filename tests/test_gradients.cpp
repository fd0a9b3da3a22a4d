// Every layer (dense with each activation) and every loss against central finite differences,
// through the public gradient checker; and a check that the checker does catch a wrong gradient.
#include <catch2/catch.hpp>

#include "tessera/model/gradcheck.hpp"
#include "tessera/model/models.hpp"

using namespace tessera;

namespace {
Matrix random_inputs(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  Matrix x(rows, cols);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = rng::normal(seed, rng::Stream::user, i, 0);
  return x;
}
std::vector<float> targets_for(const Model& m, std::size_t rows, std::uint64_t seed) {
  std::vector<float> y(rows * m.architecture().target_dim());
  for (std::size_t i = 0; i < y.size(); ++i) {
    switch (m.loss()) {
      case Loss::mean_squared_error: y[i] = rng::normal(seed, rng::Stream::user, i, 9); break;
      case Loss::binary_cross_entropy: y[i] = float(rng::uniform(seed, rng::Stream::user, i, 9) < 0.5f); break;
      case Loss::softmax_cross_entropy: y[i] = float(i % m.output_dim()); break;
    }
  }
  return y;
}
}  // namespace

TEST_CASE("dense layers with every activation and every loss match finite differences", "[gradients]") {
  const Activation a = GENERATE(act::identity, act::relu, act::tanh, act::sigmoid);
  const Loss l = GENERATE(loss::mse, loss::binary_cross_entropy, loss::softmax_cross_entropy);
  const float wd = GENERATE(0.0f, 0.05f);
  CAPTURE(to_string(a), to_string(l), wd);
  Model m = models::mlp({5, 7, 6, 3}, a, l, {.seed = 11, .weight_decay = wd});
  const Matrix x = random_inputs(9, 5, 3);
  const auto y = targets_for(m, 9, 4);
  const GradientCheckResult r = check_gradients(m, x, y);
  CAPTURE(r.max_error, r.where, r.analytic, r.numeric, r.skipped);
  CHECK(r.ok);
  CHECK(r.checked + r.skipped == m.parameter_count());
  CHECK(r.skipped <= m.parameter_count() / 20);  // only kinks of ReLU may be skipped
}

TEST_CASE("the last layer's own activation is differentiated too", "[gradients]") {
  Model m(4, {{6, act::tanh}, {2, act::sigmoid}}, loss::mse, {.seed = 5});
  const Matrix x = random_inputs(7, 4, 8);
  const auto y = targets_for(m, 7, 2);
  const auto r = check_gradients(m, x, y);
  CAPTURE(r.max_error, r.where);
  CHECK(r.ok);
}

TEST_CASE("the fused least-squares path matches finite differences", "[gradients]") {
  Model m = models::linear_regression(6, {.seed = 2, .weight_decay = 0.1f});
  REQUIRE(m.architecture().is_linear_least_squares());
  const Matrix x = random_inputs(5000, 6, 1);  // several row blocks of the fused kernel
  const auto y = targets_for(m, 5000, 6);
  const auto r = check_gradients(m, x, y);
  CAPTURE(r.max_error, r.where);
  CHECK(r.ok);
}

TEST_CASE("the fused least-squares gradient equals a double-precision reference", "[gradients]") {
  // widths below, at and past the 16-float lanes; row counts that leave 1-3 rows after the
  // four-row groups of a block, and blocks of 2048 rows
  const std::size_t d = GENERATE(8u, 64u, 70u);
  const std::size_t n = GENERATE(3000u, 2051u, 7u);
  CAPTURE(d, n);
  Model fused = models::linear_regression(d, {.seed = 4});
  const Matrix x = random_inputs(n, d, 9);
  const auto y = targets_for(fused, n, 1);
  std::vector<float> g_fused, g_general(fused.parameter_count(), 0.0f);
  const double l_fused = fused.loss_and_gradient(x, y, g_fused);
  // general path: forward, residual, X^T r computed here in double
  const Matrix z = fused.forward(x);
  const auto nd = static_cast<double>(n);
  double l = 0;
  std::vector<double> g(d + 1, 0.0);
  for (std::size_t r = 0; r < n; ++r) {
    double res = fused.parameters()[d] - double(y[r]);
    for (std::size_t j = 0; j < d; ++j) res += double(x(r, j)) * fused.parameters()[j];
    l += res * res;
    for (std::size_t j = 0; j < d; ++j) g[j] += 2.0 * res * x(r, j) / nd;
    g[d] += 2.0 * res / nd;
  }
  CHECK(z.rows() == n);
  CHECK(l_fused == Approx(l / nd).epsilon(1e-4));
  for (std::size_t j = 0; j <= d; ++j) CHECK(g_fused[j] == Approx(g[j]).epsilon(1e-3).margin(1e-5));
}

TEST_CASE("the gradient checker reports a wrong gradient and names the parameter", "[gradients]") {
  Model m = models::mlp({3, 4, 2}, act::tanh, loss::softmax_cross_entropy, {.seed = 1});
  const Matrix x = random_inputs(6, 3, 2);
  const auto y = targets_for(m, 6, 3);
  std::vector<float> g;
  m.loss_and_gradient(x, y, g);
  g[5] += 0.05f;  // layer 0 weight (1, 1)
  const auto r = check_gradients(m, g, [&] { return m.loss_value(x, y); });
  CHECK_FALSE(r.ok);
  CHECK(r.worst == 5);
  CHECK(r.where == "layer 0 weight (1, 1)");
}
