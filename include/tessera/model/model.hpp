// tessera/model/model.hpp - a model: its architecture and all of its parameters in one flat
// host buffer. Layers are views (offsets) into that buffer, so a checkpoint, a broadcast or an
// all-reduce is one call over one contiguous range. A model may also hold the preprocessing its
// inputs need (an input transform), so that a saved model can serve raw rows.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tessera/core/matrix.hpp"
#include "tessera/data/standardize.hpp"
#include "tessera/device/cpu.hpp"
#include "tessera/model/init.hpp"
#include "tessera/model/network.hpp"

namespace tessera {

/// How a model's parameters are initialised, and its weight decay.
struct ModelOptions {
  std::uint64_t seed = 0;     ///< initialisation seed
  float weight_decay = 0.0f;  ///< L2 penalty 0.5 * weight_decay * |W|^2 on weights (not biases)
};

/// Architecture, flat parameters, weight decay and an optional input transform. Copies are deep
/// and independent; two models compare equal when all four are equal (parameters value by value).
class Model {
 public:
  Model() = default;
  /// A model of `layers` on `input_dim` features; see Architecture for what it throws.
  Model(std::size_t input_dim, const std::vector<LayerSpec>& layers, const LossSpec& loss, ModelOptions options = {})
      : Model(Architecture(input_dim, layers, loss), options) {}
  /// A model of `arch`, its parameters initialised from `options.seed`.
  explicit Model(Architecture arch, ModelOptions options = {})
      : arch_(std::move(arch)), weight_decay_(options.weight_decay) {
    check_weight_decay(options.weight_decay);
    initialise(options.seed);
  }
  /// A model with the given parameters (parameter_count() values in the flat layout), nothing
  /// drawn: what load_model builds.
  Model(Architecture arch, std::vector<float> parameters, float weight_decay)
      : arch_(std::move(arch)), params_(std::move(parameters)), weight_decay_(weight_decay) {
    check_weight_decay(weight_decay);
    detail::require(params_.size() == arch_.parameter_count(), ErrorKind::shape,
                    "model: the architecture " + arch_.describe() + " has " + std::to_string(arch_.parameter_count()) +
                        " parameters, got " + std::to_string(params_.size()));
  }

  /// Its input width, layers and loss.
  [[nodiscard]] const Architecture& architecture() const noexcept { return arch_; }
  /// Features per input row.
  [[nodiscard]] std::size_t input_dim() const noexcept { return arch_.input_dim; }
  /// Values per output row.
  [[nodiscard]] std::size_t output_dim() const noexcept { return arch_.output_dim(); }
  /// Number of parameters (weights and biases).
  [[nodiscard]] std::size_t parameter_count() const noexcept { return params_.size(); }
  /// The loss it is trained with: an enum loss, or the family of a loss of the concept.
  [[nodiscard]] Loss loss() const noexcept { return arch_.loss; }
  /// The loss as given (with its LossOp, when it is one of the concept).
  [[nodiscard]] LossSpec objective() const { return arch_.objective(); }
  /// L2 penalty factor on the weights (0: none).
  [[nodiscard]] float weight_decay() const noexcept { return weight_decay_; }
  /// Sets the weight decay. Throws Error (ErrorKind::invalid_argument) when `wd` is negative or not
  /// finite.
  void set_weight_decay(float wd) {
    check_weight_decay(wd);
    weight_decay_ = wd;
  }
  /// The flat parameter buffer, layer by layer (W row-major, then b).
  [[nodiscard]] std::span<float> parameters() noexcept { return params_; }
  /// The flat parameter buffer, layer by layer (W row-major, then b).
  [[nodiscard]] std::span<const float> parameters() const noexcept { return params_; }

