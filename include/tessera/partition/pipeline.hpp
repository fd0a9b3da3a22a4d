// tessera/partition/pipeline.hpp - pipeline model parallelism on worker threads.
//
// The model is cut into S contiguous stages (plan.hpp); worker w = r * S + s runs stage s of
// replica r. A step's global batch is cut into R contiguous replica shares (as in data
// parallelism), each share into M micro-batches. Activations go forward and gradients backward
// through point-to-point channels (channel.hpp), in the order of the schedule:
//
//   GPipe (fill-drain): F0 F1 ... F(M-1), then B0 B1 ... B(M-1) on every stage;
//   1F1B: stage s runs min(S-s-1, M) forwards, then alternates one forward and one backward,
//         then drains the remaining backwards. Same gradient, but at most S-s micro-batches in
//         flight on stage s instead of M, so activation memory does not grow with M.
//
// After the backward passes, the R replicas of each stage sum their gradients (replica order,
// each replica worker one slice) and update that slice of the stage's parameters: the stage's
// parameters and optimizer state exist once per stage, not per worker.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "tessera/device/cpu.hpp"
#include "tessera/optim/update.hpp"
#include "tessera/partition/channel.hpp"
#include "tessera/partition/common.hpp"
#include "tessera/partition/stage.hpp"
#include "tessera/reduce/thread_team.hpp"

