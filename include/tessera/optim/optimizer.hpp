// tessera/optim/optimizer.hpp - SGD, momentum (classic and Nesterov), Adam, AdamW, RMSProp, AdaGrad
// and the user's update rules (optim/rule.hpp). Each update is one fused pass over the flat
// parameter buffer: parameters, gradients and state are read and written once per step.
#pragma once

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "tessera/detail/elementwise.hpp"
#include "tessera/optim/rule.hpp"
#include "tessera/optim/schedule.hpp"

namespace tessera::optim {

/// An optimizer and its hyper-parameters; make one with sgd(), momentum(), nesterov(), adam(),
/// adamw(), rmsprop(), adagrad() or custom().
struct Optimizer {
  ///@{
  /// The update rule (custom: the user's, in `rule`).
  enum class Kind { sgd, momentum, adam, rmsprop, adagrad, custom } kind = Kind::sgd;
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
  double rho = 0.9;  ///< RMSProp's decay of the mean square (epsilon is its guard, and AdaGrad's)
  /// The user's rule (Kind::custom).
  std::shared_ptr<const detail_rule::ErasedRule> rule{};
  /// How the learning rate changes over the epochs.
  Schedule schedule{};

  /// Same optimizer with a learning-rate schedule.
  [[nodiscard]] Optimizer with(Schedule s) const {
    Optimizer o = *this;
    o.schedule = s;
    return o;
  }
  /// Buffers of optimizer state per parameter (momentum, RMSProp, AdaGrad: 1, Adam: 2).
  [[nodiscard]] std::size_t state_buffers() const {
    switch (kind) {
      case Kind::sgd: return 0;
      case Kind::momentum:
      case Kind::rmsprop:
      case Kind::adagrad: return 1;
      case Kind::adam: return 2;
      case Kind::custom: return rule ? rule->state_buffers() : 0;
    }
    return 0;
  }
  /// Calls f with the shipped rule type this optimizer is (and its hyper-parameters), or returns
  /// false for a custom rule.
  template <class F>
  bool with_rule(F&& f) const {
    switch (kind) {
      case Kind::sgd: f(SgdRule{}); return true;
      case Kind::momentum: f(MomentumRule{static_cast<float>(momentum), nesterov}); return true;
      case Kind::adam:
        f(AdamRule{static_cast<float>(beta1), static_cast<float>(beta2), static_cast<float>(epsilon),
                   static_cast<float>(decoupled_weight_decay), beta1, beta2});
        return true;
      case Kind::rmsprop: f(RmsPropRule{static_cast<float>(rho), static_cast<float>(epsilon)}); return true;
      case Kind::adagrad: f(AdaGradRule{static_cast<float>(epsilon)}); return true;
      case Kind::custom: break;
    }
    return false;
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
      case Kind::rmsprop: return "rmsprop(lr=" + g(learning_rate) + ", rho=" + g(rho) + ")";
      case Kind::adagrad: return "adagrad(lr=" + g(learning_rate) + ")";
      case Kind::custom: return (rule ? rule->name() : std::string("custom")) + "(lr=" + g(learning_rate) + ")";
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

/// RMSProp: a running mean square of the gradient (decay `rho`) divides the step.
inline Optimizer rmsprop(double lr = 1e-3, double rho = 0.9, double epsilon = 1e-8) {
  detail_check::positive_rate(lr, "optim::rmsprop");
  tessera::detail::require(rho >= 0.0 && rho < 1.0 && epsilon > 0.0, ErrorKind::invalid_argument,
                           "optim::rmsprop: need 0 <= rho < 1 and epsilon > 0");
  Optimizer o{Optimizer::Kind::rmsprop, lr};
  o.rho = rho;
  o.epsilon = epsilon;
  return o;
}
/// AdaGrad: the sum of squared gradients so far divides the step.
inline Optimizer adagrad(double lr = 1e-2, double epsilon = 1e-10) {
  detail_check::positive_rate(lr, "optim::adagrad");
  tessera::detail::require(epsilon > 0.0, ErrorKind::invalid_argument, "optim::adagrad: need epsilon > 0");
  Optimizer o{Optimizer::Kind::adagrad, lr};
  o.epsilon = epsilon;
  return o;
}
/// An optimizer of the user's update rule `r` (a type modelling UpdateRule) at base rate `lr`. It
/// runs on devices whose memory the host reads (the CPU).
template <UpdateRule R>
Optimizer custom(double lr, R r) {
  detail_check::positive_rate(lr, "optim::custom");
  tessera::detail::require(r.state_buffers() <= max_state_buffers, ErrorKind::invalid_argument,
                           "optim::custom: the rule " + std::string(r.name()) + " keeps " +
                               std::to_string(r.state_buffers()) + " state buffers, at most " +
                               std::to_string(max_state_buffers) + " are possible");
  Optimizer o{Optimizer::Kind::custom, lr};
  o.rule = std::make_shared<detail_rule::RuleModel<R>>(r);
  return o;
}

}  // namespace tessera::optim
