// tessera/eval/metrics.hpp - MSE, R^2, accuracy and log-loss, on predictions or on a model and a
// data set.
#pragma once

#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "tessera/data/dataset.hpp"
#include "tessera/model/model.hpp"

namespace tessera::metrics {

namespace detail_m {
inline void same_size(std::size_t a, std::size_t b, const char* who) {
  tessera::detail::require(a == b && a > 0, ErrorKind::shape,
                           std::string("metrics::") + who + ": " + std::to_string(a) + " predictions for " +
                               std::to_string(b) + " targets (need the same, non-zero count)");
}
}  // namespace detail_m

/// Mean of (prediction - target)^2.
inline double mse(std::span<const float> pred, std::span<const float> target) {
  detail_m::same_size(pred.size(), target.size(), "mse");
  double s = 0.0;
  for (std::size_t i = 0; i < pred.size(); ++i) s += (double(pred[i]) - target[i]) * (double(pred[i]) - target[i]);
  return s / static_cast<double>(pred.size());
}

/// Coefficient of determination 1 - SS_res / SS_tot (1 is perfect; 0 is the mean predictor).
inline double r2(std::span<const float> pred, std::span<const float> target) {
  detail_m::same_size(pred.size(), target.size(), "r2");
  double mean = 0.0;
  for (float t : target) mean += t;
  mean /= static_cast<double>(target.size());
  double res = 0.0, tot = 0.0;
  for (std::size_t i = 0; i < pred.size(); ++i) {
    res += (double(pred[i]) - target[i]) * (double(pred[i]) - target[i]);
    tot += (target[i] - mean) * (target[i] - mean);
  }
  return tot > 0.0 ? 1.0 - res / tot : (res == 0.0 ? 1.0 : 0.0);
}

/// Fraction of predicted classes equal to the labels.
inline double accuracy(std::span<const int> predicted, std::span<const float> labels) {
  detail_m::same_size(predicted.size(), labels.size(), "accuracy");
  std::size_t hit = 0;
  for (std::size_t i = 0; i < predicted.size(); ++i) hit += static_cast<float>(predicted[i]) == labels[i];
  return static_cast<double>(hit) / static_cast<double>(labels.size());
}

/// Mean negative log-likelihood of the labels under predicted probabilities (rows x classes for
/// softmax; rows x 1 for binary, the probability of class 1), clipped at 1e-15.
inline double log_loss(const Matrix& prob, std::span<const float> labels) {
  detail_m::same_size(prob.rows(), labels.size(), "log_loss");
  double s = 0.0;
  for (std::size_t r = 0; r < prob.rows(); ++r) {
    const auto y = static_cast<std::size_t>(labels[r]);
    const double p = prob.cols() == 1 ? (y == 1 ? prob(r, 0) : 1.0 - prob(r, 0)) : prob(r, y);
    s -= std::log(std::clamp(p, 1e-15, 1.0));
  }
  return s / static_cast<double>(prob.rows());
}

inline double mse(const Model& m, const data::Dataset& d) { return mse(m.predict(d.x()).values(), d.targets); }
inline double r2(const Model& m, const data::Dataset& d) { return r2(m.predict(d.x()).values(), d.targets); }
inline double accuracy(const Model& m, const data::Dataset& d) { return accuracy(m.predict_classes(d.x()), d.targets); }
inline double log_loss(const Model& m, const data::Dataset& d) { return log_loss(m.predict(d.x()), d.targets); }

}  // namespace tessera::metrics
