// tessera/partition/common.hpp - what the model-parallel engines share: where a step's rows come
// from, what a worker holds (memory report), and the time a team spent busy versus waiting.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "tessera/core/error.hpp"

namespace tessera {

/// What one worker of a partitioned model holds, in floats.
struct WorkerMemory {
  std::size_t parameters = 0;       ///< parameters this worker owns (updates)
  std::size_t gradients = 0;        ///< its gradient buffer
  std::size_t optimizer_state = 0;  ///< momentum / Adam moments of its parameters
  std::size_t activations = 0;      ///< activation stash and backward scratch
  [[nodiscard]] std::size_t model_floats() const noexcept { return parameters + gradients + optimizer_state; }
  [[nodiscard]] std::size_t bytes() const noexcept { return 4 * (model_floats() + activations); }
};

/// Busy versus elapsed time of the workers over some steps. The bubble fraction is the share of
/// worker time spent waiting: 1 - busy / (workers x elapsed), elapsed measured per step from the
/// first worker's start to the last worker's end of its forward and backward work.
struct PipelineStats {
  double busy_seconds = 0.0;         ///< summed over workers
  double worker_seconds = 0.0;       ///< workers x elapsed, summed over steps
  std::size_t steps = 0;
  [[nodiscard]] double bubble_fraction() const noexcept {
    return worker_seconds > 0.0 ? 1.0 - busy_seconds / worker_seconds : 0.0;
  }
  /// The fill-drain idle share of S equal stages and M micro-batches: (S - 1) / (M + S - 1).
  [[nodiscard]] static double theory(std::size_t stages, std::size_t micro_batches) noexcept {
    return static_cast<double>(stages - 1) / static_cast<double>(micro_batches + stages - 1);
  }
};

namespace detail {

/// What a partitioned engine's epoch returns: the unnormalised loss sum, times, the learning rate
/// of its last step and the pipeline's busy/idle accounting.
struct PartitionEpochOut {
  double loss_sum = 0.0, compute_seconds = 0.0, communication_seconds = 0.0, learning_rate = 0.0;
  PipelineStats stats;
};

/// Rows [lo, hi) of a step in the epoch's order (order null or empty: the data's own order).
struct RowSource {
  const float* x = nullptr;
  const float* y = nullptr;
  std::size_t cols = 0, target_dim = 1;
  const std::vector<std::size_t>* order = nullptr;

  [[nodiscard]] bool ordered() const noexcept { return order && !order->empty(); }
  /// Features of rows [lo, hi): in place when contiguous, else gathered into buf.
  const float* features(std::size_t lo, std::size_t hi, std::vector<float>& buf) const {
    if (!ordered()) return x + lo * cols;
    buf.resize((hi - lo) * cols);
    for (std::size_t r = lo; r < hi; ++r) std::copy_n(x + (*order)[r] * cols, cols, buf.data() + (r - lo) * cols);
    return buf.data();
  }
  const float* targets(std::size_t lo, std::size_t hi, std::vector<float>& buf) const {
    if (!ordered()) return y + lo * target_dim;
    buf.resize((hi - lo) * target_dim);
    for (std::size_t r = lo; r < hi; ++r)
      std::copy_n(y + (*order)[r] * target_dim, target_dim, buf.data() + (r - lo) * target_dim);
    return buf.data();
  }
};

/// Per-worker busy clock of one step.
struct StepClock {
  using clock = std::chrono::steady_clock;
  clock::time_point start{}, end{};
  double busy = 0.0;
};

/// Adds one step's clocks to `stats`.
inline void account(PipelineStats& stats, const std::vector<StepClock>& clocks) {
  if (clocks.empty()) return;
  auto first = clocks[0].start, last = clocks[0].end;
  double busy = 0.0;
  for (const auto& c : clocks) {
    first = std::min(first, c.start);
    last = std::max(last, c.end);
    busy += c.busy;
  }
  stats.busy_seconds += busy;
  stats.worker_seconds += static_cast<double>(clocks.size()) * std::chrono::duration<double>(last - first).count();
  ++stats.steps;
}

inline void check_step_loss(double loss, std::size_t epoch, std::size_t step, const std::string& optimizer) {
  if (!std::isfinite(loss))
    fail(ErrorKind::runtime, "Trainer::fit: the loss became " + std::to_string(loss) + " at epoch " +
                                 std::to_string(epoch + 1) + ", step " + std::to_string(step + 1) +
                                 "; the model is left unchanged. Lower the learning rate (" + optimizer +
                                 ") or standardise the features");
}

}  // namespace detail
}  // namespace tessera
