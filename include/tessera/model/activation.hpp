// tessera/model/activation.hpp - the activation functions a dense layer can apply.
#pragma once

namespace tessera {

enum class Activation { identity, relu, tanh, sigmoid };

inline const char* to_string(Activation a) noexcept {
  switch (a) {
    case Activation::identity: return "identity";
    case Activation::relu: return "relu";
    case Activation::tanh: return "tanh";
    case Activation::sigmoid: return "sigmoid";
  }
  return "?";
}

/// Spelling used in model construction: `models::mlp({64, 128, 10}, act::relu, ...)`.
namespace act {
/// No activation: y = x.
inline constexpr Activation identity = Activation::identity;
/// Rectified linear unit: y = max(0, x).
inline constexpr Activation relu = Activation::relu;
/// Hyperbolic tangent.
inline constexpr Activation tanh = Activation::tanh;
/// Logistic function: y = 1 / (1 + exp(-x)).
inline constexpr Activation sigmoid = Activation::sigmoid;
}  // namespace act

}  // namespace tessera
