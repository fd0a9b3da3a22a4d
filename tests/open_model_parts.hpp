// A layer, a loss and an update rule written outside the library, as a user writes them
// (docs/models.md): the tests train with them on threads, across MPI ranks and in pipelines
// without any library header knowing them.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tessera/tessera.hpp"

namespace user {

/// y = tanh(a * x + c) per feature, with a learned scale a (starting at 1) and shift c (at 0).
class ScaledTanh final : public tessera::LayerOp {
 public:
  std::string kind() const override { return "scaled_tanh"; }
  std::size_t parameter_count(std::size_t in) const override { return 2 * in; }
  std::size_t decayed_count(std::size_t in) const override { return in; }  // the scales, not the shifts
  double cost(std::size_t in) const override { return 10.0 * static_cast<double>(in); }
  void initialise(std::span<float> p, std::size_t in, std::uint64_t, std::uint32_t) const override {
    for (std::size_t j = 0; j < in; ++j) p[j] = 1.0f;
  }
  void forward(const tessera::LayerPass& p) const override {
    const float* a = p.params;
    const float* c = p.params + p.in;
    for (std::size_t r = 0; r < p.rows; ++r)
      for (std::size_t j = 0; j < p.in; ++j) p.y[r * p.in + j] = std::tanh(a[j] * p.x[r * p.in + j] + c[j]);
  }
  void backward(const tessera::LayerPass& p) const override {
    const float* a = p.params;
    float* da = p.grads;
    float* dc = p.grads + p.in;
    if (!p.accumulate)
      for (std::size_t j = 0; j < 2 * p.in; ++j) p.grads[j] = 0.0f;
    for (std::size_t r = 0; r < p.rows; ++r)
      for (std::size_t j = 0; j < p.in; ++j) {
        const std::size_t i = r * p.in + j;
        const float dz = p.dy[i] * (1.0f - p.y[i] * p.y[i]);
        da[j] += dz * p.x[i];
        dc[j] += dz;
        if (p.dx) p.dx[i] = dz * a[j];
      }
  }
};

/// log(cosh(z - y)): squared error near the target, absolute error far from it; family mean
/// squared error.
class LogCosh final : public tessera::LossOp {
 public:
  std::string kind() const override { return "log_cosh"; }
  tessera::Loss family() const override { return tessera::Loss::mean_squared_error; }
  double evaluate(const tessera::LossPass& p) const override {
    double sum = 0.0;
    for (std::size_t r = 0; r < p.rows; ++r) {
      double row = 0.0;
      for (std::size_t j = 0; j < p.cols; ++j) {
        const std::size_t i = r * p.cols + j;
        const double d = static_cast<double>(p.z[i]) - p.y[i], a = std::fabs(d);
        row += a + std::log1p(std::exp(-2.0 * a)) - std::log(2.0);  // log(cosh(d)), stable
        if (p.grad) p.grad[i] = p.scale * static_cast<float>(std::tanh(d));
      }
      if (p.per_row)
        p.per_row[r] = row;
      else
        sum += row;
    }
    return sum;
  }
};

/// Lion (Chen et al. 2023): the sign of an interpolated momentum, with decoupled weight decay.
struct Lion {
  float beta1 = 0.9f, beta2 = 0.99f, wd = 0.0f;
  struct Step {
    float lr;
  };
  std::string name() const { return "lion"; }
  std::size_t state_buffers() const { return 1; }
  Step prepare(double lr, std::uint64_t) const { return {static_cast<float>(lr)}; }
  TESSERA_HD void apply(float& w, float g, tessera::optim::Slots s, Step k) const {
    const float c = beta1 * s[0] + (1.0f - beta1) * g;
    const float sign = c > 0.0f ? 1.0f : (c < 0.0f ? -1.0f : 0.0f);
    w -= k.lr * (sign + wd * w);
    s[0] = beta2 * s[0] + (1.0f - beta2) * g;
  }
};

/// n rows of d features in k classes (class c shifted by +2 in feature c), for the shipped kinds.
inline tessera::data::Dataset blobs(std::size_t n, std::size_t d, std::size_t k) {
  tessera::Matrix x(n, d);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t c = (i * 7 + i / 5) % k;
    y[i] = float(c);
    for (std::size_t j = 0; j < d; ++j)
      x(i, j) = tessera::rng::normal(3, tessera::rng::Stream::user, i * d + j, 0) + (j == c ? 2.0f : 0.0f);
  }
  return {std::move(x), std::move(y)};
}

/// Makes model files with the layer and the loss loadable.
inline void register_parts() {
  tessera::register_layer("scaled_tanh", [](const std::string&) { return std::make_shared<ScaledTanh>(); });
  tessera::register_loss("log_cosh", [](const std::string&) { return std::make_shared<LogCosh>(); });
}

/// A regression model with every user part: 6 -> 16 tanh -> scaled_tanh -> 2, on log-cosh.
inline tessera::Model model(std::uint64_t seed = 5) {
  using namespace tessera;
  return Model(6, {layers::dense(16, Activation::tanh), layers::custom(std::make_shared<ScaledTanh>()), layers::dense(2)},
               loss::custom(std::make_shared<LogCosh>()), {.seed = seed, .weight_decay = 1e-3f});
}

/// 2 targets per row, smooth functions of 6 features.
inline tessera::data::Dataset data(std::size_t n) {
  tessera::Matrix x(n, 6);
  std::vector<float> y(2 * n);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < 6; ++j) x(i, j) = tessera::rng::normal(11, tessera::rng::Stream::user, i * 6 + j, 0);
    y[2 * i] = std::sin(x(i, 0)) + 0.5f * x(i, 1) * x(i, 2);
    y[2 * i + 1] = std::tanh(x(i, 3) - x(i, 4)) + 0.1f * x(i, 5);
  }
  return {std::move(x), std::move(y), 2};
}

}  // namespace user
