// tessera/trainer.hpp - Trainer<Policies...>: the one place where the policy families meet, and
// the one epoch loop of every strategy, device and communicator.
//
// A fit: the Reduce choice makes a group of communicating workers (comm/concepts.hpp); every
// process checks its own inputs and the processes agree on the whole set-up (a process whose
// checks failed joins with its error, so every process stops naming it); process 0's parameters
// are broadcast; the Partition choice's engine trains epoch after epoch in the order the DataSplit
// choice draws, and Trainer closes each epoch (record, divergence check, validation, progress,
// history, callbacks). A process that fails tells the others; errors every process raises at the
// same point need no telling. The model's parameters change only when the whole fit succeeds.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "tessera/comm/concepts.hpp"
#include "tessera/comm/thread_comm.hpp"
#include "tessera/core/checked.hpp"
#include "tessera/core/writer.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/engine/common.hpp"
#include "tessera/engine/replicate.hpp"
#include "tessera/eval/exact.hpp"
#include "tessera/eval/metrics.hpp"
#include "tessera/model/model.hpp"
#include "tessera/policies.hpp"
#include "tessera/split/order.hpp"
#include "tessera/tasks/pool.hpp"
#include "tessera/train/checkpoint.hpp"
#include "tessera/train/epoch.hpp"
#include "tessera/train/history.hpp"
#include "tessera/train/memory.hpp"
#include "tessera/train/progress.hpp"
#include "tessera/train/timeline.hpp"

