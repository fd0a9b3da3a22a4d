// tessera/optim/update.hpp - the fused update kernels and the per-worker optimizer state.
#pragma once

#include <thrust/memory.h>

#include <cmath>
#include <cstdint>

#include "tessera/detail/gradient_view.hpp"
#include "tessera/optim/optimizer.hpp"

namespace tessera::detail {

template <class G>
struct SgdUpdate {
  float* w;
  G g;
  float lr;
  TESSERA_HD void operator()(std::size_t i) const { w[i] -= lr * g(i); }
};

template <class G>
struct MomentumUpdate {
  float* w;
  G g;
  float* v;
  float lr, mu;
  bool nesterov;
  TESSERA_HD void operator()(std::size_t i) const {
    const float gi = g(i);
    const float vi = mu * v[i] + gi;
    v[i] = vi;
    w[i] -= lr * (nesterov ? gi + mu * vi : vi);
  }
};

template <class G>
struct AdamUpdate {
  float* w;
  G g;
  float* m;
  float* v;
  float lr, b1, b2, eps, c1, c2, wd;  // c1 = 1/(1-b1^t), c2 = 1/(1-b2^t)
  TESSERA_HD void operator()(std::size_t i) const {
    const float gi = g(i);
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] -= lr * (mi * c1 / (std::sqrt(vi * c2) + eps) + wd * w[i]);
  }
};

}  // namespace tessera::detail

namespace tessera::optim {

/// One worker's optimizer state (momentum or Adam moments) on device `Dev`, and the step count.
template <class Dev>
class State {
 public:
  /// The device's float vector.
  using vector = typename Dev::template vector<float>;
  /// State for `n` parameters, zero, as `o` needs it.
  State(const Optimizer& o, std::size_t n) : opt_(o), n_(n) {
    if (o.state_buffers() >= 1) first_.assign(n, 0.0f);
    if (o.state_buffers() >= 2) second_.assign(n, 0.0f);
  }

  /// Updates taken so far.
  [[nodiscard]] std::uint64_t steps() const noexcept { return t_; }
  /// Buffers of state per parameter (momentum: 1, Adam: 2), each n values on the device.
  [[nodiscard]] std::size_t buffers() const noexcept { return opt_.state_buffers(); }
  /// State buffer `k` (0 or 1), n values on the device.
  [[nodiscard]] vector& buffer(std::size_t k) noexcept { return k == 0 ? first_ : second_; }
  /// State buffer `k` (0 or 1), n values on the device.
  [[nodiscard]] const vector& buffer(std::size_t k) const noexcept { return k == 0 ? first_ : second_; }
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
    update_from(exec, w, detail::GradientOf{g + lo}, lo, hi, lr, t);
  }

  /// Same, reading the gradient through `g` (indexed from lo): a buffer, or a sum of buffers.
  template <class Exec, class G>
  void update_from(Exec&& exec, float* w, G g, std::size_t lo, std::size_t hi, double lr, std::uint64_t t) {
    const auto f = static_cast<float>(lr);
    const std::size_t n = hi - lo;
    w += lo;
    switch (opt_.kind) {
      case Optimizer::Kind::sgd: detail::for_each_element(exec, n, detail::SgdUpdate<G>{w, g, f}); break;
      case Optimizer::Kind::momentum:
        detail::for_each_element(exec, n, detail::MomentumUpdate<G>{w, g, raw(first_) + lo, f,
                                                                 static_cast<float>(opt_.momentum), opt_.nesterov});
        break;
      case Optimizer::Kind::adam: {
        const auto tt = static_cast<double>(t);
        detail::for_each_element(
            exec, n,
            detail::AdamUpdate<G>{w, g, raw(first_) + lo, raw(second_) + lo, f, static_cast<float>(opt_.beta1),
                               static_cast<float>(opt_.beta2), static_cast<float>(opt_.epsilon),
                               static_cast<float>(1.0 / (1.0 - std::pow(opt_.beta1, tt))),
                               static_cast<float>(1.0 / (1.0 - std::pow(opt_.beta2, tt))),
                               static_cast<float>(opt_.decoupled_weight_decay)});
        break;
      }
    }
  }

 private:
  static float* raw(vector& v) { return thrust::raw_pointer_cast(v.data()); }
  Optimizer opt_;
  std::size_t n_;
  std::uint64_t t_ = 0;
  vector first_, second_;
};

}  // namespace tessera::optim
