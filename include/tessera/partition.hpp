// tessera/partition.hpp - model parallelism on worker threads: Partition<Layerwise> (pipeline
// stages, GPipe or 1F1B micro-batch schedules, optionally on a grid of data-parallel pipelines)
// and Partition<Columnwise> (Megatron-style tensor-parallel dense layers). Include it to train
// with those policies; `Pipeline` and `ColumnSplit` run a partitioned model on one batch directly.
#pragma once

#include <concepts>
#include <span>
#include <utility>
#include <string>
#include <vector>

#include "tessera/core/writer.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/model/model.hpp"
#include "tessera/partition/columnwise.hpp"
#include "tessera/partition/pipeline.hpp"
#include "tessera/split/order.hpp"
#include "tessera/trainer.hpp"

namespace tessera {

namespace detail {

/// Runs an engine's forward or gradient pass on one batch and gathers what it computed.
template <class Engine>
class PartitionedModel {
 public:
  template <class... Args>
  explicit PartitionedModel(const Model& model, Args&&... args) : model_(model), engine_(std::forward<Args>(args)...) {}

  /// Raw outputs (as Model::forward), computed by the partitioned model.
  [[nodiscard]] Matrix forward(MatrixView x) {
    model_.check_input(x, "forward");
    Matrix out(x.rows, model_.output_dim());
    const RowSource src{x.data, nullptr, x.cols, model_.architecture().target_dim(), nullptr};
    SingleThreadedBlas one_blas_thread;
    engine_.run_once(src, x.rows, Engine::Mode::forward, out.data());
    return out;
  }

  /// Mean loss plus the L2 penalty, and the gradient in the whole model's flat layout (as
  /// Model::loss_and_gradient), computed by the partitioned model.
  double loss_and_gradient(MatrixView x, std::span<const float> y, std::vector<float>& grad) {
    model_.check_input(x, "loss_and_gradient");
    model_.check_targets(x.rows, y.size(), "loss_and_gradient");
    const RowSource src{x.data, y.data(), x.cols, model_.architecture().target_dim(), nullptr};
    SingleThreadedBlas one_blas_thread;
    const double s = engine_.run_once(src, x.rows, Engine::Mode::gradient, nullptr);
    grad = engine_.gradient();
    return s / loss_normaliser(model_.loss(), x.rows, model_.output_dim()) +
           (model_.weight_decay() > 0.0f ? engine_.weight_penalty() : 0.0);
  }

  [[nodiscard]] std::size_t workers() const noexcept { return engine_.workers(); }
  /// What each worker holds.
  [[nodiscard]] std::vector<WorkerMemory> memory() const { return engine_.memory(); }
  /// The whole model, parameters gathered from the workers.
  [[nodiscard]] Model model() const {
    Model m = model_;
    const std::vector<float> p = engine_.parameters();
    std::copy(p.begin(), p.end(), m.parameters().begin());
    return m;
  }
  /// Saves the whole model: the same file as save(model(), path), loadable unpartitioned.
  void save(const std::string& path) const { tessera::save(model(), path); }

