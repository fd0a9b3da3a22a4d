// tessera/partition/mpi.hpp - Partition<Layerwise> and Partition<Columnwise> across MPI ranks
// (Reduce<MpiAllreduce>): each rank of MPI_COMM_WORLD is one worker.
//
// Pipelines: rank q = r * S + s runs stage s of replica r (ranks = stages x R). The world is split
// into pipeline groups (the S stages of one replica) and data-parallel groups (the R replicas of
// one stage). Activations go forward and gradients backward between neighbouring stages as MPI
// messages (RankLink below), in the order of the same schedule code as the thread engine
// (run_stage_ops in pipeline.hpp); a stage's gradient is summed over its data-parallel group, and
// every replica of a stage updates its copy of the stage identically. Each rank holds only its
// stage's parameters, gradient and optimizer state.
//
// Column split: rank w holds the columns / rows of every split pair that worker w of the thread
// engine holds, and the two all-reduces per pair run over the world communicator.
//
// After a fit every rank's model holds the whole trained model (the parts are gathered). A rank
// that throws tells the ranks of every group it belongs to (Communicator::notify_failure), which
// stop at their next wait and tell theirs: the job ends with a message instead of hanging.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tessera/mpi.hpp"
#include "tessera/partition.hpp"

namespace tessera::detail {

/// One direction of messages between two neighbouring stages on different ranks: what the thread
/// engine's Channel is between threads. A send is posted and returns at once (its buffer is kept
/// until the message has left); a receive waits, with the communicator's timeout and failure
/// notices. Messages between two ranks in one direction arrive in the order sent (MPI's
/// non-overtaking rule); the tag also carries the micro-batch number.
class RankLink {
 public:
  /// direction 0: activations, 1: gradients.
  RankLink(const mpi::Communicator& comm, int peer, int direction, std::string name)
      : comm_(&comm), peer_(peer), direction_(direction), name_(std::move(name)) {}
  RankLink(const RankLink&) = delete;
  RankLink& operator=(const RankLink&) = delete;
  ~RankLink() {
    // a completed exchange never leaves sends pending; after a failure the job aborts
    if (!pending_.empty() && !mpi::job_failed()) {
      try {
        finish();
      } catch (...) {
      }
    }
  }

  std::vector<float> buffer(std::size_t n) {
    reap();
    std::vector<float> v;
    if (!free_.empty()) {
      v = std::move(free_.back());
      free_.pop_back();
    }
    v.resize(n);
    return v;
  }
  void recycle(std::vector<float>&& v) { free_.push_back(std::move(v)); }

  void send(Message m) {
    pending_.push_back({MPI_REQUEST_NULL, std::move(m.data)});
    Pending& p = pending_.back();
    p.request = comm_->start_send({p.data.data(), p.data.size(), peer_, tag(m.tag)});
    reap();
  }

  /// Micro-batch `micro`'s message of `count` floats from the peer.
  Message recv(std::size_t micro, std::size_t count) {
    Message m;
    m.tag = micro;
    m.data = buffer(count);
    const mpi::Transfer t{m.data.data(), count, peer_, tag(micro)};
    comm_->exchange({}, std::span<const mpi::Transfer>(&t, 1), name_.c_str());
    return m;
  }

  /// Waits until every posted send has left.
  void finish() {
    for (Pending& p : pending_) comm_->wait(std::span<MPI_Request>(&p.request, 1), name_.c_str(), peer_);
    for (Pending& p : pending_) free_.push_back(std::move(p.data));
    pending_.clear();
  }

  [[nodiscard]] std::size_t held_floats() const noexcept {
    std::size_t n = 0;
    for (const auto& v : free_) n += v.capacity();
    for (const auto& p : pending_) n += p.data.capacity();
    return n;
  }

 private:
  struct Pending {
    MPI_Request request;
    std::vector<float> data;
  };
  [[nodiscard]] int tag(std::size_t micro) const noexcept { return static_cast<int>(micro % 4096) * 2 + direction_; }
  /// Moves the buffers of sends that have left to the free list (in order: sends complete in order).
  void reap() {
    while (!pending_.empty() && comm_->test(std::span<MPI_Request>(&pending_.front().request, 1))) {
      free_.push_back(std::move(pending_.front().data));
      pending_.pop_front();
    }
  }

