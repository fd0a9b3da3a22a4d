// tessera/optim/update.hpp - the per-worker optimizer state and its fused update: one pass of the
// optimizer's rule (optim/rule.hpp) over a slice of the flat buffer.
#pragma once

#include <thrust/memory.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "tessera/detail/gradient_view.hpp"
#include "tessera/device/concepts.hpp"
#include "tessera/optim/optimizer.hpp"

namespace tessera::optim {

/// One worker's optimizer state (the rule's buffers: momentum's velocity, Adam's moments) on device
/// `Dev`, and the step count.
template <class Dev>
class State {
 public:
  /// The device's float vector.
  using vector = typename Dev::template vector<float>;
  /// State for `n` parameters, zero, as `o` needs it.
  State(const Optimizer& o, std::size_t n) : opt_(o), n_(n), buffers_(o.state_buffers()) {
    tessera::detail::require(o.kind != Optimizer::Kind::custom || (o.rule && tessera::detail::host_memory<Dev>),
                             ErrorKind::invalid_argument,
                             "optim::custom: " + (o.rule ? "the rule " + o.rule->name() + " runs on host memory; on " +
                                                               std::string(Dev::name) + " use a shipped rule"
                                                         : std::string("the optimizer holds no rule")));
    for (auto& b : buffers_) b.assign(n, 0.0f);
  }

  /// Updates taken so far.
  [[nodiscard]] std::uint64_t steps() const noexcept { return t_; }
  /// Buffers of state per parameter, each n values on the device.
  [[nodiscard]] std::size_t buffers() const noexcept { return buffers_.size(); }
  /// State buffer `k`, n values on the device.
  [[nodiscard]] vector& buffer(std::size_t k) noexcept { return buffers_[k]; }
  /// State buffer `k`, n values on the device.
  [[nodiscard]] const vector& buffer(std::size_t k) const noexcept { return buffers_[k]; }
  /// The optimizer it updates with.
  [[nodiscard]] const Optimizer& optimizer() const noexcept { return opt_; }

  /// w <- update(w, g) with learning rate `lr` (the scheduled rate), one pass over all n values.
  void step(float* w, const float* g, double lr) {
    ++t_;
    update(Dev::exec(), w, g, 0, n_, lr, t_);
  }

  /// The update of step number `t` (1-based) on elements [lo, hi) only, with `exec`: workers
  /// that share one state update disjoint slices of it in parallel.
  template <class Exec>
  void update(Exec&& exec, float* w, const float* g, std::size_t lo, std::size_t hi, double lr, std::uint64_t t) {
    update_from(exec, w, tessera::detail::GradientOf{g + lo}, lo, hi, lr, t);
  }

  /// Same, reading the gradient through `g` (indexed from lo): a buffer, or a sum of buffers.
  template <class Exec, class G>
  void update_from(Exec&& exec, float* w, G g, std::size_t lo, std::size_t hi, double lr, std::uint64_t t) {
    const std::size_t n = hi - lo;
    w += lo;
    float* b[max_state_buffers] = {};
    for (std::size_t k = 0; k < buffers_.size(); ++k) b[k] = raw(buffers_[k]) + lo;
    if (opt_.with_rule([&](const auto& rule) { detail_rule::run_rule(exec, rule, w, g, b, n, lr, t); })) return;
    run_custom(exec, w, g, b, n, lr, t);
  }

 private:
  static float* raw(vector& v) { return thrust::raw_pointer_cast(v.data()); }

  /// A user's rule (host memory): one buffer or a sum of two workers' buffers directly, any other
  /// gradient view through a copy.
  template <class Exec, class G>
  void run_custom(Exec&&, float* w, G g, float* const* b, std::size_t n, double lr, std::uint64_t t) {
    if constexpr (tessera::detail::host_memory<Dev>) {
      constexpr bool parallel = std::is_same_v<std::remove_cvref_t<Exec>, std::remove_cvref_t<decltype(thrust::omp::par)>>;
      if constexpr (std::is_same_v<G, tessera::detail::GradientOf>) {
        opt_.rule->run(parallel, w, g.g, nullptr, b, n, lr, t);
      } else if constexpr (std::is_same_v<G, tessera::detail::GradientSum2>) {
        opt_.rule->run(parallel, w, g.a, g.b, b, n, lr, t);
      } else {
        std::vector<float> copy(n);  // per call: workers update disjoint slices at once
        for (std::size_t i = 0; i < n; ++i) copy[i] = g(i);
        opt_.rule->run(parallel, w, copy.data(), nullptr, b, n, lr, t);
      }
    } else {
      (void)w, (void)g, (void)b, (void)n, (void)lr, (void)t;  // refused in the constructor
    }
  }

  Optimizer opt_;
  std::size_t n_;
  std::uint64_t t_ = 0;
  std::vector<vector> buffers_;
};

}  // namespace tessera::optim
