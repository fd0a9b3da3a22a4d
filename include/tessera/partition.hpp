// tessera/partition.hpp - model parallelism: Partition<Layerwise> (pipeline stages, GPipe or 1F1B
// micro-batch schedules, optionally on a grid of data-parallel pipelines) and Partition<Columnwise>
// (Megatron-style tensor-parallel dense layers), on worker threads and - with tessera/mpi.hpp -
// across MPI ranks. Include it to train with those policies; `Pipeline` and `ColumnSplit` run a
// partitioned model on one batch directly.
#pragma once

#include <concepts>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "tessera/comm/thread_comm.hpp"
#include "tessera/core/writer.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/engine/columnwise.hpp"
#include "tessera/engine/layerwise.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/model/model.hpp"
#include "tessera/trainer.hpp"

namespace tessera {

namespace detail {

/// Partition<LayerwiseWith<Schedule, R>>: workers = stages x R; each replica's share of a step
/// (batch_size rows) runs as micro_batches micro-batches.
template <class Sched, std::size_t R>
struct EngineFor<LayerwiseWith<Sched, R>> {
  static constexpr bool available = true;
  static std::string name() { return "Partition<LayerwiseWith<" + std::string(Sched::name) + ", " + std::to_string(R) + ">>"; }
  /// Refuses a grid the workers cannot form, the same way on every process (before any waits).
  static void validate(const Architecture& arch, std::size_t lanes, std::size_t processes, std::size_t micro, bool ranks) {
    const std::size_t workers = ranks ? processes : lanes;
    if (workers % R != 0)
      fail(ErrorKind::invalid_argument,
           name() + ": " + std::to_string(workers) + (ranks ? " ranks" : " workers") + " do not form a grid of " +
               std::to_string(R) + " replicas; " + (ranks ? "run ranks" : "give workers") + " = stages x " +
               std::to_string(R));
    try {
      check_pipeline(arch, {.stages = workers / R, .micro_batches = micro, .replicas = R});
    } catch (const Error& e) {
      if (!ranks) throw;
      throw Error(e.kind(), std::string(e.what()).substr(9) + " (" + std::to_string(workers) + " ranks, " +
                                std::to_string(R) + " replica(s): stages = ranks / replicas)");
    }
  }
  template <class Dev, class Sync, class Group>
  static auto make(Group& g, const Model& m, std::span<const float> init, const optim::Optimizer& o, EngineConfig cfg) {
    PipelineOptions po;
    po.stages = cfg.stages;
    po.replicas = R;
    po.micro_batches = cfg.micro_batches;
    po.schedule = cfg.schedule;
    po.balance = cfg.balance;
    po.seed = cfg.seed;
    return std::make_unique<LayerwiseEngine<Dev, Group>>(g, m.architecture(), m.weight_decay(), o, init, po, cfg.epochs,
                                                         cfg.batch);
  }
};

/// Partition<Columnwise>: every worker trains on the whole step (batch_size rows, in
/// micro_batches passes) with its columns and rows of each split pair of layers.
template <>
struct EngineFor<Columnwise> {
  static constexpr bool available = true;
  static void validate(const Architecture& arch, std::size_t lanes, std::size_t processes, std::size_t, bool ranks) {
    try {
      (void)column_layout(arch, ranks ? processes : lanes, 0);
    } catch (const Error& e) {
      if (!ranks) throw;
      throw Error(e.kind(), std::string(e.what()).substr(9) + " (the job has " + std::to_string(processes) +
                                " ranks, one worker each)");
    }
  }
  template <class Dev, class Sync, class Group>
  static auto make(Group& g, const Model& m, std::span<const float> init, const optim::Optimizer& o, EngineConfig cfg) {
    return std::make_unique<ColumnEngine<Dev, Group>>(g, m.architecture(), m.weight_decay(), init, o, cfg.batch,
                                                      cfg.micro_batches, cfg.epochs);
  }
};

/// Runs an engine's forward or gradient pass on one batch and gathers what it computed.
template <class Engine>
class PartitionedModel {
 public:
  template <class... Args>
  PartitionedModel(const Model& model, std::size_t workers, Args&&... args)
      : model_(model), group_(std::make_unique<comm::LocalGroup>(workers)),
        engine_(std::make_unique<Engine>(*group_, std::forward<Args>(args)...)) {}