namespace tessera {

/// Deterministic mode: bitwise-identical parameters whatever the number of workers and ranks.
/// `.deterministic = true`, or `.deterministic = {true, 24}` for 24 logical shards per step.
struct Determinism {
  /// Off unless set.
  bool enabled = false;
  std::size_t shards = 12;  ///< logical shards per global batch (1 to 16384)
  /// `.deterministic = on` or `{on, logical_shards}`.
  constexpr Determinism(bool on = false, std::size_t logical_shards = 12) noexcept : enabled(on), shards(logical_shards) {}
  /// Whether it is on.
  constexpr explicit operator bool() const noexcept { return enabled; }
};

/// Communication across processes and GPUs: gradients summed in buckets of whole layers (at least
/// bucket_bytes each, last layer first) started during the backward pass; off: one sum after it.
/// `.overlap = false`, or `.overlap = {true, 1 << 20}` for buckets of at least 1 MiB.
struct Overlap {
  /// On unless set.
  bool enabled = true;
  /// Smallest bucket, in bytes.
  std::size_t bucket_bytes = std::size_t{4} << 20;
  /// `.overlap = on` or `{on, bytes}`.
  constexpr Overlap(bool on = true, std::size_t bytes = std::size_t{4} << 20) noexcept : enabled(on), bucket_bytes(bytes) {}
  /// Whether it is on.
  constexpr explicit operator bool() const noexcept { return enabled; }
};

/// How a Trainer trains: batch, epochs, seed, workers and modes.
struct TrainerOptions {
  // the run
  std::size_t batch_size = 32;  ///< samples per data-parallel replica per step (a worker; a pipeline; a split model)
  /// Passes over the training data.
  std::size_t epochs = 10;
  std::uint64_t seed = 0;       ///< keys every shuffle of the run
  // the workers
  std::size_t workers = 0;      ///< worker threads of each process; 0: one per hardware thread
  std::size_t micro_batches = 1;  ///< forward/backward passes per replica per step (gradient accumulation)
  /// Bitwise-identical results whatever the number of workers (Determinism).
  Determinism deterministic{};
  /// Progress lines on stderr.
  Progress progress = Progress::automatic;
  /// Gradient sums during the backward pass (Overlap).
  Overlap overlap{};
  /// A timeline of the fit: "" (the default) records nothing; else the Chrome-trace JSON file
  /// written at the fit's end (Perfetto, chrome://tracing), one track per worker; across ranks
  /// each rank writes `<stem>.rank<N>.json` beside it (docs/performance.md, Timeline).
  std::string timeline{};
};


namespace detail {

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

/// Whether the warning below was shown in this process.
inline std::atomic<bool>& batch_warning_shown() {
  static std::atomic<bool> shown{false};
  return shown;
}

/// Says once per process (on the process that writes files) that a fit's global batch is larger
/// than its data: every epoch is then one step on all rows, which is seldom what was meant.
inline void warn_batch_larger_than_data(std::size_t batch, std::size_t replicas, const std::string& replicas_are,
                                        std::size_t rows) {
  if (saturating_mul(batch, replicas) <= rows || !this_process_writes().load() || batch_warning_shown().exchange(true))
    return;
  std::fprintf(stderr,
               "tessera: warning: the global batch (batch_size %zu x %zu %s) is larger than the %zu training rows, so "
               "every epoch is one step on all rows; lower batch_size for more updates per epoch (shown once)\n",
               batch, replicas, replicas_are.c_str(), rows);
}

/// How Trainer::evaluate adds up per-row tables over the processes of a Reduce choice that spans
/// processes (`static void sum(double*, std::size_t)`); tessera/mpi.hpp defines it for
/// Reduce<MpiAllreduce>. Without one, a process evaluates the rows it holds.
template <class R>
struct ProcessSum {};

/// What a Reduce choice's factory is asked for.
struct GroupRequest {
  std::size_t workers = 1;          ///< worker threads of this process
  bool one_per_process = false;     ///< the engine runs one worker per process (partitions across ranks)
  const TrainerOptions* options = nullptr;
};

/// How a Reduce choice makes the group of a fit on a device, for an engine with several workers
/// per process or one (OnePerProcess: the partitions across ranks): ThreadAllreduce on the CPU
/// here; tessera/mpi.hpp, tessera/cuda.hpp and tessera/nccl.hpp add theirs. A user's Reduce
/// choice brings its own as `template <class Device, bool OnePerProcess> static
/// std::unique_ptr<G> make_group(const detail::GroupRequest&)`, G modelling comm::Group.
template <class R, class Device>
struct GroupFor {
  static constexpr bool available = requires(const GroupRequest& q) { R::template make_group<Device, false>(q); };
  template <bool OnePerProcess>
  static auto make(const GroupRequest& q) {
    return R::template make_group<Device, OnePerProcess>(q);
  }
};
template <>
struct GroupFor<ThreadAllreduce, Cpu> {
  static constexpr bool available = true;
  template <bool OnePerProcess>
  static std::unique_ptr<comm::LocalGroup> make(const GroupRequest& q) {
    return std::make_unique<comm::LocalGroup>(q.workers);
  }
};

/// How a Partition choice builds its engine: Replicate here, Layerwise and Columnwise in
/// tessera/partition.hpp. A user's Partition choice brings its own as `template <class Device,
/// class Sync, class Group> static std::unique_ptr<E> make_engine(Group&, const Model&,
/// std::span<const float> init, const optim::Optimizer&, EngineConfig)`, E modelling Engine.
template <class P>
struct EngineFor {
  static constexpr bool available =
      requires(comm::LocalGroup& g, const Model& m, std::span<const float> init, const optim::Optimizer& o, EngineConfig c) {
        P::template make_engine<Cpu, EveryStep>(g, m, init, o, c);
      };
  template <class Dev, class Sync, class Group>
  static auto make(Group& g, const Model& m, std::span<const float> init, const optim::Optimizer& o, EngineConfig cfg) {
    return P::template make_engine<Dev, Sync>(g, m, init, o, std::move(cfg));
  }
};

template <>
struct EngineFor<Replicate> {
  static constexpr bool available = true;
  /// The data-parallel replicas of `workers` workers: every one of them.
  static std::size_t replicas(std::size_t workers) noexcept { return workers; }
  template <class Dev, class Sync, class Group>
  static auto make(Group& g, const Model& m, std::span<const float> init, const optim::Optimizer& o, EngineConfig cfg) {
    return std::make_unique<ReplicateEngine<Dev, Group, Sync>>(g, m.architecture(), m.weight_decay(), o, init,
                                                               std::move(cfg));
  }
};

}  // namespace detail

/// What a fit will do, resolved before anything is built: Trainer::plan(model, data).
struct FitPlan {
  std::string policies;           ///< every family's choice, defaults filled in
  std::size_t workers = 1;        ///< worker threads (or GPUs) of each process
  std::size_t processes = 1;      ///< ranks
  std::size_t replicas = 1;       ///< data-parallel replicas: a step trains replicas x batch rows
  std::size_t batch = 0;          ///< rows per replica per step (fitted to the data)
  std::size_t global_batch = 0;   ///< rows per step
  std::size_t micro_batches = 1;  ///< forward/backward passes per replica per step
  std::size_t steps_per_epoch = 0;  ///< optimizer steps of one epoch
  std::size_t epochs = 0;         ///< of the fit
  std::string layout;             ///< the stages of a pipeline, the split of a column split
  FitMemory memory;               ///< this process's host memory, per worker and besides
  bool memory_known = false;      ///< false for a Partition choice of the user's
  /// Several lines, as `describe()` prints them.
  [[nodiscard]] std::string describe() const {
    std::string s = "policies: " + policies + "\nworkers: " + std::to_string(workers) + " per process x " +
                    std::to_string(processes) + " process(es); " + std::to_string(replicas) +
                    " data-parallel replica(s)\nbatch: " + std::to_string(batch) + " rows per replica per step, " +
                    std::to_string(global_batch) + " per step" +
                    (micro_batches > 1 ? " in " + std::to_string(micro_batches) + " micro-batches" : std::string()) +
                    "\nsteps: " + std::to_string(steps_per_epoch) + " per epoch x " + std::to_string(epochs) +
                    " epochs\n";
    if (!layout.empty()) s += "layout: " + layout + "\n";
    if (memory_known) {
      const std::size_t n = memory.workers.size();
      s += "memory (" + std::string(memory.device ? "device" : "host") + "): about " +
           detail::format_bytes(memory.bytes()) + " in this process; " + (n > 1 ? "per worker at most " : "the worker ") +
           memory.largest_worker().describe() + "; besides the workers " + memory.process_only.describe() + "\n";
    }
    return s;
  }
};

/// Trains models with the policies `Ps...`, at most one per family (DataSplit, Load, Partition, Reduce,
/// Sync, Device), in any order; defaults fill the rest. A wrong policy is a compile error naming it.
template <class... Ps>
class Trainer {
 public:
  /// The policies, defaults filled in.
  using policies = PolicySet<Ps...>;
  /// The Device policy's choice.
  using device = typename policies::device;