  const mpi::Communicator* comm_;
  int peer_, direction_;
  std::string name_;
  std::deque<Pending> pending_;
  std::vector<std::vector<float>> free_;
};

/// Rank r * S + s of the world: stage s of replica r of a pipeline across ranks.
template <class Dev>
class RankPipelineEngine {
 public:
  enum class Mode { forward, gradient, train };

  RankPipelineEngine(const mpi::Communicator& world, const Architecture& arch, float weight_decay,
                     std::span<const float> init, PipelineOptions o, const optim::Optimizer& opt,
                     std::size_t rows_per_replica)
      : world_(&world), arch_(arch), wd_(weight_decay), o_(o), plan_(plan_stages(arch, o.stages, o.balance)), opt_(opt),
        rank_(static_cast<std::size_t>(world.rank())), s_(rank_ % o.stages), r_(rank_ / o.stages),
        pipe_(world.split(static_cast<int>(r_), static_cast<int>(s_))),
        dp_(world.split(static_cast<int>(s_), static_cast<int>(r_))),
        span_(plan_.stages[s_]),
        params_(init.begin() + static_cast<std::ptrdiff_t>(span_.parameter_begin),
                init.begin() + static_cast<std::ptrdiff_t>(span_.parameter_end)),
        grad_(span_.parameters(), 0.0f), state_(opt, span_.parameters()) {
    check_pipeline(arch, o);
    require(static_cast<std::size_t>(world.size()) == o.stages * o.replicas, ErrorKind::invalid_argument,
            where() + ": the job has " + std::to_string(world.size()) + " ranks for " + std::to_string(o.stages) +
                " stages x " + std::to_string(o.replicas) + " replicas");
    require(init.size() == arch.parameter_count(), ErrorKind::shape,
            where() + ": " + std::to_string(init.size()) + " parameters for a model of " +
                std::to_string(arch.parameter_count()));
    const std::string me = "Partition<Layerwise> across ranks, replica " + std::to_string(r_) + ", ";
    const auto stage_rank = [&](std::size_t s) { return std::to_string(r_ * o_.stages + s); };
    if (s_ > 0) {
      const std::string between = "stages " + std::to_string(s_ - 1) + "->" + std::to_string(s_) + " (ranks " +
                                  stage_rank(s_ - 1) + "->" + stage_rank(s_) + ")";
      fin_ = std::make_unique<RankLink>(pipe_, static_cast<int>(s_ - 1), 0, me + "activations, " + between);
      bout_ = std::make_unique<RankLink>(pipe_, static_cast<int>(s_ - 1), 1, me + "gradients, " + between);
    }
    if (s_ + 1 < o_.stages) {
      const std::string between = "stages " + std::to_string(s_) + "->" + std::to_string(s_ + 1) + " (ranks " +
                                  stage_rank(s_) + "->" + stage_rank(s_ + 1) + ")";
      fout_ = std::make_unique<RankLink>(pipe_, static_cast<int>(s_ + 1), 0, me + "activations, " + between);
      bin_ = std::make_unique<RankLink>(pipe_, static_cast<int>(s_ + 1), 1, me + "gradients, " + between);
    }
    reserve(rows_per_replica);
  }

  [[nodiscard]] const StagePlan& plan() const noexcept { return plan_; }
  [[nodiscard]] std::size_t workers() const noexcept { return o_.stages * o_.replicas; }
  [[nodiscard]] std::size_t stage() const noexcept { return s_; }
  [[nodiscard]] std::size_t replica() const noexcept { return r_; }
  /// "rank 2 (stage 0 of 2, replica 1)".
  [[nodiscard]] std::string where() const {
    return "rank " + std::to_string(rank_) + " (stage " + std::to_string(s_) + " of " + std::to_string(o_.stages) +
           ", replica " + std::to_string(r_) + ")";
  }

  void reserve(std::size_t rows) {
    const std::size_t micro = (std::max<std::size_t>(rows, 1) + o_.micro_batches - 1) / o_.micro_batches;
    if (micro <= micro_rows_) return;
    micro_rows_ = micro;
    const std::size_t slots = pipeline_slots(o_.schedule, o_.stages, s_, o_.micro_batches);
    net_ = std::make_unique<StageNet<Dev>>(arch_, span_, micro, slots);
    bufs_.resize(slots);
  }

