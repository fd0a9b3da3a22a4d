// tessera/optim/schedule.hpp - learning-rate schedules as a factor of the base rate, a function of
// training progress measured in (fractional) epochs.
#pragma once

#include <cmath>
#include <string>

#include "tessera/core/error.hpp"

namespace tessera::optim {

/// A learning-rate schedule: a factor of the base rate per (fractional) epoch; make one with
/// step_decay() or cosine_decay().
struct Schedule {
  ///@{
  /// Constant, step decay or cosine decay.
  enum class Kind { constant, step, cosine } kind = Kind::constant;
  ///@}
  double every = 1.0;          ///< step: epochs between decays
  double gamma = 1.0;          ///< step: factor applied at each decay
  double min_factor = 0.0;     ///< cosine: final factor of the base rate
  double warmup_epochs = 0.0;  ///< linear warm-up from 0 before the schedule proper

  /// Factor of the base learning rate at `epoch` (fractional) of a run of `total_epochs`.
  [[nodiscard]] double factor(double epoch, double total_epochs) const {
    double f = 1.0;
    switch (kind) {
      case Kind::constant: break;
      case Kind::step: f = std::pow(gamma, std::floor(epoch / every)); break;
      case Kind::cosine: {
        const double t = total_epochs > 0.0 ? std::fmin(epoch / total_epochs, 1.0) : 1.0;
        f = min_factor + 0.5 * (1.0 - min_factor) * (1.0 + std::cos(3.14159265358979323846 * t));
        break;
      }
    }
    if (warmup_epochs > 0.0 && epoch < warmup_epochs) f *= epoch / warmup_epochs;
    return f;
  }
};

inline Schedule constant_rate() { return {}; }

/// Multiplies the rate by `gamma` every `every_epochs` epochs.
inline Schedule step_decay(double every_epochs, double gamma) {
  detail::require(every_epochs > 0.0 && gamma > 0.0, ErrorKind::invalid_argument,
                  "step_decay: every_epochs and gamma must be positive, got " + std::to_string(every_epochs) + " and " +
                      std::to_string(gamma));
  return {Schedule::Kind::step, every_epochs, gamma, 0.0, 0.0};
}

/// Half a cosine from the base rate down to min_factor * base over the whole run.
inline Schedule cosine_decay(double min_factor = 0.0, double warmup_epochs = 0.0) {
  detail::require(min_factor >= 0.0 && min_factor <= 1.0 && warmup_epochs >= 0.0, ErrorKind::invalid_argument,
                  "cosine_decay: min_factor must be in [0, 1] and warmup_epochs >= 0");
  return {Schedule::Kind::cosine, 1.0, 1.0, min_factor, warmup_epochs};
}

}  // namespace tessera::optim