  /// A trainer with `options` and `optimizer`. Throws Error (ErrorKind::invalid_argument) for a batch
  /// size or epoch count of 0, too many workers, micro_batches outside [1, batch_size],
  /// deterministic.shards out of range or overlap.bucket_bytes below 4.
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
                        (options.deterministic.shards > 0 && options.deterministic.shards <= detail::max_deterministic_shards),
                    ErrorKind::invalid_argument,
                    "Trainer: deterministic.shards must be in [1, " + std::to_string(detail::max_deterministic_shards) +
                        "], got " + std::to_string(options.deterministic.shards));
    detail::require(options.overlap.bucket_bytes >= sizeof(float), ErrorKind::invalid_argument,
                    "Trainer: overlap.bucket_bytes must be at least 4 (one float), got " +
                        std::to_string(options.overlap.bucket_bytes));
  }

  /// The number of worker threads of each process a fit will use: `workers`, or for 0 one per
  /// hardware thread (inside a task of a tasks:: pool: the task's share of the cores).
  [[nodiscard]] std::size_t workers() const noexcept {
    if (opt_.workers) return opt_.workers;
    if (const std::size_t budget = detail::task_thread_budget()) return budget;
    return detail::hardware_threads();
  }

  /// The options it trains with.
  [[nodiscard]] const TrainerOptions& options() const noexcept { return opt_; }
  /// The optimizer it trains with.
  [[nodiscard]] const optim::Optimizer& optimizer() const noexcept { return optimizer_; }

  /// Trains `model` on `train`; the model's parameters change only if the whole fit succeeds (or
  /// stops on a signal: then they are those reached). Each callback may define
  /// `on_epoch(const EpochRecord&)`, returning void or bool (false stops the fit early), and
  /// `on_step_boundary(const StepPoint&, take)` (CheckpointEvery) or `stop_requested()`
  /// (StopOnSignal), for which the fit pauses between steps.
  template <class... Callbacks>
    requires((!std::same_as<std::remove_cvref_t<Callbacks>, data::Dataset> &&
              !std::same_as<std::remove_cvref_t<Callbacks>, Checkpoint>) && ...)
  History fit(Model& model, const data::Dataset& train, Callbacks&&... cbs) {
    return fit_impl(model, train, nullptr, nullptr, cbs...);
  }

  /// Same, and evaluates on `validation` after every epoch.
  template <class... Callbacks>
    requires(!std::same_as<std::remove_cvref_t<Callbacks>, Checkpoint> && ...)
  History fit(Model& model, const data::Dataset& train, const data::Dataset& validation, Callbacks&&... cbs) {
    return fit_impl(model, train, &validation, nullptr, cbs...);
  }

  /// Resumes the fit that wrote `from` (same model, data, global batch, epochs, seed, split and
  /// optimizer; any number of workers, ranks or stages) and returns the whole history. `model`
  /// takes the trained parameters; its own are not used.
  template <class... Callbacks>
  History fit(Model& model, const data::Dataset& train, const Checkpoint& from, Callbacks&&... cbs) {
    return fit_impl(model, train, nullptr, &from, cbs...);
  }
  /// Resumes the fit that wrote `from`, evaluating on `validation` after every epoch.
  template <class... Callbacks>
  History fit(Model& model, const data::Dataset& train, const data::Dataset& validation, const Checkpoint& from,
              Callbacks&&... cbs) {
    return fit_impl(model, train, &validation, &from, cbs...);
  }

  /// What fit(model, train) would do - policies, workers x ranks, batches, steps, the pipeline's
  /// stages, the memory per worker - without training. Checks the inputs as fit does. Under MPI
  /// it is collective like fit (every rank calls it).
  [[nodiscard]] FitPlan plan(const Model& model, const data::Dataset& train) const {
    check_inputs(model, train, nullptr);
    auto group = make_group(model);
    const detail::EngineConfig cfg = engine_config(train, *group);
    FitPlan p;
    p.policies = std::string("DataSplit<") + policies::split::name + ">, Load<" + policies::load::name +
                 ">, Partition<" + partition::name + ">, Reduce<" + reduce::name + ">, Sync<" + sync::name +
                 (sync::period ? "<" + std::to_string(sync::period) + ">" : "") + ">, Device<" + device_name() + ">";
    p.workers = group->lanes();
    p.processes = group->processes();
    p.replicas = replica_count(*group);
    p.micro_batches = cfg.micro_batches;
    p.epochs = opt_.epochs;
    const std::size_t rows = train.sharded() ? *std::max_element(cfg.process_rows.begin(), cfg.process_rows.end())
                                             : train.rows();
    const std::size_t spread = replicates ? (train.sharded() ? group->lanes() : p.replicas) : p.replicas;
    p.batch = detail::fitted_batch(cfg.batch, rows, spread, cfg.micro_batches);
    p.global_batch = p.batch * p.replicas;
    p.steps_per_epoch = train.sharded() ? (rows + p.batch * spread - 1) / (p.batch * spread)
                                        : (train.rows() + p.global_batch - 1) / p.global_batch;
    if constexpr (LayerwiseChoice<partition>) {
      p.layout = std::to_string(cfg.stages) + " stages x " + std::to_string(cfg.replicas) + " replica(s), " +
                 to_string(cfg.schedule) + ": " + plan_stages(model.architecture(), cfg.stages, cfg.balance).describe();
    } else if constexpr (std::same_as<partition, Columnwise>) {
      p.layout = "dense layers split by columns and rows over " +
                 std::to_string(across ? group->processes() : group->lanes()) + " workers";
    }
    if (const auto f = detail::fit_layout<policies>(optimizer_, cfg, *group, train.rows())) {
      p.memory = detail::estimate_fit_memory(model.architecture(), *f);
      p.memory_known = true;
    }
    return p;
  }

  /// Loss and metrics of `model` on `d`, computed on the trainer's worker threads. Every row counts
  /// exactly once and the result has the same bits for any number of workers. Under MPI a data set
  /// read as per-rank shards is evaluated over all its rows: every rank calls evaluate, and every
  /// rank gets the evaluation of the whole data set; a data set every rank holds whole is
  /// evaluated by each rank alone. Throws Error (ErrorKind::shape) when `d` does not fit the model.
  [[nodiscard]] Evaluation evaluate(const Model& model, const data::Dataset& d) const {
    check_data(model, d, "Trainer::evaluate");
    if constexpr (requires(double* p, std::size_t n) { detail::ProcessSum<reduce>::sum(p, n); }) {
      if (d.sharded()) {
        if constexpr (requires { detail::ProcessSum<reduce>::check(d, std::size_t{}); })
          detail::ProcessSum<reduce>::check(d, detail::scored_width(model));
        return detail::evaluate_exactly(model, d, workers(),
                                        [](double* p, std::size_t n) { detail::ProcessSum<reduce>::sum(p, n); });
      }
    }
    return detail::evaluate_exactly(model, d, workers());
  }

  /// The model's predictions for the rows of `x`, one row each.
  [[nodiscard]] Matrix predict(const Model& model, MatrixView x) const { return model.predict(x); }

 private:
  using partition = typename policies::partition;
  using reduce = typename policies::reduce;
  using sync = typename policies::sync;
  using Clock = std::chrono::steady_clock;
  static constexpr bool replicates = partition::replicates;
  static constexpr bool across = reduce::across_processes;
  static double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

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

  /// This process's own checks; an Error names what is wrong.
  void check_inputs(const Model& model, const data::Dataset& train, const data::Dataset* validation) const {
    check_data(model, train, "Trainer::fit");
    if (validation) check_data(model, *validation, "Trainer::fit (validation set)");
    if constexpr (!replicates) {
      detail::require(!opt_.deterministic, ErrorKind::invalid_argument,
                      std::string("Partition<") + partition::name + ">: deterministic mode applies to Partition<Replicate>");
      detail::require(!train.sharded(), ErrorKind::invalid_argument,
                      std::string("Partition<") + partition::name +
                          "> across ranks: every rank needs the whole training set (stage 0 reads the features, the last "
                          "stage the targets); the data set is shard " + std::to_string(train.shard.index) + " of " +
                          std::to_string(train.shard.count));
    }
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
  }

  template <class... Callbacks>
  History fit_impl(Model& model, const data::Dataset& train, const data::Dataset* validation, const Checkpoint* from,
                   Callbacks&... cbs) {
    role_.clear();
    static_assert(!detail::is_gpu<device> || requires { device::name; },
                  "tessera::Trainer: Device<Cuda> needs #include <tessera/cuda.hpp> (CMake component cuda, compiled by "
                  "nvcc)");
    static_assert(!std::same_as<reduce, MpiAllreduce> || detail::GroupFor<reduce, Cpu>::available,
                  "tessera::Trainer: Reduce<MpiAllreduce> needs #include <tessera/mpi.hpp> (CMake component mpi)");
    static_assert(!std::same_as<reduce, NcclAllreduce> || detail::is_gpu<device>,
                  "tessera::Trainer: Reduce<NcclAllreduce> requires Device<Cuda>");
    static_assert(detail::EngineFor<partition>::available,
                  "tessera::Trainer: Partition<Layerwise> and Partition<Columnwise> need #include <tessera/partition.hpp>; "
                  "a Partition choice of the user's needs a static make_engine<Device, Sync>(group, model, init, "
                  "optimizer, config) (docs/extending.md)");
    // communicators over host memory serve every device whose memory the host reads
    using group_device = std::conditional_t<detail::host_memory<device>, Cpu, device>;
    static_assert(detail::GroupFor<reduce, group_device>::available,
                  "tessera::Trainer: this Reduce choice makes no group on this device: Reduce<MpiAllreduce> needs "
                  "#include <tessera/mpi.hpp>, Reduce<NcclAllreduce> #include <tessera/nccl.hpp>");

    // Every process checks its own inputs; across processes a failed check joins the agreement
    // with its error as its set-up, so every process stops naming it and nobody waits.
    std::exception_ptr problem;
    std::string problem_text;
    try {
      check_inputs(model, train, validation);
    } catch (const Error& e) {
      if (!across) throw;
      problem = std::current_exception();
      problem_text = e.what();
    }
    auto group = make_group(model);
    if constexpr (!replicates && across) {
      if (!problem && opt_.workers != 0 && opt_.workers != group->processes()) {
        problem_text = std::string("tessera: Partition<") + partition::name +
                       ">: each rank is one worker, so workers must be 0 or the number of ranks (" +
                       std::to_string(group->processes()) + "), got " + std::to_string(opt_.workers);
        problem = std::make_exception_ptr(Error(ErrorKind::invalid_argument, problem_text.substr(9)));
      }
    }
    const detail::EngineConfig cfg = engine_config(train, *group);
    const std::string setup = resume_setup(model, train, *group);
    if (!problem && (from || (detail::BoundaryCallback<Callbacks> || ...))) {
      try {
        if (from) check_resume(*from, model, setup);
        detail::require(sync::period == 0, ErrorKind::invalid_argument,
                        std::string("Trainer::fit: Sync<") + sync::name +
                            "> keeps a replica and an optimizer state per worker, which a checkpoint does not hold in "
                            "this version; checkpoint and resume with Sync<EveryStep> or Sync<Sharded>");
      } catch (const Error& e) {
        if (!across) throw;
        problem = std::current_exception();
        problem_text = e.what();
      }
    }
    try {  // the memory the fit will need against what this process has, before anything is built
      if (!problem) detail::check_fit_memory<policies>(model.architecture(), optimizer_, cfg, *group, train.rows());
    } catch (const Error& e) {
      if (!across) throw;
      problem = std::current_exception();
      problem_text = e.what();
    }
    std::string agreed = signature(model, train, cfg, *group);
    if (from)
      agreed += " | resuming epoch " + std::to_string(from->epoch + 1) + " step " + std::to_string(from->step) +
                " after " + std::to_string(from->optimizer_steps) + " updates";
    group->agree("training setup", problem ? "this rank cannot train: " + problem_text : agreed);
    if (problem) std::rethrow_exception(problem);  // every process has the same problem: nobody waits
    const std::span<const float> start = from ? from->model.parameters() : model.parameters();
    std::vector<float> init(start.begin(), start.end());
    if (group->processes() > 1) group->broadcast(init.data(), init.size());
    if (train.sharded()) check_shards(train, *group);
    try {
      const Run run{from, &setup, &agreed};
      return train_with(*group, model, train, validation, init, cfg, run, cbs...);
    } catch (const detail::CollectiveError&) {
      throw;  // raised by every process at the same step: nobody waits
    } catch (const std::exception& e) {
      group->fail(role_ + e.what());  // the other processes stop at their next wait instead of hanging
      throw;
    } catch (...) {
      group->fail(role_ + "an exception that is not a std::exception");
      throw;
    }
  }

  /// The group of workers of a fit (plan and fit make it alike); a grid or split the workers
  /// cannot form is refused the same way on every process.
  auto make_group(const Model& model) const {
    using group_device = std::conditional_t<detail::host_memory<device>, Cpu, device>;
    detail::GroupRequest request;
    request.workers = workers();
    request.one_per_process = !replicates && across;
    request.options = &opt_;
    auto group = detail::GroupFor<reduce, group_device>::template make<!replicates && across>(request);
    if constexpr (requires { detail::EngineFor<partition>::validate(model.architecture(), 1, 1, 1, true); })
      detail::EngineFor<partition>::validate(model.architecture(), group->lanes(), group->processes(), opt_.micro_batches,
                                             across);
    return group;
  }

  /// How the engine trains, from the options, the policies and the data.
  template <class Group>
  detail::EngineConfig engine_config(const data::Dataset& train, const Group& group) const {
    detail::EngineConfig c;
    c.batch = opt_.batch_size;
    c.micro_batches = opt_.micro_batches;
    c.epochs = opt_.epochs;
    c.shards = opt_.deterministic ? opt_.deterministic.shards : 0;
    c.prefetch = policies::load::prefetch;
    c.overlap = opt_.overlap.enabled;
    c.bucket_floats = opt_.overlap.bucket_bytes / sizeof(float);
    // per-rank shards hold different rows at the same positions: their draws get keys of their own
    c.seed = train.sharded() ? opt_.seed + 0x9E3779B97F4A7C15ull * (train.shard.index + 1) : opt_.seed;
    const std::size_t lanes = group.lanes(), processes = group.processes();
    if constexpr (replicates) {
      if (train.sharded()) {
        for (std::size_t r = 0; r < processes; ++r) {
          const auto [lo, hi] = data::shard_rows(train.shard.total_rows, r, processes);
          c.process_rows.push_back(hi - lo);
        }
      }
    } else if constexpr (LayerwiseChoice<partition>) {
      c.replicas = partition::replicas;
      c.stages = (across ? processes : lanes) / partition::replicas;
      c.schedule = std::same_as<typename partition::schedule, GPipe> ? Schedule::gpipe : Schedule::one_f_one_b;
    }
    return c;
  }

  /// The data-parallel replicas of the fit (a step trains on replicas x batch_size rows).
  template <class Group>
  std::size_t replica_count(const Group& group) const {
    if constexpr (replicates) return group.lanes() * group.processes();
    else if constexpr (LayerwiseChoice<partition>) return partition::replicas;
    else return 1;
  }

  /// Everything the processes must share to train one model together, as fields separated by
  /// " | " (a disagreement names the fields that differ).
  template <class Group>
  std::string signature(const Model& model, const data::Dataset& d, const detail::EngineConfig& c, const Group& g) const {
    std::string s = model.architecture().describe() + " | " + std::to_string(model.parameter_count()) +
                    " parameters | weight_decay " + std::to_string(model.weight_decay()) + " | data " +
                    shape_string(d.total_rows(), d.cols()) +
                    (d.sharded() ? " in " + std::to_string(d.shard.count) + " shards" : "") + " | batch " +
                    std::to_string(opt_.batch_size) + " x " + std::to_string(g.lanes()) + " workers | epochs " +
                    std::to_string(opt_.epochs) + " | seed " + std::to_string(opt_.seed) + " | " +
                    policies::split::name + ", " + policies::load::name + ", " + sync::name +
                    (sync::period ? "<" + std::to_string(sync::period) + ">" : "") + " | " + optimizer_.describe() +
                    " | micro-batches " + std::to_string(c.micro_batches) + " | deterministic " +
                    (c.shards ? std::to_string(c.shards) + " shards" : std::string("off")) + " | overlap " +
                    (c.overlap ? "buckets of " + std::to_string(c.bucket_floats) + " floats" : std::string("off")) +
                    " | Partition<" + partition::name + ">";
    if constexpr (LayerwiseChoice<partition>)
      s += " " + std::to_string(c.stages) + " stages x " + std::to_string(c.replicas) + " replicas, " +
           to_string(c.schedule);
    return s + " | Device<" + device_name() + ">";
  }
  /// What a resumed fit must share with the fit that wrote its checkpoint, one "field: value"
  /// line each; anything else (workers, ranks, stages, policies of speed) may change.
  template <class Group>
  std::string resume_setup(const Model& model, const data::Dataset& d, const Group& g) const {
    const std::size_t replicas = replica_count(g);
    std::string s = "model: " + model.architecture().describe() + ", weight_decay " + std::to_string(model.weight_decay()) +
                    "\ndata: " + shape_string(d.total_rows(), d.cols()) +
                    (d.sharded() ? " in " + std::to_string(d.shard.count) + " shards" : "") +
                    "\nglobal batch: " + std::to_string(detail::saturating_mul(opt_.batch_size, replicas)) +
                    "\nepochs: " + std::to_string(opt_.epochs) + "\nseed: " + std::to_string(opt_.seed) +
                    "\nsplit: " + policies::split::name + "\noptimizer: " + optimizer_.describe() + "\n";
    if (opt_.deterministic) s += "deterministic: " + std::to_string(opt_.deterministic.shards) + " shards\n";
    return s;
  }

  /// A checkpoint this fit can resume from, or an Error naming every field that differs.
  void check_resume(const Checkpoint& from, const Model& model, const std::string& setup) const {
    const auto fields = [](const std::string& text) {
      std::vector<std::pair<std::string, std::string>> out;
      std::size_t at = 0;
      while (at < text.size()) {
        const std::size_t end = std::min(text.find('\n', at), text.size());
        const std::string line = text.substr(at, end - at);
        const std::size_t colon = line.find(": ");
        if (colon != std::string::npos) out.emplace_back(line.substr(0, colon), line.substr(colon + 2));
        at = end + 1;
      }
      return out;
    };
    const auto theirs = fields(from.setup), mine = fields(setup);
    std::string differ;
    const auto find = [](const auto& v, const std::string& k) -> std::string {
      for (const auto& [key, value] : v)
        if (key == k) return value;
      return "(none)";
    };
    for (const auto& [key, value] : mine)
      if (find(theirs, key) != value)
        differ += "; " + key + ": the checkpoint has " + find(theirs, key) + ", this fit " + value;
    for (const auto& [key, value] : theirs)
      if (find(mine, key) == "(none)") differ += "; " + key + ": the checkpoint has " + value + ", this fit (none)";
    detail::require(differ.empty(), ErrorKind::invalid_argument,
                    "Trainer::fit: cannot resume from this checkpoint" + differ +
                        " (a resumed fit keeps the model, data, global batch = batch_size x replicas, epochs, seed, "
                        "split and optimizer)");
    detail::require(from.model.parameter_count() == model.parameter_count(), ErrorKind::shape,
                    "Trainer::fit: the checkpoint's model has " + std::to_string(from.model.parameter_count()) +
                        " parameters, this model " + std::to_string(model.parameter_count()));
    detail::require(from.epoch <= opt_.epochs, ErrorKind::invalid_argument,
                    "Trainer::fit: the checkpoint is past the fit's last epoch (" + std::to_string(from.epoch) + " of " +
                        std::to_string(opt_.epochs) + ")");
    detail::check_state(TrainingState{std::vector<float>(model.parameter_count()), from.moments, 0},
                        model.parameter_count(), optimizer_);
  }

  static std::string device_name() {
    if constexpr (detail::is_gpu<device>) return "Cuda";
    else return device::name;
  }

  /// Each process must hold its own shard (index = process, count = processes). Checked together:
  /// every process learns which hold another shard and throws the same error, so nobody waits.
  template <class Group>
  static void check_shards(const data::Dataset& train, Group& group) {
    const std::size_t P = group.processes(), me = group.process();
    std::vector<double> wrong(P, 0.0);
    const bool mine_ok = train.shard.count == P && train.shard.index == me;
    wrong[me] = mine_ok ? 0.0 : 1.0;
    group.sum(wrong.data(), wrong.size(), "shard check");
    std::string ranks;
    for (std::size_t r = 0; r < P; ++r)
      if (wrong[r] != 0.0) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
    if (ranks.empty()) return;
    throw detail::CollectiveError(
        ErrorKind::invalid_argument,
        "Trainer::fit: each rank must train on its own shard of the data (index = rank, count = ranks = " +
            std::to_string(P) + "); rank(s) " + ranks + " do not" +
            (mine_ok ? std::string() : " - this rank, " + std::to_string(me) + ", holds shard " +
                                           std::to_string(train.shard.index) + " of " + std::to_string(train.shard.count)) +
            " (read shards with mpi::read_binary_shard)");
  }

  /// What a fit goes on from and records: the checkpoint it resumes (or null), the resume fields
  /// and the whole agreed set-up (both written into its checkpoints).
  struct Run {
    const Checkpoint* from = nullptr;
    const std::string* setup = nullptr;
    const std::string* agreed = nullptr;
  };

  /// Builds the engine for the device and trains: one worker without deterministic mode uses
  /// every core inside each kernel and GEMM; several workers (or deterministic mode) run each
  /// worker's kernels on its own thread.
  template <class Group, class... Callbacks>
  History train_with(Group& group, Model& model, const data::Dataset& train, const data::Dataset* validation,
                     const std::vector<float>& init, detail::EngineConfig cfg, const Run& run, Callbacks&... cbs) {
    const std::size_t rows = train.sharded() ? *std::max_element(cfg.process_rows.begin(), cfg.process_rows.end())
                                             : train.rows();
    const std::size_t replicas = replica_count(group);
    detail::warn_batch_larger_than_data(opt_.batch_size, replicas,
                                        replicates ? (group.processes() > 1 ? "workers x ranks" : "worker(s)")
                                        : LayerwiseChoice<partition> ? "replica(s)"
                                                                     : "split model",
                                        train.total_rows());
    const std::size_t spread = replicates ? (train.sharded() ? group.lanes() : replicas) : replicas;
    cfg.batch = detail::fitted_batch(cfg.batch, rows, spread, cfg.micro_batches);
    const auto go = [&]<class Dev>() {
      return epochs(*detail::EngineFor<partition>::template make<Dev, sync>(group, model, init, optimizer_, cfg), group,
                    model, train, validation, run, cbs...);
    };
    if constexpr (!std::same_as<device, Cpu>) {  // a GPU, or a device of the user's, as it is
      return go.template operator()<device>();
    } else {
      if (replicates && group.lanes() == 1 && !cfg.shards) return go.template operator()<Cpu>();
      detail::SingleThreadedBlas one_blas_thread;
      return go.template operator()<detail::CpuWorker>();
    }
  }

  /// The epoch loop, the same for every engine. Without step-boundary callbacks an epoch is one
  /// call of the engine; with them the epoch runs in spans of steps, and between two spans the
  /// processes agree on the time and on a stop, and the callbacks may take a checkpoint.
  template <Engine E, class Group, class... Callbacks>
  History epochs(E& engine, Group& group, Model& model, const data::Dataset& train, const data::Dataset* validation,
                 const Run& run, Callbacks&... cbs) {
    const Architecture& arch = model.architecture();
    const std::size_t n = train.total_rows();
    if constexpr (requires { engine.where(); }) role_ = engine.where() + ": ";
    detail::TimelineFit timeline(opt_.timeline);  // on for the fit; an exception drops it unwritten
    const std::size_t spe = engine.steps_per_epoch(train.rows());
    detail::ProgressLine progress(group.process() == 0 && detail::this_process_writes().load() ? opt_.progress
                                                                                              : Progress::never,
                                  opt_.epochs, spe, n,
                                  run.from ? static_cast<double>(run.from->epoch * spe + run.from->step) : 0.0);
    History h;
    std::size_t first_epoch = 0;
    detail::EpochResult first;  // the resumed epoch's result so far
    std::size_t first_step = 0;
    double first_seconds = 0.0;
    if (const Checkpoint* c = run.from) {
      detail::require(c->steps_per_epoch == spe || c->step == 0, ErrorKind::invalid_argument,
                      "Trainer::fit: the checkpoint was taken at step " + std::to_string(c->step) + " of " +
                          std::to_string(c->steps_per_epoch) + " steps per epoch; this fit takes " +
                          std::to_string(spe) + " (the global batch or the data differ)");
      engine.restore(TrainingState{std::vector<float>(c->model.parameters().begin(), c->model.parameters().end()),
                                   c->moments, c->optimizer_steps});
      h = c->history;
      first_epoch = c->epoch;
      first_step = c->step;
      first.loss_sum = c->loss_sum;
      first.compute_seconds = c->compute_seconds;
      first.communication_seconds = c->communication_seconds;
      first.stats = PipelineStats{c->busy_seconds, c->worker_seconds, static_cast<std::size_t>(c->pipeline_steps)};
      first_seconds = c->seconds;
    }
    h.samples = n;
    h.workers = engine.workers();
    const auto t0 = Clock::now();
    const double resumed_total = h.total_seconds;
    // every process holds the same parameters unless each averages only its own replicas (local SGD)
    const bool collective = sync::period == 0 || !replicates;
    constexpr bool boundaries = (detail::BoundaryCallback<Callbacks> || ...);
    detail::SpanClock spans(detail::step_interval(cbs...));
    bool stopped = false;
    for (std::size_t epoch = first_epoch; epoch < opt_.epochs && !stopped; ++epoch) {
      const auto e0 = Clock::now();
      const bool resumed = epoch == first_epoch;
      const double earlier = resumed ? first_seconds : 0.0;  // of this epoch, before the checkpoint
      // a shard is ordered by its own stream (shard 0's is the unsharded one)
      const std::uint64_t seed = opt_.seed + 0x9E3779B97F4A7C15ull * train.shard.index;
      const auto order = detail::epoch_order<typename policies::split>(train, seed, static_cast<std::uint32_t>(epoch));
      const auto on_step = [&](std::size_t s, double running) { progress.step(epoch, s, running); };
      detail::EpochResult r = resumed ? first : detail::EpochResult{};
      std::size_t s = resumed ? first_step : 0;
      if constexpr (!boundaries) {
        r = engine.epoch(train, order, epoch, detail::Range{s, spe}, r, on_step);
      } else {
        while (s < spe) {
          const std::size_t hi = spans.next(epoch, s, spe);
          const auto c0 = Clock::now();
          r = engine.epoch(train, order, epoch, detail::Range{s, hi}, r, on_step);
          spans.ran(hi - s, seconds(c0, Clock::now()));
          s = hi;
          if (s < spe &&
              !boundary(engine, group, model, run, h, spans, epoch, s, spe, r, earlier + seconds(e0, Clock::now()), t0,
                        cbs...)) {
            stopped = true;
            break;
          }
        }
        if (stopped) break;  // the unfinished epoch is in the checkpoint, not in the history
      }
      EpochRecord rec = detail::epoch_record(r, epoch, n, arch, earlier + seconds(e0, Clock::now()));
      if (r.pipeline) rec.bubble_fraction = r.stats.bubble_fraction();
      const auto eval = [&](const Model& m, const data::Dataset& v) { return evaluate(m, v); };
      if (!detail::close_epoch(rec, model, validation, eval, [&] { return engine.parameters(); }, progress, h,
                               collective, cbs...))
        break;
      if constexpr (boundaries) {
        if (epoch + 1 < opt_.epochs &&
            !boundary(engine, group, model, run, h, spans, epoch + 1, 0, spe, detail::EpochResult{}, 0.0, t0, cbs...))
          stopped = true;
      }
    }
    h.interrupted = stopped;
    h.total_seconds = resumed_total + seconds(t0, Clock::now());
    const std::vector<float> p = engine.parameters();
    std::copy(p.begin(), p.end(), model.parameters().begin());
    timeline.write(group.process(), group.processes());
    return h;
  }

  /// Between two spans of steps: the processes agree on the time and on a stop, then the
  /// callbacks run, taking (collectively) at most one checkpoint. Returns false to stop.
  template <class E, class Group, class... Callbacks>
  bool boundary(E& engine, Group& group, const Model& model, const Run& run, const History& h, detail::SpanClock& spans,
                std::size_t epoch, std::size_t step, std::size_t spe, const detail::EpochResult& so_far,
                double epoch_seconds, Clock::time_point t0, Callbacks&... cbs) {
    // a stop anywhere stops everyone; the clock is process 0's (a sum of one value and zeros is
    // exact, so every process takes the same decisions from it)
    const bool first_process = group.process() == 0;
    double agree[3] = {detail::stop_wanted(cbs...) ? 1.0 : 0.0, first_process ? seconds(t0, Clock::now()) : 0.0,
                       first_process ? spans.seconds_per_step() : 0.0};
    if (group.processes() > 1) group.sum(agree, 3, "step boundary");
    spans.agreed(agree[2]);
    StepPoint p;
    p.epoch = epoch;
    p.step = step;
    p.steps_per_epoch = spe;
    p.global_step = static_cast<std::uint64_t>(epoch) * spe + step;
    p.seconds = (run.from ? run.from->history.total_seconds : 0.0) + agree[1];
    p.stopping = agree[0] > 0.0;
    std::optional<Checkpoint> taken;
    const std::function<const Checkpoint&()> take = [&]() -> const Checkpoint& {
      if (!taken) {
        TrainingState st = engine.state();
        Checkpoint c;
        c.model = model;
        std::copy(st.parameters.begin(), st.parameters.end(), c.model.parameters().begin());
        c.moments = std::move(st.moments);
        c.optimizer_steps = st.steps;
        c.epoch = epoch;
        c.step = step;
        c.steps_per_epoch = spe;
        c.loss_sum = so_far.loss_sum;
        c.compute_seconds = so_far.compute_seconds;
        c.communication_seconds = so_far.communication_seconds;
        c.seconds = epoch_seconds;
        c.busy_seconds = so_far.stats.busy_seconds;
        c.worker_seconds = so_far.stats.worker_seconds;
        c.pipeline_steps = so_far.stats.steps;
        c.history = h;
        c.history.total_seconds = p.seconds;
        c.setup = *run.setup;
        c.run = *run.agreed;
        taken = std::move(c);
      }
      return *taken;
    };
    (
        [&] {
          if constexpr (requires { cbs.on_step_boundary(p, take); }) cbs.on_step_boundary(p, take);
        }(),
        ...);
    return !p.stopping;
  }

  TrainerOptions opt_;
  optim::Optimizer optimizer_;
  std::string role_;  ///< this process's part in a partitioned fit across processes, for failure notices
};

}  // namespace tessera