  /// Collective: the whole model's parameters, gathered from the stages (replica 0's copies).
  [[nodiscard]] std::vector<float> parameters() const { return gather(params_, "parameters of the stages"); }
  /// Collective: the last step's gradient (summed over replicas), in the whole model's layout.
  [[nodiscard]] std::vector<float> gradient() const { return gather(grad_, "gradients of the stages"); }
  /// Collective: 0.5 * weight_decay * |W|^2 over all stages.
  [[nodiscard]] double weight_penalty() {
    double s = r_ == 0 ? net_->squared_weights(params_.data()) : 0.0;
    world_->all_reduce(&s, 1, "weight penalty");
    return 0.5 * wd_ * s;
  }
  /// Collective: what each rank holds, indexed by rank.
  [[nodiscard]] std::vector<WorkerMemory> memory() const {
    const std::size_t W = workers();
    std::vector<double> v(4 * W, 0.0);
    double* mine = v.data() + 4 * rank_;
    mine[0] = static_cast<double>(params_.size());
    mine[1] = static_cast<double>(grad_.size());
    mine[2] = static_cast<double>(opt_.state_buffers() * params_.size());
    std::size_t acts = net_->activation_floats() + bufs_.floats();
    for (const auto* l : {fin_.get(), fout_.get(), bin_.get(), bout_.get()})
      if (l) acts += l->held_floats();
    mine[3] = static_cast<double>(acts);
    world_->all_reduce(v.data(), v.size(), "memory report");
    std::vector<WorkerMemory> m(W);
    for (std::size_t w = 0; w < W; ++w) {
      m[w].parameters = static_cast<std::size_t>(v[4 * w]);
      m[w].gradients = static_cast<std::size_t>(v[4 * w + 1]);
      m[w].optimizer_state = static_cast<std::size_t>(v[4 * w + 2]);
      m[w].activations = static_cast<std::size_t>(v[4 * w + 3]);
    }
    return m;
  }
  [[nodiscard]] const PipelineStats& stats() const noexcept { return stats_; }

  /// Collective: one step on rows [0, rows) of src (every rank holds src): outputs (forward mode,
  /// rows x outputs, on every rank) or the gradient (see gradient()). Returns the summed loss.
  double run_once(const RowSource& src, std::size_t rows, Mode mode, float* outputs) {
    reserve((rows + o_.replicas - 1) / o_.replicas);
    const auto scale = static_cast<float>(1.0 / loss_normaliser(arch_.loss, rows, arch_.output_dim()));
    const bool last = s_ + 1 == o_.stages;
    std::vector<float> out;
    if (outputs) out.assign(rows * arch_.output_dim(), 0.0f);
    const double loss = step(src, 0, rows, mode, scale, outputs && last ? out.data() : nullptr);
    finish_step(mode, loss, 0.0, 0);
    if (outputs) {
      world_->all_reduce(out.data(), out.size(), "outputs of the last stages");
      std::copy(out.begin(), out.end(), outputs);
    }
    return step_loss_;
  }

  using EpochOut = PartitionEpochOut;

  /// Collective: one training epoch, batches of `batch` rows per replica.
  template <class OnStep>
  EpochOut epoch(const RowSource& src, std::size_t n, std::size_t batch, std::size_t epoch, std::size_t epochs,
                 OnStep&& on_step) {
    const std::size_t global = o_.replicas * batch, steps = (n + global - 1) / global;
    reserve(batch);
    EpochOut out;
    const PipelineStats before = stats_;
    for (std::size_t s = 0; s < steps; ++s) {
      const std::size_t rows = std::min(global, n - s * global);
      const auto scale = static_cast<float>(1.0 / loss_normaliser(arch_.loss, rows, arch_.output_dim()));
      const double lr = opt_.learning_rate *
                        opt_.schedule.factor(static_cast<double>(epoch) + static_cast<double>(s) / static_cast<double>(steps),
                                             static_cast<double>(epochs));
      const auto t0 = clock::now();
      const double loss = step(src, s * global, rows, Mode::train, scale, nullptr);
      finish_step(Mode::train, loss, lr, step_count_ + s + 1);
      if (!std::isfinite(step_loss_)) {
        try {
          check_step_loss(step_loss_, epoch, s, opt_.describe());
        } catch (const Error& e) {  // every rank has the same loss and stops here: nobody waits
          throw CollectiveError(e.kind(), std::string(e.what()).substr(9));
        }
      }
      // this rank's time: its passes and update, versus waiting and messages
      const double busy = clock_.busy + update_seconds_;
      out.compute_seconds += busy;
      out.communication_seconds += std::max(0.0, since(t0) - busy);
      out.learning_rate = lr;
      out.loss_sum += step_loss_;
      on_step(s, step_loss_);
    }
    step_count_ += steps;
    out.stats.busy_seconds = stats_.busy_seconds - before.busy_seconds;
    out.stats.worker_seconds = stats_.worker_seconds - before.worker_seconds;
    out.stats.steps = stats_.steps - before.steps;
    return out;
  }