 protected:
  Model model_;
  Engine engine_;
};

}  // namespace detail

/// A model cut into pipeline stages on worker threads (workers = stages x replicas).
class Pipeline : public detail::PartitionedModel<detail::PipelineEngine<detail::CpuWorker>> {
 public:
  explicit Pipeline(const Model& model, PipelineOptions options = {})
      : PartitionedModel(model, model.architecture(), model.weight_decay(), model.parameters(), options, optim::sgd(1.0),
                         std::size_t{1}) {}
  [[nodiscard]] const StagePlan& plan() const noexcept { return engine_.plan(); }
  /// Busy versus waiting time of the workers over the calls so far.
  [[nodiscard]] const PipelineStats& stats() const noexcept { return engine_.stats(); }
  void reset_stats() noexcept { engine_.reset_stats(); }
};

/// A model whose dense layers are split across worker threads by columns and rows.
class ColumnSplit : public detail::PartitionedModel<detail::ColumnEngine<detail::CpuWorker>> {
 public:
  explicit ColumnSplit(const Model& model, std::size_t workers = 2)
      : PartitionedModel(model, model.architecture(), model.weight_decay(), model.parameters(), workers, optim::sgd(1.0),
                         std::size_t{1}, std::size_t{1}) {}
  /// Which layers are split by columns, by rows, or replicated.
  [[nodiscard]] std::string describe() const { return engine_.describe(); }
};

namespace detail {

/// The epoch loop of a partitioned fit: the same order, loss, history and callbacks as
/// Trainer's data-parallel loop, over a partitioned engine.
template <class Trainer, class Engine, class... Callbacks>
History fit_partitioned(const Trainer& trainer, Engine& engine, Model& model, const data::Dataset& train,
                        const data::Dataset* validation, std::size_t batch, std::size_t global, bool pipeline,
                        Callbacks&... cbs) {
  using clock = std::chrono::steady_clock;
  const TrainerOptions& opt = trainer.options();
  const Architecture& arch = model.architecture();
  const std::size_t n = train.rows();
  // across ranks only rank 0 of the job shows progress (the process that writes files)
  ProgressLine progress(this_process_writes().load() ? opt.progress : Progress::never, opt.epochs,
                        (n + global - 1) / global);
  History h;
  h.samples = n;
  h.workers = engine.workers();
  const auto t0 = clock::now();
  for (std::size_t epoch = 0; epoch < opt.epochs; ++epoch) {
    const auto e0 = clock::now();
    const auto order = epoch_order<typename Trainer::policies::split>(train, opt.seed, static_cast<std::uint32_t>(epoch));
    const RowSource src{train.features.data(), train.targets.data(), train.cols(), train.target_dim, &order};
    double running = 0.0;
    const auto r = engine.epoch(src, n, batch, epoch, opt.epochs, [&](std::size_t s, double step_loss) {
      running += step_loss;
      const std::size_t seen = std::min(n, (s + 1) * global);
      progress.step(epoch, s, running / loss_normaliser(arch.loss, seen, arch.output_dim()));
    });
    EpochRecord rec = epoch_record(r, epoch, n, arch, std::chrono::duration<double>(clock::now() - e0).count());
    if (pipeline) rec.bubble_fraction = r.stats.bubble_fraction();
    const auto eval = [&](const Model& m, const data::Dataset& v) { return trainer.evaluate(m, v); };
    // the parameters are gathered from every worker (and rank): the same everywhere
    if (!close_epoch(rec, model, validation, eval, [&] { return engine.parameters(); }, progress, h, true, cbs...)) break;
  }
  h.total_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  const std::vector<float> p = engine.parameters();
  std::copy(p.begin(), p.end(), model.parameters().begin());
  return h;
}

/// How a partition trains across processes (one worker per rank); tessera/partition/mpi.hpp
/// specialises it for Reduce<MpiAllreduce>.
template <class Partition, class Reduce>
struct PartitionOverRanks {
  static constexpr bool available = false;
};

template <class Trainer>
void check_partitioned_trainer(const Trainer& trainer, const char* who) {
  using policies = typename Trainer::policies;
  static_assert(std::same_as<typename policies::reduce, ThreadAllreduce> ||
                    ReduceBackend<typename policies::reduce>::across_processes,
                "tessera::Trainer: Partition<Layerwise> and Partition<Columnwise> run on the threads of one process "
                "or across MPI ranks; use Reduce<ThreadAllreduce> or Reduce<MpiAllreduce>");
  require(!trainer.options().deterministic, ErrorKind::invalid_argument,
          std::string(who) + ": deterministic mode applies to Partition<Replicate>");
}

/// True when the trainer's Reduce policy reaches other processes; then the partition must have an
/// engine across ranks.
template <class Trainer, class Partition>
constexpr bool partition_across_ranks() {
  using reduce = typename Trainer::policies::reduce;
  if constexpr (ReduceBackend<reduce>::across_processes) {
    static_assert(PartitionOverRanks<Partition, reduce>::available,
                  "tessera::Trainer: Partition<Layerwise> and Partition<Columnwise> with Reduce<MpiAllreduce> need "
                  "#include <tessera/partition/mpi.hpp> (CMake component mpi)");
    return true;
  } else {
    return false;
  }
}

/// Partition<LayerwiseWith<Schedule, R>>: workers = stages x R; each replica's share of a step
/// (batch_size rows) runs as micro_batches micro-batches.
template <class Sched, std::size_t R>
struct PartitionBackend<LayerwiseWith<Sched, R>> {
  static constexpr bool available = true;
  template <class Trainer, class... Callbacks>
  static History fit(const Trainer& trainer, Model& model, const data::Dataset& train, const data::Dataset* validation,
                     Callbacks&... cbs) {
    if constexpr (partition_across_ranks<Trainer, LayerwiseWith<Sched, R>>()) {
      return PartitionOverRanks<LayerwiseWith<Sched, R>, typename Trainer::policies::reduce>::fit(trainer, model, train,
                                                                                                  validation, cbs...);
    }
    check_partitioned_trainer(trainer, "Partition<Layerwise>");
    const TrainerOptions& opt = trainer.options();
    const std::size_t workers = trainer.workers();
    require(workers % R == 0, ErrorKind::invalid_argument,
            "Partition<LayerwiseWith<" + std::string(Sched::name) + ", " + std::to_string(R) + ">>: " +
                std::to_string(workers) + " workers do not form a grid of " + std::to_string(R) +
                " replicas; give workers = stages x " + std::to_string(R));
    PipelineOptions po;
    po.stages = workers / R;
    po.replicas = R;
    po.micro_batches = opt.micro_batches;
    po.schedule = std::same_as<Sched, GPipe> ? tessera::Schedule::gpipe : tessera::Schedule::one_f_one_b;
    warn_batch_larger_than_data(opt.batch_size, R, "replica(s)", train.rows());
    const std::size_t batch = fitted_batch(opt.batch_size, train.rows(), R, opt.micro_batches);
    SingleThreadedBlas one_blas_thread;
    PipelineEngine<CpuWorker> engine(model.architecture(), model.weight_decay(), model.parameters(), po,
                                     trainer.optimizer(), batch);
    return fit_partitioned(trainer, engine, model, train, validation, batch, R * batch, true, cbs...);
  }
};

/// Partition<Columnwise>: every worker trains on the whole step (batch_size rows, in
/// micro_batches passes) with its columns and rows of each split pair of layers.
template <>
struct PartitionBackend<Columnwise> {
  static constexpr bool available = true;
  template <class Trainer, class... Callbacks>
  static History fit(const Trainer& trainer, Model& model, const data::Dataset& train, const data::Dataset* validation,
                     Callbacks&... cbs) {
    if constexpr (partition_across_ranks<Trainer, Columnwise>()) {
      return PartitionOverRanks<Columnwise, typename Trainer::policies::reduce>::fit(trainer, model, train, validation,
                                                                                     cbs...);
    }
    check_partitioned_trainer(trainer, "Partition<Columnwise>");
    const TrainerOptions& opt = trainer.options();
    warn_batch_larger_than_data(opt.batch_size, 1, "split model", train.rows());
    const std::size_t batch = fitted_batch(opt.batch_size, train.rows(), 1, opt.micro_batches);
    SingleThreadedBlas one_blas_thread;
    ColumnEngine<CpuWorker> engine(model.architecture(), model.weight_decay(), model.parameters(), trainer.workers(),
                                   trainer.optimizer(), batch, opt.micro_batches);
    return fit_partitioned(trainer, engine, model, train, validation, batch, batch, false, cbs...);
  }
};

}  // namespace detail
}  // namespace tessera
