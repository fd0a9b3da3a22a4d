// tessera/optim/optimizer.hpp - SGD, momentum (classic and Nesterov), Adam and AdamW. Each update
// is one fused pass over the flat parameter buffer: parameters, gradients and state are read and
// written once per step.
#pragma once

#include <cmath>
#include <cstdio>
#include <string>

#include "tessera/detail/elementwise.hpp"
#include "tessera/optim/schedule.hpp"

namespace tessera::optim {

/// An optimizer and its hyper-parameters; make one with sgd(), momentum(), nesterov(), adam() or
/// adamw().
struct Optimizer {
  ///@{
  /// The update rule.
  enum class Kind { sgd, momentum, adam } kind = Kind::sgd;
  ///@}
  /// Base learning rate (scaled by `schedule`).
  double learning_rate = 0.01;
  double momentum = 0.0;      ///< momentum: mu
  /// Nesterov's look-ahead (with momentum).
  bool nesterov = false;
  ///@{
  /// Adam's moment decay rates and denominator guard.
  double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
  ///@}
  double decoupled_weight_decay = 0.0;  ///< AdamW's w -= lr * wd * w (separate from the model's L2)
  /// How the learning rate changes over the epochs.
  Schedule schedule{};

  /// Same optimizer with a learning-rate schedule.
  [[nodiscard]] Optimizer with(Schedule s) const {
    Optimizer o = *this;
    o.schedule = s;
    return o;
  }
  /// Buffers of optimizer state per parameter (momentum: 1, Adam: 2).
  [[nodiscard]] std::size_t state_buffers() const noexcept {
    return kind == Kind::sgd ? 0 : kind == Kind::momentum ? 1 : 2;
  }
  /// A one-line description, e.g. "adam(lr=0.001)" (numbers in their shortest form, %g).
  [[nodiscard]] std::string describe() const {
    const auto g = [](double v) {
      char b[32];
      std::snprintf(b, sizeof b, "%g", v);
      return std::string(b);
    };
    switch (kind) {
      case Kind::sgd: return "sgd(lr=" + g(learning_rate) + ")";
      case Kind::momentum:
        return std::string(nesterov ? "nesterov" : "momentum") + "(lr=" + g(learning_rate) + ", mu=" + g(momentum) + ")";
      case Kind::adam:
        return std::string(decoupled_weight_decay > 0 ? "adamw" : "adam") + "(lr=" + g(learning_rate) + ")";
    }
    return "?";
  }
};

namespace detail_check {
inline void positive_rate(double lr, const char* who) {
  tessera::detail::require(lr > 0.0 && std::isfinite(lr), ErrorKind::invalid_argument,
                           std::string(who) + ": learning rate must be positive and finite, got " + std::to_string(lr));
}
}  // namespace detail_check

inline Optimizer sgd(double lr) {
  detail_check::positive_rate(lr, "optim::sgd");
  return {Optimizer::Kind::sgd, lr};
}
inline Optimizer momentum(double lr, double mu = 0.9, bool nesterov = false) {
  detail_check::positive_rate(lr, nesterov ? "optim::nesterov" : "optim::momentum");
  tessera::detail::require(mu >= 0.0 && mu < 1.0, ErrorKind::invalid_argument,
                           "optim::momentum: mu must be in [0, 1), got " + std::to_string(mu));
  return {Optimizer::Kind::momentum, lr, mu, nesterov};
}
inline Optimizer nesterov(double lr, double mu = 0.9) { return momentum(lr, mu, true); }
inline Optimizer adam(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8) {
  detail_check::positive_rate(lr, "optim::adam");
  tessera::detail::require(beta1 >= 0.0 && beta1 < 1.0 && beta2 >= 0.0 && beta2 < 1.0 && epsilon > 0.0,
                           ErrorKind::invalid_argument, "optim::adam: need 0 <= beta1, beta2 < 1 and epsilon > 0");
  Optimizer o{Optimizer::Kind::adam, lr};
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.epsilon = epsilon;
  return o;
}
/// Adam with decoupled weight decay (Loshchilov & Hutter): w -= lr * (adam_step + wd * w).
inline Optimizer adamw(double lr = 1e-3, double weight_decay = 1e-2, double beta1 = 0.9, double beta2 = 0.999) {
  Optimizer o = adam(lr, beta1, beta2);
  tessera::detail::require(weight_decay >= 0.0, ErrorKind::invalid_argument, "optim::adamw: weight_decay must be >= 0");
  o.decoupled_weight_decay = weight_decay;
  return o;
}

}  // namespace tessera::optim