  /// This rank stops with `message`. A rank that fails first tells every rank of its pipeline, of
  /// its data-parallel group and of the world. A rank that stops because it heard such a notice
  /// passes it on only on a grid (stages and replicas both above 1), where a rank waiting in
  /// another replica's pipeline cannot hear the first rank directly; otherwise every rank heard
  /// it already, and telling a stopped rank again would only wait for it.
  void fail(const std::string& message) const noexcept {
    const bool heard = mpi::job_failed();
    const std::string text = where() + ": " + message;
    if (heard && (o_.stages == 1 || o_.replicas == 1)) return;
    pipe_.notify_failure(text);
    dp_.notify_failure(text);
    if (!heard) world_->notify_failure(text);
  }

 private:
  using clock = std::chrono::steady_clock;
  static double since(clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); }

  /// This rank's passes of one step over rows [first, first + rows) of src.
  double step(const RowSource& src, std::size_t first, std::size_t rows, Mode mode, float scale, float* outputs) {
    clock_.start = clock::now();
    clock_.busy = 0.0;
    const Range share_r = share(rows, o_.replicas, r_);
    const std::size_t n = share_r.hi - share_r.lo, lo = first + share_r.lo;
    if (mode != Mode::forward) std::fill(grad_.begin(), grad_.end(), 0.0f);
    const std::size_t m = std::min(o_.micro_batches, n);
    std::vector<PipeOp> ops;
    if (mode == Mode::forward) {
      for (std::size_t i = 0; i < m; ++i) ops.push_back({true, i});
    } else {
      ops = pipeline_ops(o_.schedule, o_.stages, s_, m);
    }
    const StageLinks<RankLink> links{fin_.get(), fout_.get(), bin_.get(), bout_.get()};
    const double loss = run_stage_ops(*net_, params_.data(), grad_.data(), ops, m, src, lo, n, scale,
                                      outputs ? outputs + share_r.lo * net_->out_width() : nullptr, links, bufs_, clock_);
    if (mode != Mode::forward && r_ == 0 && wd_ > 0.0f) {
      const auto t0 = clock::now();
      net_->add_weight_decay(params_.data(), grad_.data(), wd_);
      clock_.busy += since(t0);
    }
    clock_.end = clock::now();
    if (fout_) fout_->finish();
    if (bout_) bout_->finish();
    return loss;
  }

  /// Ends a step: the replicas of the stage sum its gradient and (training) update it; every rank
  /// learns the step's loss and the ranks' busy and elapsed times.
  void finish_step(Mode mode, double loss, double lr, std::uint64_t t) {
    if (mode != Mode::forward && o_.replicas > 1) dp_.all_reduce(grad_.data(), grad_.size(), "stage gradient over replicas");
    const auto u0 = clock::now();
    if (mode == Mode::train) state_.update(Dev::exec(), params_.data(), grad_.data(), 0, params_.size(), lr, t);
    update_seconds_ = since(u0);
    const std::size_t W = workers();
    std::vector<double> v(2 + W, 0.0);
    v[0] = s_ + 1 == o_.stages ? loss : 0.0;
    v[1] = clock_.busy;
    v[2 + rank_] = std::chrono::duration<double>(clock_.end - clock_.start).count();
    world_->all_reduce(v.data(), v.size(), "step loss and times");
    step_loss_ = v[0];
    stats_.busy_seconds += v[1];
    stats_.worker_seconds += static_cast<double>(W) * *std::max_element(v.begin() + 2, v.end());
    ++stats_.steps;
  }

