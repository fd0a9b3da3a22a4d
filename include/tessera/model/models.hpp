// tessera/model/models.hpp - ready-made models.
#pragma once

#include <vector>

#include "tessera/model/model.hpp"

namespace tessera::models {

/// y = x w + b, trained on mean squared error (the fused least-squares kernel applies).
inline Model linear_regression(std::size_t inputs, ModelOptions options = {}) {
  return Model(inputs, {{1, act::identity}}, loss::mse, options);
}

/// P(y = 1 | x) = sigmoid(x w + b), trained on binary cross-entropy.
inline Model logistic_regression(std::size_t inputs, ModelOptions options = {}) {
  return Model(inputs, {{1, act::identity}}, loss::binary_cross_entropy, options);
}

/// P(y = k | x) = softmax(x W + b)_k, trained on softmax cross-entropy.
inline Model softmax_regression(std::size_t inputs, std::size_t classes, ModelOptions options = {}) {
  return Model(inputs, {{classes, act::identity}}, loss::softmax_cross_entropy, options);
}

/// A multi-layer perceptron of any depth: sizes = {inputs, hidden..., outputs}; every hidden layer
/// uses `hidden`, the output layer is linear and feeds `loss`.
inline Model mlp(const std::vector<std::size_t>& sizes, Activation hidden, const LossSpec& loss, ModelOptions options = {}) {
  detail::require(sizes.size() >= 2, ErrorKind::invalid_argument,
                  "models::mlp: sizes needs at least {inputs, outputs}, got " + std::to_string(sizes.size()) + " entries");
  std::vector<DenseSpec> specs;
  for (std::size_t i = 1; i < sizes.size(); ++i) specs.push_back({sizes[i], i + 1 < sizes.size() ? hidden : act::identity});
  return Model(sizes[0], specs, loss, options);
}

}  // namespace tessera::models