  /// Raw outputs (as Model::forward), computed by the partitioned model.
  [[nodiscard]] Matrix forward(MatrixView x) {
    model_.check_input(x, "forward");
    Matrix out(x.rows, model_.output_dim());
    const RowSource src{x.data, nullptr, x.cols, model_.architecture().target_dim(), nullptr};
    SingleThreadedBlas one_blas_thread;
    engine_->run_once(src, x.rows, Engine::Mode::forward, out.data());
    return out;
  }

  /// Mean loss plus the L2 penalty, and the gradient in the whole model's flat layout (as
  /// Model::loss_and_gradient), computed by the partitioned model.
  double loss_and_gradient(MatrixView x, std::span<const float> y, std::vector<float>& grad) {
    model_.check_input(x, "loss_and_gradient");
    model_.check_targets(x.rows, y.size(), "loss_and_gradient");
    const RowSource src{x.data, y.data(), x.cols, model_.architecture().target_dim(), nullptr};
    SingleThreadedBlas one_blas_thread;
    const double s = engine_->run_once(src, x.rows, Engine::Mode::gradient, nullptr);
    grad = engine_->gradient();
    return s / loss_normaliser(model_.loss(), x.rows, model_.output_dim()) +
           (model_.weight_decay() > 0.0f ? engine_->weight_penalty() : 0.0);
  }

  [[nodiscard]] std::size_t workers() const noexcept { return engine_->workers(); }
  /// What each worker holds.
  [[nodiscard]] std::vector<WorkerMemory> memory() const { return engine_->memory(); }
  /// The whole model, parameters gathered from the workers.
  [[nodiscard]] Model model() const {
    Model m = model_;
    const std::vector<float> p = engine_->parameters();
    std::copy(p.begin(), p.end(), m.parameters().begin());
    return m;
  }
  /// Saves the whole model: the same file as save(model(), path), loadable unpartitioned.
  void save(const std::string& path) const { tessera::save(model(), path); }

 protected:
  Model model_;
  std::unique_ptr<comm::LocalGroup> group_;
  std::unique_ptr<Engine> engine_;
};

}  // namespace detail

/// A model cut into pipeline stages on worker threads (workers = stages x replicas).
class Pipeline : public detail::PartitionedModel<detail::LayerwiseEngine<detail::CpuWorker, comm::LocalGroup>> {
 public:
  /// A pipeline of `options.stages` stages over the layers of `model`. Throws Error
  /// (ErrorKind::invalid_argument) when the options do not fit the model (see PipelineOptions).
  explicit Pipeline(const Model& model, PipelineOptions options = {})
      : PartitionedModel(model, checked(model, options).stages * options.replicas, model.architecture(),
                         model.weight_decay(), optim::sgd(1.0), model.parameters(), options, std::size_t{1}, std::size_t{1}) {}
  /// Which layers and parameters each stage holds.
  [[nodiscard]] const StagePlan& plan() const noexcept { return engine_->plan(); }
  /// Busy versus waiting time of the workers over the calls so far.
  [[nodiscard]] const PipelineStats& stats() const noexcept { return engine_->stats(); }
  /// Clears the busy and elapsed times of stats().
  void reset_stats() noexcept { engine_->reset_stats(); }

 private:
  static const PipelineOptions& checked(const Model& m, const PipelineOptions& o) {
    detail::check_pipeline(m.architecture(), o);
    return o;
  }
};

/// A model whose dense layers are split across worker threads by columns and rows.
class ColumnSplit : public detail::PartitionedModel<detail::ColumnEngine<detail::CpuWorker, comm::LocalGroup>> {
 public:
  /// The dense layers of `model` split over `workers` threads. Throws Error
  /// (ErrorKind::invalid_argument) when `workers` is 0.
  explicit ColumnSplit(const Model& model, std::size_t workers = 2)
      : PartitionedModel(model, checked(model, workers), model.architecture(), model.weight_decay(), model.parameters(),
                         optim::sgd(1.0), std::size_t{1}, std::size_t{1}, std::size_t{1}) {}
  /// Which layers are split by columns, by rows, or replicated.
  [[nodiscard]] std::string describe() const { return engine_->describe(); }

 private:
  static std::size_t checked(const Model& m, std::size_t workers) {
    detail::require(workers >= 1, ErrorKind::invalid_argument, "Partition<Columnwise>: 0 workers; a split needs at least 1");
    (void)detail::column_layout(m.architecture(), workers, 0);
    return workers;
  }
};

}  // namespace tessera