  /// Every rank's whole-layout copy of `part` (stage s_'s slice), replica 0's values.
  [[nodiscard]] std::vector<float> gather(const std::vector<float>& part, const char* what) const {
    std::vector<float> whole(arch_.parameter_count(), 0.0f);
    if (r_ == 0) std::copy(part.begin(), part.end(), whole.begin() + static_cast<std::ptrdiff_t>(span_.parameter_begin));
    world_->all_reduce(whole.data(), whole.size(), what);  // one non-zero term per value: exact
    return whole;
  }

  const mpi::Communicator* world_;
  Architecture arch_;
  float wd_;
  PipelineOptions o_;
  StagePlan plan_;
  optim::Optimizer opt_;
  std::size_t rank_, s_, r_;
  mpi::Communicator pipe_, dp_;
  StageSpan span_;
  std::vector<float> params_, grad_;
  optim::State<Dev> state_;
  std::unique_ptr<RankLink> fin_, fout_, bin_, bout_;
  std::unique_ptr<StageNet<Dev>> net_;
  StageBuffers bufs_;
  StepClock clock_;
  double step_loss_ = 0.0, update_seconds_ = 0.0;
  std::size_t micro_rows_ = 0;
  std::uint64_t step_count_ = 0;
  PipelineStats stats_;
};

/// Rank w of the world: worker w of a column split across ranks.
template <class Dev>
class RankColumnEngine {
 public:
  enum class Mode { forward, gradient, train };

  RankColumnEngine(const mpi::Communicator& world, const Architecture& arch, float weight_decay,
                   std::span<const float> init, const optim::Optimizer& opt, std::size_t max_rows,
                   std::size_t micro_batches)
      : world_(&world), arch_(arch), wd_(weight_decay), opt_(opt), micro_(micro_batches),
        rank_(static_cast<std::size_t>(world.rank())), size_(static_cast<std::size_t>(world.size())),
        layers_(column_layout(arch, size_, rank_)), params_(column_floats(layers_), 0.0f), grads_(params_.size(), 0.0f),
        state_(opt, params_.size()) {
    require(micro_batches >= 1, ErrorKind::invalid_argument, "Partition<Columnwise>: 0 micro-batches");
    require(init.size() == arch.parameter_count(), ErrorKind::shape,
            "Partition<Columnwise> across ranks: " + std::to_string(init.size()) + " parameters for a model of " +
                std::to_string(arch.parameter_count()));
    scatter_columns(arch, layers_, init.data(), params_.data());
    reserve(max_rows);
  }

  [[nodiscard]] std::size_t workers() const noexcept { return size_; }
  [[nodiscard]] std::string where() const {
    return "rank " + std::to_string(rank_) + " (columns of " + std::to_string(size_) + " ranks)";
  }
  void reserve(std::size_t rows) { ws_.reserve(arch_, layers_, (std::max<std::size_t>(rows, 1) + micro_ - 1) / micro_); }

  /// Collective: the whole model's parameters, gathered from the ranks.
  [[nodiscard]] std::vector<float> parameters() const { return gather(params_, "parameters of the column split"); }
  /// Collective: the last step's gradient, in the whole model's layout.
  [[nodiscard]] std::vector<float> gradient() const { return gather(grads_, "gradients of the column split"); }
  /// Collective: 0.5 * weight_decay * |W|^2 of the whole model.
  [[nodiscard]] double weight_penalty() const {
    const std::vector<float> p = parameters();
    double s = 0.0;
    for (const DenseLayer& L : arch_.layers)
      for (std::size_t i = 0; i < L.weight_count(); ++i)
        s += static_cast<double>(p[L.offset + i]) * static_cast<double>(p[L.offset + i]);
    return 0.5 * wd_ * s;
  }
  /// Collective: what each rank holds, indexed by rank.
  [[nodiscard]] std::vector<WorkerMemory> memory() const {
    std::vector<double> v(4 * size_, 0.0);
    double* mine = v.data() + 4 * rank_;
    mine[0] = static_cast<double>(params_.size());
    mine[1] = static_cast<double>(grads_.size());
    mine[2] = static_cast<double>(opt_.state_buffers() * params_.size());
    mine[3] = static_cast<double>(ws_.floats());
    world_->all_reduce(v.data(), v.size(), "memory report");
    std::vector<WorkerMemory> m(size_);
    for (std::size_t w = 0; w < size_; ++w) {
      m[w].parameters = static_cast<std::size_t>(v[4 * w]);
      m[w].gradients = static_cast<std::size_t>(v[4 * w + 1]);
      m[w].optimizer_state = static_cast<std::size_t>(v[4 * w + 2]);
      m[w].activations = static_cast<std::size_t>(v[4 * w + 3]);
    }
    return m;
  }

