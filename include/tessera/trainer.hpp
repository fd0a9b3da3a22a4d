// tessera/trainer.hpp - Trainer<Policies...>: the one place where the policy families meet.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tessera/core/checked.hpp"
#include "tessera/core/writer.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/eval/metrics.hpp"
#include "tessera/model/model.hpp"
#include "tessera/policies.hpp"
#include "tessera/split/order.hpp"
#include "tessera/train/data_parallel.hpp"
#include "tessera/train/epoch.hpp"
#include "tessera/train/history.hpp"
#include "tessera/train/progress.hpp"

namespace tessera {

namespace detail {
/// How a Reduce choice reaches other processes. ThreadAllreduce trains in this process alone;
/// tessera/mpi.hpp specialises this for MpiAllreduce.
template <class R>
struct ReduceBackend {
  static constexpr bool available = false;
  static constexpr bool across_processes = false;
};
/// How a Partition choice trains: Replicate through DataParallel below; tessera/partition.hpp
/// specialises this for Layerwise and Columnwise.
template <class P>
struct PartitionBackend {
  static constexpr bool available = false;
};
/// How a Device choice trains: Cpu through DataParallel below; tessera/cuda.hpp specialises this
/// for Cuda.
template <class D>
struct DeviceBackend {
  static constexpr bool available = false;
};
/// The most worker threads a Trainer takes: a larger count is a mistake (a negative int converted
/// to std::size_t, say), not a machine.
inline constexpr std::size_t max_workers = 4096;
inline constexpr std::size_t max_deterministic_shards = 16384;

/// The batch a step really uses when `replicas` x `batch` exceeds the `rows` of the data: the
/// smallest batch that still takes every row in one step (never below `floor`). Nothing trains
/// differently (a step of a larger batch would hold the same rows), but no buffer is sized for
/// samples that do not exist, and no product of counts overflows.
inline std::size_t fitted_batch(std::size_t batch, std::size_t rows, std::size_t replicas, std::size_t floor = 1) {
  const std::size_t enough = std::max<std::size_t>((rows + replicas - 1) / replicas, std::max<std::size_t>(floor, 1));
  return std::min(batch, enough);
}

/// Says once per process (on the process that writes files) that a fit's global batch is larger
/// than its data: every epoch is then one step on all rows, which is seldom what was meant.
inline void warn_batch_larger_than_data(std::size_t batch, std::size_t replicas, const std::string& replicas_are,
                                        std::size_t rows) {
  static std::atomic<bool> warned{false};
  if (saturating_mul(batch, replicas) <= rows || !this_process_writes().load() || warned.exchange(true)) return;
  std::fprintf(stderr,
               "tessera: warning: the global batch (batch_size %zu x %zu %s) is larger than the %zu training rows, so "
               "every epoch is one step on all rows; lower batch_size for more updates per epoch (shown once)\n",
               batch, replicas, replicas_are.c_str(), rows);
}

template <>
struct ReduceBackend<ThreadAllreduce> {
  static constexpr bool available = true;
  static constexpr bool across_processes = false;
  static std::unique_ptr<CrossRanks> join(std::vector<float>&, const std::string&) { return nullptr; }
};
}  // namespace detail

struct TrainerOptions {
  std::size_t batch_size = 32;  ///< samples per worker per step; a step trains on workers x batch_size
  std::size_t epochs = 10;
  std::uint64_t seed = 0;       ///< keys every shuffle of the run
  std::size_t workers = 0;      ///< worker threads (Reduce<ThreadAllreduce>); 0: one per hardware thread
  std::size_t micro_batches = 1;  ///< forward/backward passes per worker per step (gradient accumulation)
  bool deterministic = false;   ///< bitwise-identical parameters whatever the number of workers
  std::size_t deterministic_shards = 12;  ///< logical shards per step in deterministic mode
  Progress progress = Progress::automatic;
  /// Reduce<MpiAllreduce>: sum gradients over ranks in buckets of whole layers (at least
  /// bucket_bytes each, last layer first) started during the backward pass; off: one sum after it.
  bool overlap = true;
  std::size_t bucket_bytes = std::size_t{4} << 20;
};

/// Loss and the metrics that apply to the model's loss (NaN where they do not).
struct Evaluation {
  double loss = NAN;
  double accuracy = NAN;  ///< classification
  double log_loss = NAN;  ///< classification
  double mse = NAN;       ///< regression
  double r2 = NAN;        ///< regression
};

template <class... Ps>
class Trainer {
 public:
  using policies = PolicySet<Ps...>;
  using device = typename policies::device;

