// tessera/optim/rule.hpp - update rules as types (the model is ensmallen's update policies): a rule
// says how many state buffers per parameter it keeps, what it computes once per step (prepare:
// the learning rate, bias corrections) and how one element moves (apply), as a __host__ __device__
// function. The library runs every rule the same way - one fused pass over a slice of the flat
// buffer, reading the gradient through the communicator's view (one buffer, or a sum of two
// workers' buffers) - so the threaded engine's sliced update, ZeRO-1's owned slices and the GPU
// path take any rule. The shipped rules (SGD, momentum, Nesterov, Adam, AdamW, RMSProp, AdaGrad)
// are such types; a user's rule is one too, given to an optimizer with optim::custom.
#pragma once

#include <thrust/system/cpp/execution_policy.h>
#include <thrust/system/omp/execution_policy.h>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/detail/gradient_view.hpp"
#include "tessera/detail/launch.hpp"

namespace tessera::optim {

/// Most state buffers per parameter a rule may keep.
inline constexpr std::size_t max_state_buffers = 4;

/// Element i's state: s[k] is buffer k's value for the element being updated.
struct Slots {
  /// Each buffer, offset to the slice being updated.
  float* b[max_state_buffers];
  /// The element.
  std::size_t i;
  /// Buffer k's value for the element.
  TESSERA_HD float& operator[](std::size_t k) const { return b[k][i]; }
};

/// What an update rule is: `name()` for messages, `state_buffers()` (0 to 4) buffers of state per
/// parameter (zero at the start), `prepare(lr, t)` the constants of step t (1-based) at the
/// scheduled learning rate lr, and `apply(w, g, s, k)` that moves one parameter w with its
/// gradient g, its state s and the step's constants k. The rule and its constants are copied into
/// the kernel: they must be trivially copyable, and apply must be TESSERA_HD to run on a GPU.
template <class R>
concept UpdateRule = std::is_trivially_copyable_v<R> && requires(const R& r, double lr, std::uint64_t t, float& w,
                                                                 float g, Slots s) {
  { r.name() } -> std::convertible_to<std::string>;
  { r.state_buffers() } -> std::convertible_to<std::size_t>;
  r.prepare(lr, t);
  requires std::is_trivially_copyable_v<decltype(r.prepare(lr, t))>;
  r.apply(w, g, s, r.prepare(lr, t));
};

/// Plain SGD: w -= lr g.
struct SgdRule {
  /// Per-step constants.
  struct Step {
    float lr;  ///< the scheduled rate
  };
  /// "sgd".
  [[nodiscard]] std::string name() const { return "sgd"; }
  /// None.
  [[nodiscard]] std::size_t state_buffers() const noexcept { return 0; }
  /// The step's rate.
  [[nodiscard]] Step prepare(double lr, std::uint64_t) const noexcept { return {static_cast<float>(lr)}; }
  /// One element.
  TESSERA_HD void apply(float& w, float g, Slots, Step k) const { w -= k.lr * g; }
};

/// Momentum (heavy ball): v = mu v + g; w -= lr v; Nesterov's look-ahead: w -= lr (g + mu v).
struct MomentumRule {
  float mu = 0.9f;        ///< the momentum factor
  bool nesterov = false;  ///< Nesterov's variant
  /// Per-step constants.
  struct Step {
    float lr;  ///< the scheduled rate
  };
  /// "momentum" or "nesterov".
  [[nodiscard]] std::string name() const { return nesterov ? "nesterov" : "momentum"; }
  /// The velocity.
  [[nodiscard]] std::size_t state_buffers() const noexcept { return 1; }
  /// The step's rate.
  [[nodiscard]] Step prepare(double lr, std::uint64_t) const noexcept { return {static_cast<float>(lr)}; }
  /// One element.
  TESSERA_HD void apply(float& w, float g, Slots s, Step k) const {
    const float v = mu * s[0] + g;
    s[0] = v;
    w -= k.lr * (nesterov ? g + mu * v : v);
  }
};

/// Adam (Kingma & Ba), with AdamW's decoupled weight decay when wd > 0.
struct AdamRule {
  ///@{
  /// Moment decay rates, denominator guard and decoupled weight decay.
  float beta1 = 0.9f, beta2 = 0.999f, epsilon = 1e-8f, wd = 0.0f;
  ///@}
  /// Per-step constants: the rate and the bias corrections 1/(1 - beta^t).
  struct Step {
    ///@{
    /// The rate and both corrections.
    float lr, c1, c2;
    ///@}
  };
  /// "adam" or "adamw".
  [[nodiscard]] std::string name() const { return wd > 0.0f ? "adamw" : "adam"; }
  /// First and second moments.
  [[nodiscard]] std::size_t state_buffers() const noexcept { return 2; }
  /// The step's rate and bias corrections (computed in double, from the double hyper-parameters
  /// the optimizer holds: see Optimizer::rule_of).
  [[nodiscard]] Step prepare(double lr, std::uint64_t t) const noexcept {
    const auto tt = static_cast<double>(t);
    return {static_cast<float>(lr), static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(b1d), tt))),
            static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(b2d), tt)))};
  }
  /// One element.
  TESSERA_HD void apply(float& w, float g, Slots s, Step k) const {
    const float m = beta1 * s[0] + (1.0f - beta1) * g;
    const float v = beta2 * s[1] + (1.0f - beta2) * g * g;
    s[0] = m;
    s[1] = v;
    w -= k.lr * (m * k.c1 / (std::sqrt(v * k.c2) + epsilon) + wd * w);
  }
  ///@{
  /// The decay rates in double, for the bias corrections.
  double b1d = 0.9, b2d = 0.999;
  ///@}
};