  /// Collective: one pass on rows [0, rows) of src; every rank computes the whole outputs.
  double run_once(const RowSource& src, std::size_t rows, Mode mode, float* outputs) {
    reserve(rows);
    const auto scale = static_cast<float>(1.0 / loss_normaliser(arch_.loss, rows, arch_.output_dim()));
    return step(src, 0, rows, mode, scale, outputs);
  }

  using EpochOut = PartitionEpochOut;

  /// Collective: one training epoch of batches of `batch` rows; every rank trains on every row.
  template <class OnStep>
  EpochOut epoch(const RowSource& src, std::size_t n, std::size_t batch, std::size_t epoch, std::size_t epochs,
                 OnStep&& on_step) {
    const std::size_t steps = (n + batch - 1) / batch;
    reserve(batch);
    EpochOut out;
    for (std::size_t s = 0; s < steps; ++s) {
      const auto t0 = clock::now();
      const std::size_t rows = std::min(batch, n - s * batch);
      const auto scale = static_cast<float>(1.0 / loss_normaliser(arch_.loss, rows, arch_.output_dim()));
      const double lr = opt_.learning_rate *
                        opt_.schedule.factor(static_cast<double>(epoch) + static_cast<double>(s) / static_cast<double>(steps),
                                             static_cast<double>(epochs));
      comm_seconds_ = 0.0;
      const double loss = step(src, s * batch, rows, Mode::train, scale, nullptr);
      if (!std::isfinite(loss)) {
        try {
          check_step_loss(loss, epoch, s, opt_.describe());
        } catch (const Error& e) {  // the outputs are the same bits on every rank: so is the loss
          throw CollectiveError(e.kind(), std::string(e.what()).substr(9));
        }
      }
      state_.update(Dev::exec(), params_.data(), grads_.data(), 0, params_.size(), lr, step_count_ + s + 1);
      out.communication_seconds += comm_seconds_;
      out.compute_seconds += since(t0) - comm_seconds_;
      out.loss_sum += loss;
      out.learning_rate = lr;
      on_step(s, loss);
    }
    step_count_ += steps;
    return out;
  }

  /// This rank stops with `message`: tells the other ranks (once; a rank that heard a notice
  /// stays quiet, every rank heard it).
  void fail(const std::string& message) const noexcept {
    if (!mpi::job_failed()) world_->notify_failure(where() + ": " + message);
  }

 private:
  using clock = std::chrono::steady_clock;
  static double since(clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); }

  double step(const RowSource& src, std::size_t first, std::size_t rows, Mode mode, float scale, float* outputs) {
    if (mode != Mode::forward) std::fill(grads_.begin(), grads_.end(), 0.0f);
    return column_pass(arch_, layers_, params_.data(), grads_.data(), ws_, src, first, rows, micro_, mode == Mode::forward,
                       wd_, scale, outputs, [&](float* buf, std::size_t count) {
                         const auto t0 = clock::now();
                         world_->all_reduce(buf, count, "Partition<Columnwise> partial products");
                         comm_seconds_ += since(t0);
                       });
  }

  [[nodiscard]] std::vector<float> gather(const std::vector<float>& local, const char* what) const {
    std::vector<float> whole(arch_.parameter_count(), 0.0f);
    gather_columns(arch_, layers_, rank_ == 0, local.data(), whole.data());
    world_->all_reduce(whole.data(), whole.size(), what);  // the ranks' parts are disjoint: exact
    return whole;
  }

  const mpi::Communicator* world_;
  Architecture arch_;
  float wd_;
  optim::Optimizer opt_;
  std::size_t micro_, rank_, size_;
  std::vector<LocalLayer> layers_;
  std::vector<float> params_, grads_;
  optim::State<Dev> state_;
  ColumnScratch<Dev> ws_;
  double comm_seconds_ = 0.0;
  std::uint64_t step_count_ = 0;
};