  Trainer(TrainerOptions options, optim::Optimizer optimizer) : opt_(options), optimizer_(optimizer) {
    detail::require(options.batch_size > 0, ErrorKind::invalid_argument, "Trainer: batch_size must be at least 1, got 0");
    detail::require(options.workers <= detail::max_workers, ErrorKind::invalid_argument,
                    "Trainer: workers = " + std::to_string(options.workers) + " is above the limit of " +
                        std::to_string(detail::max_workers) +
                        " worker threads (was it set from a negative number?); 0 means one per hardware thread");
    detail::require(options.epochs > 0, ErrorKind::invalid_argument, "Trainer: epochs must be at least 1, got 0");
    detail::require(options.micro_batches > 0 && options.micro_batches <= options.batch_size, ErrorKind::invalid_argument,
                    "Trainer: micro_batches must be in [1, batch_size = " + std::to_string(options.batch_size) +
                        "], got " + std::to_string(options.micro_batches));
    detail::require(!options.deterministic ||
                        (options.deterministic_shards > 0 && options.deterministic_shards <= detail::max_deterministic_shards),
                    ErrorKind::invalid_argument,
                    "Trainer: deterministic_shards must be in [1, " + std::to_string(detail::max_deterministic_shards) +
                        "], got " + std::to_string(options.deterministic_shards));
    detail::require(options.bucket_bytes >= sizeof(float), ErrorKind::invalid_argument,
                    "Trainer: bucket_bytes must be at least 4 (one float), got " + std::to_string(options.bucket_bytes));
  }

  /// The number of worker threads a fit will use.
  [[nodiscard]] std::size_t workers() const noexcept {
    if (opt_.workers) return opt_.workers;
    const unsigned hw = std::thread::hardware_concurrency();
    return hw ? hw : 1;
  }

  [[nodiscard]] const TrainerOptions& options() const noexcept { return opt_; }
  [[nodiscard]] const optim::Optimizer& optimizer() const noexcept { return optimizer_; }

  /// Trains `model` on `train`; the model's parameters change only if the whole fit succeeds.
  History fit(Model& model, const data::Dataset& train) { return fit_impl(model, train, nullptr); }

  /// Same, and evaluates on `validation` after every epoch. Each callback may define
  /// `on_epoch(const EpochRecord&)`, returning void or bool (false stops the fit early).
  template <class... Callbacks>
  History fit(Model& model, const data::Dataset& train, const data::Dataset& validation, Callbacks&&... cbs) {
    return fit_impl(model, train, &validation, cbs...);
  }

  [[nodiscard]] Evaluation evaluate(const Model& model, const data::Dataset& d) const {
    check_data(model, d, "Trainer::evaluate");
    Evaluation e;
    e.loss = model.loss_value(d.x(), d.targets);
    if (is_classification(model.loss())) {
      e.accuracy = metrics::accuracy(model, d);
      e.log_loss = metrics::log_loss(model, d);
    } else {
      const Matrix p = model.predict(d.x());
      e.mse = metrics::mse(p.values(), d.targets);
      e.r2 = metrics::r2(p.values(), d.targets);
    }
    return e;
  }

  [[nodiscard]] Matrix predict(const Model& model, MatrixView x) const { return model.predict(x); }