/// RMSProp (Hinton): r = rho r + (1 - rho) g^2; w -= lr g / (sqrt(r) + eps).
struct RmsPropRule {
  ///@{
  /// Decay of the mean square, and the denominator guard.
  float rho = 0.9f, epsilon = 1e-8f;
  ///@}
  /// Per-step constants.
  struct Step {
    float lr;  ///< the scheduled rate
  };
  /// "rmsprop".
  [[nodiscard]] std::string name() const { return "rmsprop"; }
  /// The running mean square of the gradient.
  [[nodiscard]] std::size_t state_buffers() const noexcept { return 1; }
  /// The step's rate.
  [[nodiscard]] Step prepare(double lr, std::uint64_t) const noexcept { return {static_cast<float>(lr)}; }
  /// One element.
  TESSERA_HD void apply(float& w, float g, Slots s, Step k) const {
    const float r = rho * s[0] + (1.0f - rho) * g * g;
    s[0] = r;
    w -= k.lr * g / (std::sqrt(r) + epsilon);
  }
};

/// AdaGrad (Duchi et al.): a += g^2; w -= lr g / (sqrt(a) + eps).
struct AdaGradRule {
  float epsilon = 1e-10f;  ///< the denominator guard
  /// Per-step constants.
  struct Step {
    float lr;  ///< the scheduled rate
  };
  /// "adagrad".
  [[nodiscard]] std::string name() const { return "adagrad"; }
  /// The sum of squared gradients.
  [[nodiscard]] std::size_t state_buffers() const noexcept { return 1; }
  /// The step's rate.
  [[nodiscard]] Step prepare(double lr, std::uint64_t) const noexcept { return {static_cast<float>(lr)}; }
  /// One element.
  TESSERA_HD void apply(float& w, float g, Slots s, Step k) const {
    const float a = s[0] + g * g;
    s[0] = a;
    w -= k.lr * g / (std::sqrt(a) + epsilon);
  }
};

static_assert(UpdateRule<SgdRule> && UpdateRule<MomentumRule> && UpdateRule<AdamRule> && UpdateRule<RmsPropRule> &&
              UpdateRule<AdaGradRule>);

namespace detail_rule {

/// Rule R over elements [0, n) of a slice: w and the state buffers are offset to the slice, the
/// gradient view g is indexed from it.
template <class R, class G>
struct RuleKernel {
  R rule;
  float* w;
  G g;
  float* b[max_state_buffers];
  decltype(std::declval<const R&>().prepare(0.0, 1)) k;
  TESSERA_HD void operator()(std::size_t i) const {
    rule.apply(w[i], g(i), Slots{{b[0], b[1], b[2], b[3]}, i}, k);
  }
};

/// One fused pass of rule `r` on `exec`'s system.
template <class R, class Exec, class G>
void run_rule(Exec&& exec, const R& r, float* w, G g, float* const* buffers, std::size_t n, double lr,
              std::uint64_t t) {
  RuleKernel<R, G> kernel{r, w, g, {buffers[0], buffers[1], buffers[2], buffers[3]}, r.prepare(lr, t)};
  tessera::detail::for_each_element(exec, n, kernel);
}

/// A user's rule behind a virtual interface, so that an Optimizer value can hold it: it runs on
/// host memory, in parallel (OpenMP) or on the calling thread, reading one gradient buffer or the
/// sum of two.
class ErasedRule {
 public:
  virtual ~ErasedRule() = default;
  [[nodiscard]] virtual std::string name() const = 0;
  [[nodiscard]] virtual std::size_t state_buffers() const = 0;
  virtual void run(bool parallel, float* w, const float* g, const float* g2, float* const* buffers, std::size_t n,
                   double lr, std::uint64_t t) const = 0;
};

template <class R>
class RuleModel final : public ErasedRule {
 public:
  explicit RuleModel(R r) : r_(r) {}
  [[nodiscard]] std::string name() const override { return r_.name(); }
  [[nodiscard]] std::size_t state_buffers() const override { return r_.state_buffers(); }
  void run(bool parallel, float* w, const float* g, const float* g2, float* const* buffers, std::size_t n, double lr,
           std::uint64_t t) const override {
    if (g2) {
      const tessera::detail::GradientSum2 sum{g, g2};
      if (parallel)
        run_rule(thrust::omp::par, r_, w, sum, buffers, n, lr, t);
      else
        run_rule(thrust::cpp::par, r_, w, sum, buffers, n, lr, t);
    } else {
      const tessera::detail::GradientOf one{g};
      if (parallel)
        run_rule(thrust::omp::par, r_, w, one, buffers, n, lr, t);
      else
        run_rule(thrust::cpp::par, r_, w, one, buffers, n, lr, t);
    }
  }

 private:
  R r_;
};

}  // namespace detail_rule
}  // namespace tessera::optim