namespace tessera {

/// The micro-batch schedule of a pipeline.
enum class Schedule { gpipe, one_f_one_b };
inline const char* to_string(Schedule s) noexcept { return s == Schedule::gpipe ? "GPipe" : "1F1B"; }

struct PipelineOptions {
  std::size_t stages = 2;
  std::size_t micro_batches = 4;  ///< per replica per step
  std::size_t replicas = 1;       ///< data-parallel pipelines (workers = stages x replicas)
  Schedule schedule = Schedule::one_f_one_b;
  Balance balance = Balance::cost;
};

namespace detail {

struct PipeOp {
  bool forward;
  std::size_t micro;
};

/// The order in which stage s of S runs the forward (F) and backward (B) passes of M micro-batches.
inline std::vector<PipeOp> pipeline_ops(Schedule schedule, std::size_t stages, std::size_t s, std::size_t m) {
  std::vector<PipeOp> ops;
  ops.reserve(2 * m);
  if (schedule == Schedule::gpipe) {
    for (std::size_t i = 0; i < m; ++i) ops.push_back({true, i});
    for (std::size_t i = 0; i < m; ++i) ops.push_back({false, i});
    return ops;
  }
  const std::size_t warm = std::min(stages - s - 1, m);
  for (std::size_t i = 0; i < warm; ++i) ops.push_back({true, i});
  for (std::size_t i = 0; i + warm < m; ++i) {
    ops.push_back({true, warm + i});
    ops.push_back({false, i});
  }
  for (std::size_t i = m - warm; i < m; ++i) ops.push_back({false, i});
  return ops;
}

/// Micro-batches whose activations stage s holds at once under the schedule.
inline std::size_t pipeline_slots(Schedule schedule, std::size_t stages, std::size_t s, std::size_t m) {
  return schedule == Schedule::gpipe ? m : std::min(stages - s, m);
}

/// What one stage worker keeps between its passes: per slot the input it received (or gathered
/// from the data) and where that input is, and the last stage's targets.
struct StageBuffers {
  std::vector<std::vector<float>> in, xbuf;  // per slot
  std::vector<const float*> inputs;          // per slot
  std::vector<float> ybuf;
  void resize(std::size_t slots) {
    in.assign(slots, {});
    xbuf.assign(slots, {});
    inputs.assign(slots, nullptr);
  }
  [[nodiscard]] std::size_t floats() const noexcept {
    std::size_t n = 0;
    for (const auto& v : in) n += v.capacity();
    for (const auto& v : xbuf) n += v.capacity();
    return n;
  }
};

/// A stage's links to its neighbours, null where it has none. A Link offers buffer(n) (a buffer to
/// fill and send), send(Message) (never blocks), recv(micro, count) (blocks; throws when the team
/// or job failed) and recycle(buffer): Channel between threads, RankLink (partition/mpi.hpp)
/// between MPI ranks.
template <class Link>
struct StageLinks {
  Link* fin = nullptr;   ///< activations from the previous stage
  Link* fout = nullptr;  ///< activations to the next stage
  Link* bin = nullptr;   ///< gradients from the next stage
  Link* bout = nullptr;  ///< gradients to the previous stage
};

/// One stage's passes of one step, in the order `ops`, over rows [lo, lo + n) of src cut into m
/// micro-batches. Adds the parameter gradient into g; on the last stage, with `outputs`, copies the
/// outputs of micro-batch rows there (row 0 = row lo). Returns the summed loss (last stage).
template <class Dev, class Link>
double run_stage_ops(StageNet<Dev>& net, const float* params, float* g, const std::vector<PipeOp>& ops, std::size_t m,
                     const RowSource& src, std::size_t lo, std::size_t n, float scale, float* outputs,
                     StageLinks<Link> links, StageBuffers& b, StepClock& clk) {
  using clock = std::chrono::steady_clock;
  const auto since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };
  const std::size_t slots = net.slots();
  double loss = 0.0;
  for (const PipeOp& op : ops) {
    const Range mb = share(n, m, op.micro);
    const std::size_t k = mb.hi - mb.lo, slot = op.micro % slots;
    if (op.forward) {
      const float* x = nullptr;
      if (!links.fin) {
        x = src.features(lo + mb.lo, lo + mb.hi, b.xbuf[slot]);
      } else {
        Message msg = links.fin->recv(op.micro, k * net.in_width());
        if (b.in[slot].capacity()) links.fin->recycle(std::move(b.in[slot]));
        b.in[slot] = std::move(msg.data);
        x = b.in[slot].data();
      }
      b.inputs[slot] = x;
      const auto t0 = clock::now();
      const float* out = net.forward(params, slot, x, k);
      const std::size_t width = net.out_width();
      if (links.fout) {
        std::vector<float> buf = links.fout->buffer(k * width);
        std::memcpy(buf.data(), out, k * width * sizeof(float));
        links.fout->send({op.micro, k, std::move(buf)});
      } else if (outputs) {
        std::memcpy(outputs + mb.lo * width, out, k * width * sizeof(float));
      }
      clk.busy += since(t0);
    } else {
      float* d = nullptr;
      Message msg;
      auto t0 = clock::now();
      if (!links.bin) {
        const float* y = src.targets(lo + mb.lo, lo + mb.hi, b.ybuf);
        t0 = clock::now();
        loss += net.loss(slot, y, k, scale, d);
      } else {
        msg = links.bin->recv(op.micro, k * net.out_width());
        t0 = clock::now();
        d = msg.data.data();
      }
      std::vector<float> din;
      if (links.bout) din = links.bout->buffer(k * net.in_width());
      net.backward(params, slot, b.inputs[slot], d, k, g, links.bout ? din.data() : nullptr);
      if (links.bout) links.bout->send({op.micro, k, std::move(din)});
      if (links.bin) links.bin->recycle(std::move(msg.data));
      clk.busy += since(t0);
    }
  }
  return loss;
}

inline void check_pipeline(const Architecture& arch, const PipelineOptions& o) {
  require(o.replicas >= 1, ErrorKind::invalid_argument, "Partition<Layerwise>: 0 replicas; a pipeline grid needs at least 1");
  require(o.micro_batches >= 1, ErrorKind::invalid_argument,
          "Partition<Layerwise>: 0 micro-batches; a pipeline step needs at least 1");
  (void)plan_stages(arch, o.stages, o.balance);  // names a stage count the model cannot take
}

template <class Dev>
class PipelineEngine {
 public:
  enum class Mode { forward, gradient, train };

