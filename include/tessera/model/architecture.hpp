// tessera/model/architecture.hpp - what a model is, apart from its parameter values: a stack of
// layers (dense ones with their activation, and kinds of the Layer concept: layer normalisation,
// dropout, embedding, the user's), a loss, and where each layer's view starts in the flat parameter buffer.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/checked.hpp"
#include "tessera/core/error.hpp"
#include "tessera/model/activation.hpp"
#include "tessera/model/layer.hpp"
#include "tessera/model/loss.hpp"
#include "tessera/model/objective.hpp"

namespace tessera {

/// One layer to build: a dense layer of `out` units, then `activation`; or, when `op` is set, a
/// layer of that kind (its width follows from its input; `out` and `activation` are not used).
/// The layers:: functions make them.
struct LayerSpec {
  /// Units of a dense layer (its output width).
  std::size_t out = 0;
  /// Applied to x W + b.
  Activation activation = Activation::identity;
  /// The kind of a layer other than dense, or null.
  std::shared_ptr<const LayerOp> op{};
};
/// The name of LayerSpec from when every layer was dense: `DenseSpec{128, Activation::relu}`.
using DenseSpec = LayerSpec;

/// The layers a model is built from.
namespace layers {
/// A dense layer: y = act(x W + b) with `out` units.
inline LayerSpec dense(std::size_t out, Activation activation = Activation::identity) { return {out, activation, {}}; }
/// Layer normalisation over each row's features (gain and bias learned); see LayerNorm.
inline LayerSpec layer_norm(float epsilon = 1e-5f) { return {0, Activation::identity, std::make_shared<LayerNorm>(epsilon)}; }
/// Inverted dropout with drop probability `p`, on in training only; see Dropout.
inline LayerSpec dropout(float p) { return {0, Activation::identity, std::make_shared<Dropout>(p)}; }
/// Embedding of the last `columns` input features, category ids in [0, vocabulary), each replaced by
/// `dim` learned values from a table of its own; the leading features pass through. See Embedding.
inline LayerSpec embedding(std::size_t columns, std::size_t vocabulary, std::size_t dim) {
  return {0, Activation::identity, std::make_shared<Embedding>(columns, vocabulary, dim)};
}
/// A layer of the user's kind (a class derived from LayerOp).
inline LayerSpec custom(std::shared_ptr<const LayerOp> op) {
  detail::require(op != nullptr, ErrorKind::invalid_argument, "layers::custom: the layer kind is null");
  return {0, Activation::identity, std::move(op)};
}
}  // namespace layers

/// A built layer. A dense one: y = act(x W + b), W is in x out row-major at `offset` in the flat
/// buffer, b (out values) follows it. One of another kind (`op`): its parameter_count() values
/// start at `offset`.
struct Layer {
  ///@{
  /// Input and output widths.
  std::size_t in = 0, out = 0;
  ///@}
  /// Applied to x W + b (dense layers only).
  Activation activation = Activation::identity;
  /// Index of the layer's first parameter in the model's flat parameter buffer.
  std::size_t offset = 0;
  /// The kind, for a layer other than dense.
  std::shared_ptr<const LayerOp> op{};

  /// True for a dense layer.
  [[nodiscard]] bool is_dense() const noexcept { return !op; }
  /// "dense", or the kind's name.
  [[nodiscard]] std::string kind() const { return op ? op->kind() : std::string("dense"); }
  /// Parameters the model's L2 weight decay applies to (dense: the in x out weights), first in
  /// the layer's range.
  [[nodiscard]] std::size_t weight_count() const { return op ? op->decayed_count(in) : in * out; }
  /// Index of b's first value in the flat buffer (right after W; dense layers).
  [[nodiscard]] std::size_t bias_offset() const noexcept { return offset + in * out; }
  /// All of the layer's parameters (dense: in x out + out).
  [[nodiscard]] std::size_t parameter_count() const { return op ? op->parameter_count(in) : in * out + out; }
};
/// The name of Layer from when every layer was dense.
using DenseLayer = Layer;

/// A model's shape: its input width, its dense layers laid out in one flat buffer, and its loss.
struct Architecture {
  /// Features per input row.
  std::size_t input_dim = 0;
  /// The layers, input to output.
  std::vector<Layer> layers;
  /// Applied to the last layer's output: an enum loss, or the family of loss_op.
  Loss loss = Loss::mean_squared_error;
  /// A loss of the concept (Huber, weighted cross-entropy, the user's), or null.
  std::shared_ptr<const LossOp> loss_op{};