/// What every rank must agree on before a partitioned fit across ranks, or the reason this rank
/// cannot train.
template <class Trainer>
std::string rank_partition_setup(const Trainer& trainer, const Model& model, const data::Dataset& train,
                                 const data::Dataset* validation, const std::string& partition, std::size_t ranks) {
  const TrainerOptions& opt = trainer.options();
  const auto check = [&](const data::Dataset& d, const char* which) {
    require(!d.empty(), ErrorKind::invalid_argument, std::string("Trainer::fit: the ") + which + " has no rows");
    require(d.cols() == model.input_dim() && d.target_dim == model.architecture().target_dim(), ErrorKind::shape,
            std::string("Trainer::fit: the model (") + model.architecture().describe() + ") takes " +
                std::to_string(model.input_dim()) + " features and " +
                std::to_string(model.architecture().target_dim()) + " target value(s) per row; the " + which +
                " has " + std::to_string(d.cols()) + " and " + std::to_string(d.target_dim));
  };
  check(train, "training set");
  if (validation) check(*validation, "validation set");
  require(!train.sharded(), ErrorKind::invalid_argument,
          partition + ": every rank needs the whole training set (stage 0 reads the features, the last stage the "
                      "targets); the data set is shard " + std::to_string(train.shard.index) + " of " +
              std::to_string(train.shard.count));
  require(!opt.deterministic, ErrorKind::invalid_argument, partition + ": deterministic mode applies to Partition<Replicate>");
  require(opt.workers == 0 || opt.workers == ranks, ErrorKind::invalid_argument,
          partition + ": each rank is one worker, so workers must be 0 or the number of ranks (" +
              std::to_string(ranks) + "), got " + std::to_string(opt.workers));
  return model.architecture().describe() + " | " + std::to_string(model.parameter_count()) + " parameters | weight_decay " +
         std::to_string(model.weight_decay()) + " | data " + shape_string(train.rows(), train.cols()) + " | batch " +
         std::to_string(opt.batch_size) + " | micro-batches " + std::to_string(opt.micro_batches) + " | epochs " +
         std::to_string(opt.epochs) + " | seed " + std::to_string(opt.seed) + " | " +
         Trainer::policies::split::name + " | " + trainer.optimizer().describe() + " | " + partition;
}

/// Runs a partitioned fit across ranks: agree on the setup (a rank that cannot train says why on
/// every rank), start from rank 0's parameters, build the engine, train; a rank that throws tells
/// the others.
template <class Engine, class Trainer, class Make, class... Callbacks>
History fit_across_ranks(const Trainer& trainer, Model& model, const data::Dataset& train,
                         const data::Dataset* validation, const std::string& partition, Make&& make,
                         std::size_t batch, std::size_t global, bool pipeline, Callbacks&... cbs) {
  const mpi::Communicator world = mpi::Communicator::world();
  const auto ranks = static_cast<std::size_t>(world.size());
  std::string setup;
  std::exception_ptr problem;
  try {
    setup = rank_partition_setup(trainer, model, train, validation, partition, ranks);
  } catch (const Error& e) {
    problem = std::current_exception();
    setup = std::string("this rank cannot train: ") + e.what();
  }
  world.agree("training setup", setup);
  if (problem) std::rethrow_exception(problem);  // every rank has the same problem: nobody waits
  std::vector<float> init(model.parameters().begin(), model.parameters().end());
  world.broadcast(init.data(), init.size(), 0, "initial parameters");
  SingleThreadedBlas one_blas_thread;
  std::unique_ptr<Engine> engine;
  try {
    engine = make(world, init);
    Model result = model;
    History h = fit_partitioned(trainer, *engine, result, train, validation, batch, global, pipeline, cbs...);
    model = std::move(result);
    return h;
  } catch (const CollectiveError&) {
    throw;
  } catch (const std::exception& e) {
    if (engine) engine->fail(e.what());
    else world.notify_failure("rank " + std::to_string(world.rank()) + ": " + e.what());
    throw;
  } catch (...) {
    if (engine) engine->fail("an exception that is not a std::exception");
    else world.notify_failure("rank " + std::to_string(world.rank()) + ": an exception that is not a std::exception");
    throw;
  }
}

