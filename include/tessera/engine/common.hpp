// tessera/engine/common.hpp - what every training engine shares: its configuration, what an epoch
// returns, what a worker holds, the busy/idle accounting of pipelines, where a step's rows come
// from, and the Engine concept Trainer drives.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/range.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/model/architecture.hpp"
#include "tessera/optim/optimizer.hpp"

namespace tessera {

/// What one worker holds, in floats.
struct WorkerMemory {
  std::size_t parameters = 0;       ///< parameters this worker owns (updates)
  std::size_t gradients = 0;        ///< its gradient buffer
  std::size_t optimizer_state = 0;  ///< momentum / Adam moments of the parameters it updates
  std::size_t activations = 0;      ///< activation stash and backward scratch
  /// Parameters, gradients and optimizer state.
  [[nodiscard]] std::size_t model_floats() const noexcept { return parameters + gradients + optimizer_state; }
  /// All of it in bytes (4 per float).
  [[nodiscard]] std::size_t bytes() const noexcept { return 4 * (model_floats() + activations); }
};

/// Busy versus elapsed time of the workers over some steps. The bubble fraction is the share of
/// worker time spent waiting: 1 - busy / (workers x elapsed), elapsed measured per step from the
/// first worker's start to the last worker's end of its forward and backward work.
struct PipelineStats {
  double busy_seconds = 0.0;    ///< summed over workers
  double worker_seconds = 0.0;  ///< workers x elapsed, summed over steps
  /// Steps measured.
  std::size_t steps = 0;
  /// 1 - busy_seconds / worker_seconds (0 before any step).
  [[nodiscard]] double bubble_fraction() const noexcept {
    return worker_seconds > 0.0 ? 1.0 - busy_seconds / worker_seconds : 0.0;
  }
  /// The fill-drain idle share of S equal stages and M micro-batches: (S - 1) / (M + S - 1).
  [[nodiscard]] static double theory(std::size_t stages, std::size_t micro_batches) noexcept {
    return static_cast<double>(stages - 1) / static_cast<double>(micro_batches + stages - 1);
  }
};

/// The micro-batch schedule of a pipeline.
enum class Schedule { gpipe, one_f_one_b };
inline const char* to_string(Schedule s) noexcept { return s == Schedule::gpipe ? "GPipe" : "1F1B"; }

/// What a pipeline balances between its stages.
enum class Balance {
  cost,       ///< estimated work per sample: forward and backward products plus elementwise work
  parameters  ///< parameter count (memory)
};

/// What an engine needs to go on from where it stopped, in the whole model's layout whatever the
/// engine and the number of workers: a checkpoint holds it, and another engine (other workers,
/// ranks or stages) takes it up.
struct TrainingState {
  /// The model's parameters.
  std::vector<float> parameters;
  std::vector<std::vector<float>> moments;  ///< optimizer state buffers (momentum: 1, Adam: 2)
  std::uint64_t steps = 0;                  ///< optimizer steps taken (Adam's bias correction)
};

namespace detail {

/// How an engine trains, resolved by Trainer from its options and policies.
struct EngineConfig {
  std::size_t batch = 32;           ///< samples per data-parallel replica per step
  std::size_t micro_batches = 1;    ///< passes per replica per step
  std::size_t epochs = 1;           ///< of the whole fit (for learning-rate schedules)
  std::size_t shards = 0;           ///< deterministic mode: logical shards per global batch (0: off)
  bool prefetch = false;            ///< Load<Prefetch>
  bool overlap = true;              ///< sum gradient buckets during the backward pass
  std::size_t bucket_floats = std::size_t{1} << 20;
  std::size_t stages = 1, replicas = 1;  ///< Partition<Layerwise>
  Schedule schedule = Schedule::one_f_one_b;
  Balance balance = Balance::cost;
  /// Sharded data (one shard per process): the rows each process holds; empty when every process
  /// holds the whole data set.
  std::vector<std::size_t> process_rows;
  /// Keys the training passes' random draws (dropout masks) with epoch, step and sample position.
  std::uint64_t seed = 0;
};

/// What an engine's epoch returns.
struct EpochResult {
  double loss_sum = 0.0;  ///< unnormalised sum of per-sample losses over every worker
  double compute_seconds = 0.0, communication_seconds = 0.0;
  double learning_rate = 0.0;  ///< of the epoch's last step
  PipelineStats stats;         ///< Partition<Layerwise>
  bool pipeline = false;
};

/// A training state for p parameters and optimizer `o`, or an Error naming what differs.
inline void check_state(const TrainingState& t, std::size_t p, const optim::Optimizer& o) {
  require(t.parameters.size() == p, ErrorKind::shape,
          "Trainer: the training state holds " + std::to_string(t.parameters.size()) + " parameters, the model has " +
              std::to_string(p));
  require(t.moments.size() == o.state_buffers(), ErrorKind::invalid_argument,
          "Trainer: the training state holds " + std::to_string(t.moments.size()) + " optimizer buffer(s), " +
              o.describe() + " keeps " + std::to_string(o.state_buffers()));
  for (std::size_t b = 0; b < t.moments.size(); ++b)
    require(t.moments[b].size() == p, ErrorKind::shape,
            "Trainer: optimizer buffer " + std::to_string(b) + " of the training state holds " +
                std::to_string(t.moments[b].size()) + " values for " + std::to_string(p) + " parameters");
}

/// 0.5 * weight_decay * |W|^2 of the whole model's parameters p (biases excluded).
inline double weight_penalty_of(const Architecture& arch, const std::vector<float>& p, float weight_decay) {
  double s = 0.0;
  for (const DenseLayer& L : arch.layers)
    for (std::size_t i = 0; i < L.weight_count(); ++i) s += static_cast<double>(p[L.offset + i]) * p[L.offset + i];
  return 0.5 * weight_decay * s;
}

/// The scheduled learning rate of step s of `steps` in `epoch` of `epochs`.
inline double learning_rate(const optim::Optimizer& o, std::size_t epoch, std::size_t s, std::size_t steps,
                            std::size_t epochs) {
  return o.learning_rate * o.schedule.factor(static_cast<double>(epoch) + static_cast<double>(s) / static_cast<double>(steps),
                                             static_cast<double>(epochs));
}

/// The loss of step `step` of `epoch` (0-based) is not finite: the fit diverged.
[[noreturn]] inline void loss_diverged(double loss, std::size_t epoch, std::size_t step, const optim::Optimizer& o,
                                       bool collective, const std::string& where = "") {
  const std::string msg = "Trainer::fit: the loss became " + std::to_string(loss) + " at epoch " +
                          std::to_string(epoch + 1) + ", step " + std::to_string(step + 1) + where +
                          "; the model is left unchanged. Lower the learning rate (" + o.describe() +
                          ") or standardise the features";
  if (collective) throw CollectiveError(ErrorKind::runtime, msg);
  throw Error(ErrorKind::runtime, msg);
}

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

inline RowSource rows_of(const data::Dataset& d, const std::vector<std::size_t>& order) {
  return {d.features.data(), d.targets.data(), d.cols(), d.target_dim, &order};
}

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

/// Per-worker busy clock of one step.
struct StepClock {
  Clock::time_point start{}, end{};
  double busy = 0.0;
};

}  // namespace detail

/// What Trainer needs of an engine: how many steps an epoch of n rows takes; steps [lo, hi) of an
/// epoch over the data in an order, going on from the epoch's result so far (`so_far`, empty at
/// step 0) and calling on_step(step, running mean loss) on the process that reports; the trained
/// parameters in the whole model's layout; how many workers train; what each holds; and the
/// training state, to checkpoint and to take up again (`restore`, before the first step).
template <class E>
concept Engine = requires(E& e, const E& ce, const data::Dataset& d, const std::vector<std::size_t>& order,
                          std::size_t n, const detail::EpochResult& so_far, const TrainingState& st,
                          void (*on_step)(std::size_t, double)) {
  { ce.steps_per_epoch(n) } -> std::convertible_to<std::size_t>;
  { e.epoch(d, order, n, detail::Range{0, n}, so_far, on_step) } -> std::same_as<detail::EpochResult>;
  { e.parameters() } -> std::same_as<std::vector<float>>;
  { ce.workers() } -> std::convertible_to<std::size_t>;
  { e.memory() } -> std::same_as<std::vector<WorkerMemory>>;
  { e.state() } -> std::same_as<TrainingState>;
  e.restore(st);
};

}  // namespace tessera