  PipelineEngine(const Architecture& arch, float weight_decay, std::span<const float> init, PipelineOptions o,
                 const optim::Optimizer& opt, std::size_t rows_per_replica)
      : arch_(arch), wd_(weight_decay), o_(o), plan_(plan_stages(arch, o.stages, o.balance)), opt_(opt),
        team_(o.stages * o.replicas), clocks_(team_.size()), losses_(team_.size(), 0.0) {
    check_pipeline(arch, o);
    detail::require(init.size() == arch.parameter_count(), ErrorKind::shape,
                    "Partition<Layerwise>: " + std::to_string(init.size()) + " parameters for a model of " +
                        std::to_string(arch.parameter_count()));
    const std::size_t S = o_.stages, R = o_.replicas;
    for (const StageSpan& st : plan_.stages) {
      params_.emplace_back(init.begin() + static_cast<std::ptrdiff_t>(st.parameter_begin),
                           init.begin() + static_cast<std::ptrdiff_t>(st.parameter_end));
      states_.emplace_back(opt, st.parameters());
    }
    for (std::size_t w = 0; w < S * R; ++w) grads_.emplace_back(plan_.stages[w % S].parameters(), 0.0f);
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t s = 0; s + 1 < S; ++s) {
        const std::string between = "replica " + std::to_string(r) + ", stages " + std::to_string(s) + "->" + std::to_string(s + 1);
        fwd_.push_back(std::make_unique<Channel>(failed_, "Partition<Layerwise> activations, " + between));
        bwd_.push_back(std::make_unique<Channel>(failed_, "Partition<Layerwise> gradients, " + between));
      }
    reserve(rows_per_replica);
  }

  [[nodiscard]] const StagePlan& plan() const noexcept { return plan_; }
  [[nodiscard]] const PipelineOptions& options() const noexcept { return o_; }
  [[nodiscard]] std::size_t workers() const noexcept { return team_.size(); }
  [[nodiscard]] const PipelineStats& stats() const noexcept { return stats_; }
  void reset_stats() noexcept { stats_ = {}; }

  /// Sizes every stage's workspace for replica shares of up to `rows` rows.
  void reserve(std::size_t rows) {
    const std::size_t micro = (std::max<std::size_t>(rows, 1) + o_.micro_batches - 1) / o_.micro_batches;
    if (micro <= micro_rows_) return;
    micro_rows_ = micro;
    const std::size_t S = o_.stages;
    nets_.clear();
    bufs_.assign(team_.size(), {});
    for (std::size_t w = 0; w < team_.size(); ++w) {
      const std::size_t s = w % S, slots = pipeline_slots(o_.schedule, S, s, o_.micro_batches);
      nets_.push_back(std::make_unique<StageNet<Dev>>(arch_, plan_.stages[s], micro, slots));
      bufs_[w].resize(slots);
    }
  }

  /// The whole model's parameters, gathered from the stages.
  [[nodiscard]] std::vector<float> parameters() const {
    std::vector<float> p;
    p.reserve(arch_.parameter_count());
    for (const auto& s : params_) p.insert(p.end(), s.begin(), s.end());
    return p;
  }
  /// The gradient of the last step (summed over replicas), in the whole model's layout.
  [[nodiscard]] std::vector<float> gradient() const {
    std::vector<float> g;
    g.reserve(arch_.parameter_count());
    for (std::size_t s = 0; s < o_.stages; ++s) g.insert(g.end(), grads_[s].begin(), grads_[s].end());
    return g;
  }
  /// 0.5 * weight_decay * |W|^2 over all stages.
  [[nodiscard]] double weight_penalty() {
    double s = 0.0;
    for (std::size_t st = 0; st < o_.stages; ++st) s += nets_[st]->squared_weights(params_[st].data());
    return 0.5 * wd_ * s;
  }

  [[nodiscard]] std::vector<WorkerMemory> memory() const {
    std::vector<WorkerMemory> m(team_.size());
    for (std::size_t w = 0; w < team_.size(); ++w) {
      const std::size_t n = plan_.stages[w % o_.stages].parameters();
      m[w].parameters = n;
      m[w].gradients = grads_[w].size();
      m[w].optimizer_state = opt_.state_buffers() * n;
      m[w].activations = nets_[w]->activation_floats();
      m[w].activations += bufs_[w].floats();
    }
    return m;
  }