/// Partition<LayerwiseWith<Schedule, R>> with Reduce<MpiAllreduce>: ranks = stages x R.
template <class Sched, std::size_t R>
struct PartitionOverRanks<LayerwiseWith<Sched, R>, MpiAllreduce> {
  static constexpr bool available = true;
  template <class Trainer, class... Callbacks>
  static History fit(const Trainer& trainer, Model& model, const data::Dataset& train, const data::Dataset* validation,
                     Callbacks&... cbs) {
    const TrainerOptions& opt = trainer.options();
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const auto ranks = static_cast<std::size_t>(size);
    const std::string name = "Partition<LayerwiseWith<" + std::string(Sched::name) + ", " + std::to_string(R) + ">>";
    // the same on every rank: every rank refuses a rank count that does not fit, nobody waits
    require(ranks % R == 0, ErrorKind::invalid_argument,
            name + ": " + std::to_string(ranks) + " ranks do not form a grid of " + std::to_string(R) +
                " replicas; run ranks = stages x " + std::to_string(R));
    PipelineOptions po;
    po.stages = ranks / R;
    po.replicas = R;
    po.micro_batches = opt.micro_batches;
    po.schedule = std::same_as<Sched, GPipe> ? tessera::Schedule::gpipe : tessera::Schedule::one_f_one_b;
    try {
      check_pipeline(model.architecture(), po);
    } catch (const Error& e) {
      throw Error(e.kind(), std::string(e.what()).substr(9) + " (" + std::to_string(ranks) + " ranks, " +
                                std::to_string(R) + " replica(s): stages = ranks / replicas)");
    }
    using Engine = RankPipelineEngine<CpuWorker>;
    warn_batch_larger_than_data(opt.batch_size, R, "replica(s)", train.rows());
    const std::size_t batch = fitted_batch(opt.batch_size, train.rows(), R, opt.micro_batches);
    return fit_across_ranks<Engine>(
        trainer, model, train, validation, name + " across " + std::to_string(ranks) + " ranks",
        [&](const mpi::Communicator& world, const std::vector<float>& init) {
          return std::make_unique<Engine>(world, model.architecture(), model.weight_decay(), init, po,
                                          trainer.optimizer(), batch);
        },
        batch, R * batch, true, cbs...);
  }
};

/// Partition<Columnwise> with Reduce<MpiAllreduce>: every rank holds its columns and rows of each
/// split pair of layers; the pair's two all-reduces run over the world.
template <>
struct PartitionOverRanks<Columnwise, MpiAllreduce> {
  static constexpr bool available = true;
  template <class Trainer, class... Callbacks>
  static History fit(const Trainer& trainer, Model& model, const data::Dataset& train, const data::Dataset* validation,
                     Callbacks&... cbs) {
    const TrainerOptions& opt = trainer.options();
    int size = 1, rank = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const auto ranks = static_cast<std::size_t>(size);
    try {  // the same on every rank: every rank refuses a rank count that does not fit, nobody waits
      (void)column_layout(model.architecture(), ranks, static_cast<std::size_t>(rank));
    } catch (const Error& e) {
      throw Error(e.kind(), std::string(e.what()).substr(9) + " (the job has " + std::to_string(ranks) +
                                " ranks, one worker each)");
    }
    using Engine = RankColumnEngine<CpuWorker>;
    warn_batch_larger_than_data(opt.batch_size, 1, "split model", train.rows());
    const std::size_t batch = fitted_batch(opt.batch_size, train.rows(), 1, opt.micro_batches);
    return fit_across_ranks<Engine>(
        trainer, model, train, validation, "Partition<Columnwise> across " + std::to_string(ranks) + " ranks",
        [&](const mpi::Communicator& world, const std::vector<float>& init) {
          return std::make_unique<Engine>(world, model.architecture(), model.weight_decay(), init, trainer.optimizer(),
                                          batch, opt.micro_batches);
        },
        batch, batch, false, cbs...);
  }
};

}  // namespace tessera::detail
