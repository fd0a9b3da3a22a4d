// tessera/model/gradcheck.hpp - a public gradient checker: the analytic gradient of a model's
// loss against central finite differences, parameter by parameter.
#pragma once

#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "tessera/model/model.hpp"

namespace tessera {

/// How check_gradients() compares the analytic gradient with central differences.
struct GradientCheckOptions {
  float epsilon = 1e-3f;     ///< relative step: h = epsilon * max(1, |w|)
  double tolerance = 2e-2;   ///< max |analytic - numeric| / max(|analytic|, |numeric|, floor)
  double floor = 1e-3;       ///< entries below max(floor, 1e-2 * max|analytic|) compare absolutely,
                             ///< since float32 round-off dominates their difference quotients
  std::size_t stride = 1;    ///< check every stride-th parameter (1 = all)
};

/// What check_gradients() found.
struct GradientCheckResult {
  /// True when every checked parameter is within the tolerance.
  bool ok = true;
  /// Parameters compared.
  std::size_t checked = 0;
  std::size_t skipped = 0;    ///< parameters next to a kink (ReLU at 0), where the two
                              ///< difference quotients (steps h and h/2) disagree with each other
  double max_error = 0.0;     ///< the largest relative error seen
  std::size_t worst = 0;      ///< flat index of the parameter with that error
  ///@{
  /// Both gradients at `worst`.
  double analytic = 0.0, numeric = 0.0;  ///< both gradients at `worst`
  ///@}
  std::string where;          ///< "layer 1 weight (3, 7)" or "layer 0 bias 2"
};

namespace detail {
inline std::string parameter_name(const Architecture& a, std::size_t i) {
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    const Layer& L = a.layers[l];
    if (i >= L.offset + L.parameter_count()) continue;
    const std::size_t k = i - L.offset;
    if (L.op) return "layer " + std::to_string(l) + " (" + L.op->kind() + ") parameter " + std::to_string(k);
    if (k < L.weight_count())
      return "layer " + std::to_string(l) + " weight (" + std::to_string(k / L.out) + ", " + std::to_string(k % L.out) + ")";
    return "layer " + std::to_string(l) + " bias " + std::to_string(k - L.weight_count());
  }
  return "parameter " + std::to_string(i);
}

template <class LossFn>
double central_difference(float& w, float h, LossFn& loss) {
  const float w0 = w;
  w = w0 + h;
  const double up = loss();
  w = w0 - h;
  const double down = loss();
  w = w0;
  return (up - down) / (2.0 * static_cast<double>(h));
}
}  // namespace detail

/// Compares `analytic` (the gradient of `loss` at the model's parameters) with central
/// differences of `loss`. `loss` is called with the model's parameters perturbed in place.
template <class LossFn>
GradientCheckResult check_gradients(Model& model, std::span<const float> analytic, LossFn&& loss,
                                    GradientCheckOptions o = {}) {
  detail::require(analytic.size() == model.parameter_count(), ErrorKind::shape,
                  "check_gradients: the gradient has " + std::to_string(analytic.size()) +
                      " entries, the model has " + std::to_string(model.parameter_count()) + " parameters");
  GradientCheckResult res;
  auto p = model.parameters();
  double largest = 0.0;
  for (float g : analytic) largest = std::max(largest, static_cast<double>(std::fabs(g)));
  const double floor = std::max(o.floor, 1e-2 * largest);
  for (std::size_t i = 0; i < p.size(); i += (o.stride ? o.stride : 1)) {
    const float h = o.epsilon * std::max(1.0f, std::fabs(p[i]));
    const double num = detail::central_difference(p[i], h, loss), half = detail::central_difference(p[i], 0.5f * h, loss);
    const double ana = analytic[i];
    const double scale = std::max({std::fabs(ana), std::fabs(num), floor});
    if (std::fabs(num - half) > o.tolerance * scale) {  // the loss is not smooth within h of w
      ++res.skipped;
      continue;
    }
    const double err = std::fabs(ana - num) / scale;
    ++res.checked;
    if (err > res.max_error) {
      res.max_error = err;
      res.worst = i;
      res.analytic = ana;
      res.numeric = num;
      res.where = detail::parameter_name(model.architecture(), i);
    }
  }
  res.ok = res.max_error <= o.tolerance && res.checked > 0;
  return res;
}

/// Checks the model's own loss_and_gradient on (x, y): its loss is a training pass (dropout on,
/// with the same masks at every call), differenced as it is.
inline GradientCheckResult check_gradients(Model& model, MatrixView x, std::span<const float> y,
                                           GradientCheckOptions o = {}) {
  std::vector<float> g, scratch;
  model.loss_and_gradient(x, y, g);
  return check_gradients(model, g, [&] { return model.loss_and_gradient(x, y, scratch); }, o);
}

}  // namespace tessera
