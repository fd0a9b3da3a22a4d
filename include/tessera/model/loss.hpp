// tessera/model/loss.hpp - the loss functions a model is trained with.
#pragma once

namespace tessera {

enum class Loss {
  mean_squared_error,     ///< mean over samples and outputs of (z - y)^2; regression
  binary_cross_entropy,   ///< on logits (sigmoid folded in, numerically stable); y in {0, 1}
  softmax_cross_entropy,  ///< on logits (log-sum-exp folded in, stable); y is a class index
};

inline const char* to_string(Loss l) noexcept {
  switch (l) {
    case Loss::mean_squared_error: return "mean_squared_error";
    case Loss::binary_cross_entropy: return "binary_cross_entropy";
    case Loss::softmax_cross_entropy: return "softmax_cross_entropy";
  }
  return "?";
}

/// Spelling used in model construction: `models::mlp({64, 128, 10}, act::relu, loss::softmax_cross_entropy)`.
namespace loss {
/// Mean squared error (short name of mean_squared_error).
inline constexpr Loss mse = Loss::mean_squared_error;
/// Mean squared error, for regression.
inline constexpr Loss mean_squared_error = Loss::mean_squared_error;
/// Binary cross-entropy on a sigmoid output, for two classes (targets 0 or 1).
inline constexpr Loss binary_cross_entropy = Loss::binary_cross_entropy;
/// Softmax cross-entropy, for class indices as targets.
inline constexpr Loss softmax_cross_entropy = Loss::softmax_cross_entropy;
}  // namespace loss

/// True when the loss reads targets as class indices (one per sample) rather than values.
constexpr bool is_classification(Loss l) noexcept { return l != Loss::mean_squared_error; }

}  // namespace tessera