  /// One step on rows [0, rows) of src, in one team run: outputs (forward mode, rows x outputs)
  /// or the gradient (kept, see gradient()). Returns the summed loss (gradient mode).
  double run_once(const RowSource& src, std::size_t rows, Mode mode, float* outputs) {
    reserve((rows + o_.replicas - 1) / o_.replicas);
    const auto scale = static_cast<float>(1.0 / loss_normaliser(arch_.loss, rows, arch_.output_dim()));
    start_run();
    team_.run(
        [&](std::size_t w) {
          single_threaded_kernels();
          losses_[w] = step(w, src, 0, rows, mode, scale, outputs);
          finish_step(w, mode, 0.0, 0);
        },
        [&] { abort_run(); });
    double loss = 0.0;
    for (std::size_t r = 0; r < o_.replicas; ++r) loss += losses_[r * o_.stages + o_.stages - 1];
    return loss;
  }

  using EpochOut = PartitionEpochOut;

  /// One training epoch: batches of `batch` rows per replica in `order`.
  template <class OnStep>
  EpochOut epoch(const RowSource& src, std::size_t n, std::size_t batch, std::size_t epoch, std::size_t epochs,
                 OnStep&& on_step) {
    const std::size_t global = o_.replicas * batch, steps = (n + global - 1) / global;
    reserve(batch);
    EpochOut out;
    const PipelineStats before = stats_;
    start_run();
    team_.run(
        [&](std::size_t w) {
          single_threaded_kernels();
          for (std::size_t s = 0; s < steps; ++s) {
            const std::size_t rows = std::min(global, n - s * global);
            const auto scale = static_cast<float>(1.0 / loss_normaliser(arch_.loss, rows, arch_.output_dim()));
            const double lr = opt_.learning_rate *
                              opt_.schedule.factor(static_cast<double>(epoch) + static_cast<double>(s) / static_cast<double>(steps),
                                                   static_cast<double>(epochs));
            const auto t0 = clock::now();
            losses_[w] = step(w, src, s * global, rows, Mode::train, scale, nullptr);
            if (w % o_.stages == o_.stages - 1) check_step_loss(losses_[w], epoch, s, opt_.describe());
            if (!finish_step(w, Mode::train, lr, step_count_ + s + 1)) return;
            if (w == 0) {  // worker 0's time: its passes and update, versus waiting and exchange
              const double busy = clocks_[0].busy + update_seconds_;
              out.compute_seconds += busy;
              out.communication_seconds += std::max(0.0, since(t0) - busy);
              out.learning_rate = lr;
              on_step(s, step_loss_);
            }
          }
        },
        [&] { abort_run(); });
    step_count_ += steps;
    out.loss_sum = epoch_loss_;
    out.stats.busy_seconds = stats_.busy_seconds - before.busy_seconds;
    out.stats.worker_seconds = stats_.worker_seconds - before.worker_seconds;
    out.stats.steps = stats_.steps - before.steps;
    return out;
  }