  /// The input transform: the preprocessing between raw rows and the features the layers see,
  /// kept with the model (and in its file) so that a loaded model can serve raw data.
  ///
  /// It is serving preprocessing only. forward, predict, predict_classes, loss_value,
  /// loss_and_gradient, the trainers and the metrics take features as the layers see them
  /// (already transformed) whether a transform is attached or not, so attaching one changes
  /// nothing in training or evaluation, and the same call means the same thing on a model built
  /// in memory and on one loaded from a file. Raw rows go through the *_raw calls (or through
  /// transform_input), which apply the transform to a copy of the rows first.
  ///
  /// The standardizer must be fitted on input_dim() columns with finite statistics
  /// (ErrorKind::shape naming both widths, ErrorKind::invalid_argument naming the column).
  void set_input_transform(const data::Standardizer& s) {
    detail::require(s.columns() == input_dim(), ErrorKind::shape,
                    "model.set_input_transform: the model (" + arch_.describe() + ") takes " +
                        std::to_string(input_dim()) + " features per row, the standardizer was fitted on " +
                        std::to_string(s.columns()) + " columns");
    transform_ = data::Standardizer(s.mean(), s.inverse_scale());  // validates the statistics
  }
  /// Removes the input transform: predict_raw() then takes standardized rows as they are.
  void clear_input_transform() noexcept { transform_.reset(); }
  /// The attached transform, or nullptr.
  [[nodiscard]] const data::Standardizer* input_transform() const noexcept {
    return transform_ ? &*transform_ : nullptr;
  }

  /// Raw rows made into features: a transformed copy of `raw` (rows x input_dim()), or a plain
  /// copy when no transform is attached (the model then takes its raw rows as they are).
  [[nodiscard]] Matrix transform_input(MatrixView raw) const {
    check_input(raw, "transform_input");
    Matrix x(raw.rows, raw.cols);
    if (raw.rows * raw.cols > 0) std::copy(raw.data, raw.data + raw.rows * raw.cols, x.data());
    if (transform_) transform_->transform_in_place(x);
    return x;
  }
  /// predict(transform_input(raw)): what a model loaded from a file serves on new raw rows.
  [[nodiscard]] Matrix predict_raw(MatrixView raw) const { return predict(transform_input(raw)); }
  /// predict_classes(transform_input(raw)).
  [[nodiscard]] std::vector<int> predict_classes_raw(MatrixView raw) const {
    return predict_classes(transform_input(raw));
  }

  /// True when architecture, weight decay, input transform and parameters are equal.
  friend bool operator==(const Model& a, const Model& b) {
    return a.arch_ == b.arch_ && a.weight_decay_ == b.weight_decay_ && a.params_ == b.params_ &&
           a.transform_ == b.transform_;
  }

  /// Redraws every weight from the seeded initialiser; biases become zero.
  void initialise(std::uint64_t seed) { detail::initialise(arch_, seed, params_); }

  /// Raw outputs (logits for the cross-entropy losses), rows x output_dim.
  [[nodiscard]] Matrix forward(MatrixView x) const {
    check_input(x, "forward");
    Matrix out(x.rows, output_dim());
    Network<Cpu> net(arch_, std::min<std::size_t>(x.rows, chunk_rows));
    for (std::size_t r = 0; r < x.rows; r += chunk_rows) {
      const std::size_t n = std::min(chunk_rows, x.rows - r);
      const float* o = net.forward(params_.data(), x.row(r), n);
      std::copy(o, o + n * output_dim(), out.row(r));
    }
    return out;
  }

  /// Predictions: values for regression, probabilities for the cross-entropy losses
  /// (sigmoid per output, or softmax over the classes).
  [[nodiscard]] Matrix predict(MatrixView x) const {
    Matrix out = forward(x);
    const std::size_t k = out.cols();
    for (std::size_t r = 0; r < out.rows(); ++r) {
      float* z = out.row(r);
      if (arch_.loss == Loss::binary_cross_entropy) {
        for (std::size_t j = 0; j < k; ++j) z[j] = detail::activate(Activation::sigmoid, z[j]);
      } else if (arch_.loss == Loss::softmax_cross_entropy) {
        const float m = *std::max_element(z, z + k);
        float s = 0.0f;
        for (std::size_t j = 0; j < k; ++j) s += (z[j] = std::exp(z[j] - m));
        for (std::size_t j = 0; j < k; ++j) z[j] /= s;
      }
    }
    return out;
  }