  Architecture() = default;
  /// Layers of `specs` on `input` features, laid out one after the other. Throws Error
  /// (ErrorKind::invalid_argument) when `input` is 0, `specs` is empty, a layer has no units, a
  /// layer kind refuses its input width, or the parameter count overflows.
  Architecture(std::size_t input, const std::vector<LayerSpec>& specs, const LossSpec& l)
      : input_dim(input), loss(l.family), loss_op(l.op) {
    detail::require(input > 0, ErrorKind::invalid_argument, "model: the input dimension must be positive, got 0");
    detail::require(!specs.empty(), ErrorKind::invalid_argument, "model: at least one layer is needed");
    std::size_t in = input, offset = 0;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const LayerSpec& S = specs[i];
      std::size_t out = S.out, count = 0, next = 0;
      bool overflow = false;
      if (S.op) {
        detail::require(S.activation == Activation::identity, ErrorKind::invalid_argument,
                        "model: layer " + std::to_string(i) + " (" + S.op->describe() +
                            ") takes no activation; put it on a dense layer");
        out = S.op->out_width(in);
        count = S.op->parameter_count(in);
      } else {
        std::size_t weights = 0;
        overflow = detail::mul_overflows(in, out, weights) || detail::add_overflows(weights, out, count);
      }
      detail::require(out > 0, ErrorKind::invalid_argument,
                      "model: layer " + std::to_string(i) + " has 0 outputs; every layer needs at least one");
      if (overflow || detail::add_overflows(offset, count, next))
        detail::fail(ErrorKind::invalid_argument, "model: layer " + std::to_string(i) + " (" + std::to_string(in) + " -> " +
                                                      std::to_string(out) + ") makes the parameter count overflow 2^64");
      layers.push_back(Layer{in, out, S.activation, offset, S.op});
      offset = next;
      in = out;
    }
    detail::require(!(loss == Loss::softmax_cross_entropy && output_dim() < 2), ErrorKind::invalid_argument,
                    "model: " + l.describe() + " needs at least 2 outputs (one per class), the last layer has " +
                        std::to_string(output_dim()));
    if (loss_op) loss_op->check(output_dim());
  }

  /// Width of the last layer (0 without layers).
  [[nodiscard]] std::size_t output_dim() const noexcept { return layers.empty() ? 0 : layers.back().out; }
  /// Weights and biases of every layer.
  [[nodiscard]] std::size_t parameter_count() const {
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
    return layers.size() == 1 && layers[0].is_dense() && layers[0].out == 1 && layers[0].activation == Activation::identity &&
           loss == Loss::mean_squared_error && !loss_op;
  }
  /// The loss as given: enum loss and loss of the concept.
  [[nodiscard]] LossSpec objective() const {
    LossSpec s(loss);
    s.op = loss_op;
    return s;
  }
  /// "64 -> 128 relu -> 10 | softmax_cross_entropy", for messages and signatures.
  [[nodiscard]] std::string describe() const {
    std::string s = std::to_string(input_dim);
    for (const auto& l : layers) {
      if (l.op) {
        s += " -> " + l.op->describe();
        continue;
      }
      s += " -> " + std::to_string(l.out);
      if (l.activation != Activation::identity) s += std::string(" ") + to_string(l.activation);
    }
    return s + " | " + objective().describe();
  }
  /// True when every layer is dense.
  [[nodiscard]] bool all_dense() const noexcept {
    for (const auto& l : layers)
      if (l.op) return false;
    return true;
  }
  /// The layer specs this architecture was built from.
  [[nodiscard]] std::vector<LayerSpec> specs() const {
    std::vector<LayerSpec> v;
    for (const auto& l : layers) v.push_back({l.op ? 0 : l.out, l.activation, l.op});
    return v;
  }
  /// True when both describe the same layers and loss.
  friend bool operator==(const Architecture& a, const Architecture& b) { return a.describe() == b.describe(); }
};

}  // namespace tessera