 private:
  using clock = std::chrono::steady_clock;
  static double since(clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); }

  static void single_threaded_kernels() {
#if defined(_OPENMP)
    if constexpr (!std::is_same_v<Dev, Cpu>) omp_set_num_threads(1);  // an OpenMP BLAS stays on this worker's core
#endif
  }
  void start_run() {
    failed_.reset();
    for (auto& c : fwd_) c->clear();
    for (auto& c : bwd_) c->clear();
    epoch_loss_ = 0.0;
  }
  void abort_run() {
    failed_.raise();
    for (auto& c : fwd_) c->wake();
    for (auto& c : bwd_) c->wake();
  }

  /// Worker w's part of one step over rows [first, first + rows) of src.
  double step(std::size_t w, const RowSource& src, std::size_t first, std::size_t rows, Mode mode, float scale,
              float* outputs) {
    StepClock& clk = clocks_[w];
    clk.start = clock::now();
    clk.busy = 0.0;
    const std::size_t S = o_.stages, r = w / S, s = w % S;
    const Range share_r = share(rows, o_.replicas, r);
    const std::size_t n = share_r.hi - share_r.lo, lo = first + share_r.lo;
    StageNet<Dev>& net = *nets_[w];
    const float* params = params_[s].data();
    float* g = grads_[w].data();
    if (mode != Mode::forward) std::fill(grads_[w].begin(), grads_[w].end(), 0.0f);
    const std::size_t m = std::min(o_.micro_batches, n);
    StageLinks<Channel> links;
    if (s > 0) links.fin = fwd_[r * (S - 1) + s - 1].get();
    if (s + 1 < S) links.fout = fwd_[r * (S - 1) + s].get();
    if (s + 1 < S) links.bin = bwd_[r * (S - 1) + s].get();
    if (s > 0) links.bout = bwd_[r * (S - 1) + s - 1].get();
    std::vector<PipeOp> ops;
    if (mode == Mode::forward) {
      for (std::size_t i = 0; i < m; ++i) ops.push_back({true, i});
    } else {
      ops = pipeline_ops(o_.schedule, S, s, m);
    }
    const double loss = run_stage_ops(net, params, g, ops, m, src, lo, n, scale,
                                      outputs ? outputs + share_r.lo * net.out_width() : nullptr, links, bufs_[w], clk);
    if (mode != Mode::forward && r == 0 && wd_ > 0.0f) {
      const auto t0 = clock::now();
      net.add_weight_decay(params, g, wd_);
      clk.busy += since(t0);
    }
    clk.end = clock::now();
    return loss;
  }

  /// Ends a step: the replicas of each stage sum their gradients (slice by slice) and, when
  /// training, update that slice of the stage's parameters. False when a worker failed.
  bool finish_step(std::size_t w, Mode mode, double lr, std::uint64_t t) {
    if (!team_.sync()) return false;
    const std::size_t S = o_.stages, R = o_.replicas, r = w / S, s = w % S;
    if (w == 0) {
      account(stats_, clocks_);
      step_loss_ = 0.0;
      for (std::size_t q = 0; q < R; ++q) step_loss_ += losses_[q * S + S - 1];  // replica order
      epoch_loss_ += step_loss_;
    }
    if (mode == Mode::forward) return true;
    const auto u0 = clock::now();
    const Range slice = share_aligned(grads_[s].size(), R, r);
    float* sum = grads_[s].data();
    for (std::size_t q = 1; q < R; ++q) {
      const float* other = grads_[q * S + s].data();
      for (std::size_t i = slice.lo; i < slice.hi; ++i) sum[i] += other[i];
    }
    if (mode == Mode::train) states_[s].update(Dev::exec(), params_[s].data(), sum, slice.lo, slice.hi, lr, t);
    if (w == 0) update_seconds_ = since(u0);
    return team_.sync();
  }

  Architecture arch_;
  float wd_;
  PipelineOptions o_;
  StagePlan plan_;
  optim::Optimizer opt_;
  ThreadTeam team_;
  FailureFlag failed_;
  std::vector<std::vector<float>> params_;  // per stage
  std::vector<optim::State<Dev>> states_;   // per stage
  std::vector<std::vector<float>> grads_;   // per worker
  std::vector<std::unique_ptr<Channel>> fwd_, bwd_;
  std::vector<std::unique_ptr<StageNet<Dev>>> nets_;
  std::vector<StageBuffers> bufs_;  // per worker
  std::vector<StepClock> clocks_;
  std::vector<double> losses_;
  double step_loss_ = 0.0, epoch_loss_ = 0.0, update_seconds_ = 0.0;
  std::size_t micro_rows_ = 0;
  std::uint64_t step_count_ = 0;
  PipelineStats stats_;
};

}  // namespace detail
}  // namespace tessera
