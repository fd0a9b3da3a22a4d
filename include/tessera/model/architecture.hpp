// tessera/model/architecture.hpp - what a model is, apart from its parameter values: a stack of
// dense layers (each with its activation), a loss, and where each layer's view starts in the
// flat parameter buffer.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "tessera/core/checked.hpp"
#include "tessera/core/error.hpp"
#include "tessera/model/activation.hpp"
#include "tessera/model/loss.hpp"

namespace tessera {

/// One dense layer to build: `out` units, then `activation`.
struct DenseSpec {
  /// Units of the layer (its output width).
  std::size_t out = 0;
  /// Applied to x W + b.
  Activation activation = Activation::identity;
};

/// A built dense layer: y = act(x W + b), W is in x out row-major at `offset` in the flat buffer,
/// b (out values) follows it.
struct DenseLayer {
  ///@{
  /// Input and output widths.
  std::size_t in = 0, out = 0;
  ///@}
  /// Applied to x W + b.
  Activation activation = Activation::identity;
  /// Index of W's first value in the model's flat parameter buffer.
  std::size_t offset = 0;

  /// Weights: in x out.
  [[nodiscard]] std::size_t weight_count() const noexcept { return in * out; }
  /// Index of b's first value in the flat buffer (right after W).
  [[nodiscard]] std::size_t bias_offset() const noexcept { return offset + in * out; }
  /// Weights and biases: in x out + out.
  [[nodiscard]] std::size_t parameter_count() const noexcept { return in * out + out; }
};

/// A model's shape: its input width, its dense layers laid out in one flat buffer, and its loss.
struct Architecture {
  /// Features per input row.
  std::size_t input_dim = 0;
  /// The dense layers, input to output.
  std::vector<DenseLayer> layers;
  /// Applied to the last layer's output.
  Loss loss = Loss::mean_squared_error;

  Architecture() = default;
  /// Layers of `specs` on `input` features, laid out one after the other. Throws Error
  /// (ErrorKind::invalid_argument) when `input` is 0, `specs` is empty or a layer has no units.
  Architecture(std::size_t input, const std::vector<DenseSpec>& specs, Loss l) : input_dim(input), loss(l) {
    detail::require(input > 0, ErrorKind::invalid_argument, "model: the input dimension must be positive, got 0");
    detail::require(!specs.empty(), ErrorKind::invalid_argument, "model: at least one dense layer is needed");
    std::size_t in = input, offset = 0;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      detail::require(specs[i].out > 0, ErrorKind::invalid_argument,
                      "model: layer " + std::to_string(i) + " has 0 outputs; every layer needs at least one");
      std::size_t weights = 0, count = 0, next = 0;
      if (detail::mul_overflows(in, specs[i].out, weights) || detail::add_overflows(weights, specs[i].out, count) ||
          detail::add_overflows(offset, count, next))
        detail::fail(ErrorKind::invalid_argument, "model: layer " + std::to_string(i) + " (" + std::to_string(in) + " -> " +
                                                      std::to_string(specs[i].out) +
                                                      ") makes the parameter count overflow 2^64");
      layers.push_back(DenseLayer{in, specs[i].out, specs[i].activation, offset});
      offset = next;
      in = specs[i].out;
    }
    detail::require(!(l == Loss::softmax_cross_entropy && output_dim() < 2), ErrorKind::invalid_argument,
                    "model: softmax_cross_entropy needs at least 2 outputs (one per class), the last layer has " +
                        std::to_string(output_dim()));
  }

  /// Width of the last layer (0 without layers).
  [[nodiscard]] std::size_t output_dim() const noexcept { return layers.empty() ? 0 : layers.back().out; }
  /// Weights and biases of every layer.
  [[nodiscard]] std::size_t parameter_count() const noexcept {
    return layers.empty() ? 0 : layers.back().offset + layers.back().parameter_count();
  }
  /// The widest layer, input included.
  [[nodiscard]] std::size_t max_width() const noexcept {
    std::size_t w = input_dim;
    for (const auto& l : layers) w = l.out > w ? l.out : w;
    return w;
  }
  /// Number of target values per sample the loss expects.
  [[nodiscard]] std::size_t target_dim() const noexcept {
    return loss == Loss::softmax_cross_entropy ? 1 : output_dim();
  }
  /// True for one linear output trained on squared error: the fused least-squares path applies.
  [[nodiscard]] bool is_linear_least_squares() const noexcept {
    return layers.size() == 1 && layers[0].out == 1 && layers[0].activation == Activation::identity &&
           loss == Loss::mean_squared_error;
  }
  /// "64 -> 128 relu -> 10 | softmax_cross_entropy", for messages and signatures.
  [[nodiscard]] std::string describe() const {
    std::string s = std::to_string(input_dim);
    for (const auto& l : layers) {
      s += " -> " + std::to_string(l.out);
      if (l.activation != Activation::identity) s += std::string(" ") + to_string(l.activation);
    }
    return s + " | " + to_string(loss);
  }
  /// True when both describe the same layers and loss.
  friend bool operator==(const Architecture& a, const Architecture& b) { return a.describe() == b.describe(); }
};

}  // namespace tessera