  /// Class labels: argmax for softmax, threshold 0.5 on the first output for binary models.
  [[nodiscard]] std::vector<int> predict_classes(MatrixView x) const {
    detail::require(is_classification(arch_.loss), ErrorKind::invalid_argument,
                    "model: predict_classes needs a classification loss, this model uses " +
                        std::string(to_string(arch_.loss)));
    const Matrix z = forward(x);
    std::vector<int> labels(z.rows());
    for (std::size_t r = 0; r < z.rows(); ++r) {
      const float* row = z.row(r);
      labels[r] = arch_.loss == Loss::softmax_cross_entropy
                      ? static_cast<int>(std::max_element(row, row + z.cols()) - row)
                      : (row[0] > 0.0f ? 1 : 0);
    }
    return labels;
  }

  /// Mean loss over the rows of x (plus the L2 penalty) and its gradient with respect to every
  /// parameter, in the flat layout of parameters(). `y` holds target_dim() values per row. It is a
  /// training pass: dropout layers drop, with masks keyed by `draw` (row r of x at sample
  /// position draw.first + r), the same at every call with the same key.
  double loss_and_gradient(MatrixView x, std::span<const float> y, std::vector<float>& grad,
                           const DrawKey& draw = {}) const {
    check_input(x, "loss_and_gradient");
    check_targets(x.rows, y.size(), "loss_and_gradient");
    grad.assign(params_.size(), 0.0f);
    Network<Cpu> net(arch_, x.rows);
    net.train_mode(draw);
    const double norm = detail::loss_normaliser(arch_.loss, x.rows, arch_.output_dim());
    const double s = net.forward_backward(params_.data(), x.data, y.data(), x.rows, grad.data(),
                                          static_cast<float>(1.0 / norm), weight_decay_);
    return s / norm + (weight_decay_ > 0.0f ? net.weight_penalty(params_.data(), weight_decay_) : 0.0);
  }

  /// The L2 penalty 0.5 * weight_decay * |W|^2 the loss includes (0 without weight decay).
  [[nodiscard]] double weight_penalty() const {
    if (weight_decay_ <= 0.0f) return 0.0;
    Network<Cpu> net(arch_, 1);
    return net.weight_penalty(params_.data(), weight_decay_);
  }

  /// Mean loss over the rows of x (plus the L2 penalty), in an inference pass (dropout off).
  [[nodiscard]] double loss_value(MatrixView x, std::span<const float> y) const {
    check_input(x, "loss_value");
    check_targets(x.rows, y.size(), "loss_value");
    Network<Cpu> net(arch_, std::min<std::size_t>(x.rows, chunk_rows));
    double s = 0.0;
    const std::size_t t = arch_.target_dim();
    for (std::size_t r = 0; r < x.rows; r += chunk_rows) {
      const std::size_t n = std::min(chunk_rows, x.rows - r);
      s += net.loss_sum(params_.data(), x.row(r), y.data() + r * t, n);
    }
    return s / detail::loss_normaliser(arch_.loss, x.rows, arch_.output_dim()) +
           (weight_decay_ > 0.0f ? net.weight_penalty(params_.data(), weight_decay_) : 0.0);
  }

  /// Throws Error (ErrorKind::shape), naming `where`, unless `x` has input_dim() columns.
  void check_input(MatrixView x, const char* where) const {
    detail::require(x.cols == input_dim(), ErrorKind::shape,
                    std::string("model.") + where + ": the model (" + arch_.describe() + ") expects " +
                        std::to_string(input_dim()) + " features per row, got a " + shape_string(x.rows, x.cols) +
                        " matrix");
  }
  /// Throws Error (ErrorKind::shape), naming `where`, unless `n` targets fit `rows` rows.
  void check_targets(std::size_t rows, std::size_t n, const char* where) const {
    detail::require(n == rows * arch_.target_dim(), ErrorKind::shape,
                    std::string("model.") + where + ": " + std::to_string(rows) + " rows need " +
                        std::to_string(rows * arch_.target_dim()) + " target values (" +
                        std::to_string(arch_.target_dim()) + " per row), got " + std::to_string(n));
  }

 private:
  static void check_weight_decay(float wd) {
    detail::require(wd >= 0.0f && std::isfinite(wd), ErrorKind::invalid_argument,
                    "model: weight_decay must be finite and >= 0, got " + std::to_string(wd));
  }
  static constexpr std::size_t chunk_rows = 4096;
  Architecture arch_;
  std::vector<float> params_;
  float weight_decay_ = 0.0f;
  std::optional<data::Standardizer> transform_;
};

}  // namespace tessera