 private:
  using clock = std::chrono::steady_clock;
  static double seconds(clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

  static void check_data(const Model& model, const data::Dataset& d, const std::string& where) {
    detail::require(!d.empty(), ErrorKind::invalid_argument, where + ": the data set has no rows");
    detail::require(d.cols() == model.input_dim(), ErrorKind::shape,
                    where + ": the model (" + model.architecture().describe() + ") takes " +
                        std::to_string(model.input_dim()) + " features, the data set has " + std::to_string(d.cols()));
    detail::require(d.target_dim == model.architecture().target_dim(), ErrorKind::shape,
                    where + ": the model's loss " + to_string(model.loss()) + " needs " +
                        std::to_string(model.architecture().target_dim()) + " target value(s) per row, the data set has " +
                        std::to_string(d.target_dim));
    if (model.loss() == Loss::softmax_cross_entropy) data::check_class_labels(d, model.output_dim(), where);
    if (model.loss() == Loss::binary_cross_entropy) data::check_class_labels(d, 2, where);
  }

  template <class... Callbacks>
  History fit_impl(Model& model, const data::Dataset& train, const data::Dataset* validation, Callbacks&... cbs) {
    // Across processes, a rank whose own checks fail still joins the set-up agreement, with its
    // error as its signature: every rank then stops naming it, and nobody waits for it.
    constexpr bool across = detail::ReduceBackend<typename policies::reduce>::across_processes;
    std::exception_ptr problem;
    std::string problem_text;
    try {
      check_data(model, train, "Trainer::fit");
      if (validation) check_data(model, *validation, "Trainer::fit (validation set)");
      detail::require(!train.sharded() || across, ErrorKind::invalid_argument,
                      "Trainer::fit: the data set is shard " + std::to_string(train.shard.index) + " of " +
                          std::to_string(train.shard.count) + "; training on shards needs Reduce<MpiAllreduce>");
      detail::require(!(train.sharded() && opt_.deterministic), ErrorKind::invalid_argument,
                      "Trainer::fit: deterministic mode needs every rank to hold the whole data set; the data set is "
                      "shard " + std::to_string(train.shard.index) + " of " + std::to_string(train.shard.count));
      if (train.sharded()) {
        const auto [lo, hi] = data::shard_rows(train.shard.total_rows, train.shard.index, train.shard.count);
        detail::require(train.shard.first_row == lo && train.rows() == hi - lo, ErrorKind::invalid_argument,
                        "Trainer::fit: shard " + std::to_string(train.shard.index) + " of " +
                            std::to_string(train.shard.count) + " must hold rows [" + std::to_string(lo) + ", " +
                            std::to_string(hi) + ") of " + std::to_string(train.shard.total_rows) + ", it holds " +
                            std::to_string(train.rows()) + " rows from row " + std::to_string(train.shard.first_row) +
                            " (read it with data::read_binary_shard)");
      }
    } catch (const Error& e) {
      if (!across) throw;
      problem = std::current_exception();
      problem_text = e.what();
    }
    static_assert(!std::same_as<typename policies::sync, Sharded>,
                  "tessera::Trainer: Sync<Sharded> (optimizer state sharded across replicas) is not in this version; "
                  "use Sync<EveryStep> or Sync<Periodic<K>>");
    static_assert(std::same_as<device, Cpu> || detail::DeviceBackend<device>::available,
                  "tessera::Trainer: Device<Cuda> needs #include <tessera/cuda.hpp> (CMake component cuda, compiled by "
                  "nvcc)");
    static_assert(detail::ReduceBackend<typename policies::reduce>::available,
                  "tessera::Trainer: Reduce<MpiAllreduce> needs #include <tessera/mpi.hpp> (CMake component mpi); "
                  "Reduce<NcclAllreduce> needs #include <tessera/nccl.hpp> (CMake component nccl)");
    // A partition across ranks checks the data itself and agrees on its own setup signature, a
    // failed check included; the GPU engine trains in one process (no `problem` is kept there).
    if constexpr (!std::same_as<device, Cpu>)  // the GPU engine (tessera/cuda.hpp)
      return detail::DeviceBackend<device>::fit(*this, model, train, validation, cbs...);
    static_assert(std::same_as<typename policies::partition, Replicate> ||
                      detail::PartitionBackend<typename policies::partition>::available,
                  "tessera::Trainer: Partition<Layerwise> and Partition<Columnwise> need #include <tessera/partition.hpp>");
    if constexpr (!std::same_as<typename policies::partition, Replicate>)
      return detail::PartitionBackend<typename policies::partition>::fit(*this, model, train, validation, cbs...);

    detail::ParallelPlan plan;
    plan.workers = workers();
    plan.batch = opt_.batch_size;
    plan.micro_batches = opt_.micro_batches;
    if constexpr (requires { policies::sync::period; }) plan.period = policies::sync::period;
    plan.shards = opt_.deterministic ? opt_.deterministic_shards : 0;
    plan.prefetch = std::same_as<typename policies::load, Prefetch>;
    plan.overlap = opt_.overlap;
    plan.bucket_floats = opt_.bucket_bytes / sizeof(float);
    detail::require(!(opt_.deterministic && plan.period), ErrorKind::invalid_argument,
                    "Trainer: deterministic mode applies to Sync<EveryStep>; local SGD (Sync<Periodic<K>>) has no "
                    "worker-independent result");
    // Other processes (Reduce<MpiAllreduce>): agree on the whole setup, then start from rank 0's
    // parameters. A rank that disagrees is named on every rank before any step.
    std::vector<float> init(model.parameters().begin(), model.parameters().end());
    const std::unique_ptr<detail::CrossRanks> cross = detail::ReduceBackend<typename policies::reduce>::join(
        init, problem ? "this rank cannot train: " + problem_text : setup_signature(model, train, plan));
    if (problem) std::rethrow_exception(problem);  // every rank has the same problem: nobody waits
    plan.cross = cross.get();
    if (train.sharded()) check_shards(train, *cross);
    try {
      const std::size_t ranks = cross ? cross->size : 1;
      detail::warn_batch_larger_than_data(opt_.batch_size, ranks * plan.workers,
                                          ranks > 1 ? "workers x ranks" : "worker(s)", train.total_rows());
      if (train.sharded()) {
        for (std::size_t r = 0; r < cross->size; ++r) {
          const auto [lo, hi] = data::shard_rows(train.shard.total_rows, r, cross->size);
          plan.rank_rows.push_back(hi - lo);
        }
        const std::size_t most = *std::max_element(plan.rank_rows.begin(), plan.rank_rows.end());
        plan.batch = detail::fitted_batch(plan.batch, most, plan.workers, plan.micro_batches);
      } else {
        plan.batch = detail::fitted_batch(plan.batch, train.rows(), ranks * plan.workers, plan.micro_batches);
      }
      // One worker without deterministic mode uses every core inside each kernel and GEMM; several
      // workers (or deterministic mode) run each worker's kernels sequentially on its own thread.
      if (plan.workers == 1 && !plan.shards) return run<Cpu>(model, train, validation, plan, init, cbs...);
      detail::SingleThreadedBlas one_blas_thread;
      return run<detail::CpuWorker>(model, train, validation, plan, init, cbs...);
    } catch (const detail::CollectiveError&) {
      throw;  // raised by every rank at the same step: nobody waits
    } catch (const std::exception& e) {
      if (cross) cross->fail(e.what());  // the other ranks stop at their next wait instead of hanging
      throw;
    } catch (...) {
      if (cross) cross->fail("an exception that is not a std::exception");
      throw;
    }
  }

  /// Each rank must hold its own shard (index = rank, count = ranks). Checked together: every rank
  /// learns which ranks hold another shard and throws the same error, so nobody waits.
  static void check_shards(const data::Dataset& train, detail::CrossRanks& cross) {
    std::vector<double> wrong(cross.size, 0.0);
    const bool mine_ok = train.shard.count == cross.size && train.shard.index == cross.rank;
    wrong[cross.rank] = mine_ok ? 0.0 : 1.0;
    cross.sum(wrong.data(), wrong.size(), "shard check");
    std::string ranks;
    for (std::size_t r = 0; r < cross.size; ++r)
      if (wrong[r] != 0.0) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
    if (ranks.empty()) return;
    throw detail::CollectiveError(
        ErrorKind::invalid_argument,
        "Trainer::fit: each rank must train on its own shard of the data (index = rank, count = ranks = " +
            std::to_string(cross.size) + "); rank(s) " + ranks + " do not" +
            (mine_ok ? std::string() : " - this rank, " + std::to_string(cross.rank) + ", holds shard " +
                                           std::to_string(train.shard.index) + " of " + std::to_string(train.shard.count)) +
            " (read shards with mpi::read_binary_shard)");
  }

  /// Everything ranks must share to train one model together.
  std::string setup_signature(const Model& model, const data::Dataset& d, const detail::ParallelPlan& plan) const {
    return model.architecture().describe() + " | " + std::to_string(model.parameter_count()) +
           " parameters | weight_decay " + std::to_string(model.weight_decay()) + " | data " +
           shape_string(d.total_rows(), d.cols()) + (d.sharded() ? " in " + std::to_string(d.shard.count) + " shards" : "") +
           " | batch " + std::to_string(plan.batch) + " x " +
           std::to_string(plan.workers) + " workers | epochs " + std::to_string(opt_.epochs) + " | seed " +
           std::to_string(opt_.seed) + " | " + policies::split::name + ", " + policies::load::name + ", " +
           policies::sync::name + (plan.period ? "<" + std::to_string(plan.period) + ">" : "") + " | " +
           optimizer_.describe() + " | micro-batches " + std::to_string(plan.micro_batches) + " | deterministic " +
           (plan.shards ? std::to_string(plan.shards) + " shards" : std::string("off")) + " | overlap " +
           (plan.overlap ? "buckets of " + std::to_string(plan.bucket_floats) + " floats" : std::string("off"));
  }

  template <class Dev, class... Callbacks>
  History run(Model& model, const data::Dataset& train, const data::Dataset* validation, const detail::ParallelPlan& plan,
              const std::vector<float>& init, Callbacks&... cbs) {
    const Architecture& arch = model.architecture();
    const std::size_t ranks = plan.cross ? plan.cross->size : 1;
    const std::size_t n = train.total_rows();
    detail::DataParallel<Dev> engine(arch, model.weight_decay(), optimizer_, init, plan, opt_.epochs);
    // only rank 0 shows progress
    detail::ProgressLine progress(plan.cross && plan.cross->rank != 0 ? Progress::never : opt_.progress, opt_.epochs,
                                  engine.steps_per_epoch(train.rows()));

    History h;
    h.samples = n;
    h.workers = ranks * plan.workers;
    const auto t0 = clock::now();
    for (std::size_t epoch = 0; epoch < opt_.epochs; ++epoch) {
      const auto e0 = clock::now();
      // a shard is ordered by its own stream (shard 0's is the unsharded one)
      const std::uint64_t seed = opt_.seed + 0x9E3779B97F4A7C15ull * train.shard.index;
      const auto order = detail::epoch_order<typename policies::split>(train, seed, static_cast<std::uint32_t>(epoch));
      const detail::EpochResult r = engine.epoch(train, order, epoch, progress);
      EpochRecord rec = detail::epoch_record(r, epoch, n, arch, seconds(e0, clock::now()));
      const auto eval = [&](const Model& m, const data::Dataset& v) { return evaluate(m, v); };
      // every rank holds the same parameters unless each averages only its own replicas (local SGD)
      if (!detail::close_epoch(rec, model, validation, eval, [&] { return engine.parameters(); }, progress, h,
                               plan.period == 0, cbs...))
        break;
    }
    h.total_seconds = seconds(t0, clock::now());
    const std::vector<float> p = engine.parameters();
    std::copy(p.begin(), p.end(), model.parameters().begin());
    return h;
  }

  TrainerOptions opt_;
  optim::Optimizer optimizer_;
};

}  // namespace tessera
