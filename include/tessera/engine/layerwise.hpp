// tessera/engine/layerwise.hpp - Partition<Layerwise>: pipeline model parallelism, written once
// for every device and communicator (worker threads, MPI ranks of one worker each).
//
// The model is cut into S contiguous stages (partition/plan.hpp); worker g = r * S + s runs stage
// s of replica r. A step's global batch is cut into R contiguous replica shares (as in data
// parallelism), each share into M micro-batches. Activations go forward and gradients backward
// as messages between neighbouring stages (the communicator's send and receive), in the order of
// the schedule:
//
//   GPipe (fill-drain): F0 F1 ... F(M-1), then B0 B1 ... B(M-1) on every stage;
//   1F1B: stage s runs min(S-s-1, M) forwards, then alternates one forward and one backward,
//         then drains the remaining backwards. Same gradient, but at most S-s micro-batches in
//         flight on stage s instead of M, so activation memory does not grow with M.
//
// After the backward passes, the R replicas of each stage (a sub-group of the communicator) sum
// their gradients and update the stage, as Sync<EveryStep> does: workers that share memory hold
// one copy of a stage's parameters and optimizer state and update a slice each.
#pragma once

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/comm/concepts.hpp"
#include "tessera/engine/common.hpp"
#include "tessera/engine/lanes.hpp"
#include "tessera/engine/replicate.hpp"
#include "tessera/model/network.hpp"
#include "tessera/optim/update.hpp"
#include "tessera/partition/plan.hpp"
#include "tessera/train/timeline.hpp"

namespace tessera {

/// How Partition<Layerwise> (or a Pipeline) divides and schedules a model.
struct PipelineOptions {
  /// Pipeline stages (workers per replica).
  std::size_t stages = 2;
  std::size_t micro_batches = 4;  ///< per replica per step
  std::size_t replicas = 1;       ///< data-parallel pipelines (workers = stages x replicas)
  /// GPipe or 1F1B.
  Schedule schedule = Schedule::one_f_one_b;
  /// What the stages balance.
  Balance balance = Balance::cost;
  /// Keys the training passes' random draws (dropout masks), with epoch, step and sample position.
  std::uint64_t seed = 0;
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

inline void check_pipeline(const Architecture& arch, const PipelineOptions& o) {
  require(o.replicas >= 1, ErrorKind::invalid_argument, "Partition<Layerwise>: 0 replicas; a pipeline grid needs at least 1");
  require(o.micro_batches >= 1, ErrorKind::invalid_argument,
          "Partition<Layerwise>: 0 micro-batches; a pipeline step needs at least 1");
  (void)plan_stages(arch, o.stages, o.balance);  // names a stage count the model cannot take
}

/// The link from a stage to a neighbour, in one direction (0: activations, 1: gradients), over the
/// communicator's messages; the tag carries the micro-batch.
template <class Comm>
struct StageLink {
  Comm* comm;
  std::size_t peer;
  int direction;
  std::string name;
  [[nodiscard]] int tag(std::size_t micro) const noexcept { return static_cast<int>(micro % 4096) * 2 + direction; }
};

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

/// One stage's passes of one step, in the order `ops`, over rows [lo, lo + n) of src cut into m
/// micro-batches. Adds the parameter gradient into g; on the last stage, with `outputs`, copies the
/// outputs of micro-batch rows there (row 0 = row lo). Returns the summed loss (last stage).
template <class Dev, class Comm>
double run_stage_ops(Network<Dev>& net, const float* params, float* g, const std::vector<PipeOp>& ops, std::size_t m,
                     const RowSource& src, std::size_t lo, std::size_t n, float scale, float* outputs,
                     StageLink<Comm>* fin, StageLink<Comm>* fout, StageLink<Comm>* bin, StageLink<Comm>* bout,
                     StageBuffers& b, StepClock& clk, const DrawKey* draw) {
  const std::size_t slots = net.slots();
  double loss = 0.0;
  for (const PipeOp& op : ops) {
    const Range mb = share(n, m, op.micro);
    const std::size_t k = mb.hi - mb.lo, slot = op.micro % slots;
    if (op.forward) {
      const float* x = nullptr;
      if (!fin) {
        x = src.features(lo + mb.lo, lo + mb.hi, b.xbuf[slot]);
      } else {
        std::optional<TimelineSpan> timeline_recv(std::in_place, "receive", "communication", static_cast<int>(op.micro));
        std::vector<float> msg = fin->comm->recv(fin->peer, fin->tag(op.micro), k * net.in_width(), fin->name.c_str());
        timeline_recv.reset();
        if (b.in[slot].capacity()) fin->comm->recycle(std::move(b.in[slot]));
        b.in[slot] = std::move(msg);
        x = b.in[slot].data();
      }
      b.inputs[slot] = x;
      const auto t0 = Clock::now();
      std::optional<TimelineSpan> timeline_forward(std::in_place, "forward", "compute", static_cast<int>(op.micro));
      if (draw)
        net.train_mode({draw->seed, draw->epoch, draw->step, lo + mb.lo});
      else
        net.eval_mode();
      const float* out = net.forward(params, x, k, slot);
      timeline_forward.reset();
      const std::size_t width = net.out_width();
      if (fout) {
        std::vector<float> buf = fout->comm->buffer(k * width);
        std::memcpy(buf.data(), out, k * width * sizeof(float));
        const TimelineSpan timeline_send("send", "communication", static_cast<int>(op.micro));
        fout->comm->send(fout->peer, fout->tag(op.micro), std::move(buf), fout->name.c_str());
      } else if (outputs) {
        std::memcpy(outputs + mb.lo * width, out, k * width * sizeof(float));
      }
      clk.busy += seconds_since(t0);
    } else {
      float* d = nullptr;
      std::vector<float> msg;
      auto t0 = Clock::now();
      if (!bin) {
        const float* y = src.targets(lo + mb.lo, lo + mb.hi, b.ybuf);
        t0 = Clock::now();
        loss += net.loss(slot, y, k, scale, d);
      } else {
        std::optional<TimelineSpan> timeline_recv(std::in_place, "receive", "communication", static_cast<int>(op.micro));
        msg = bin->comm->recv(bin->peer, bin->tag(op.micro), k * net.out_width(), bin->name.c_str());
        timeline_recv.reset();
        t0 = Clock::now();
        d = msg.data();
      }
      std::vector<float> din;
      if (bout) din = bout->comm->buffer(k * net.in_width());
      std::optional<TimelineSpan> timeline_backward(std::in_place, "backward", "compute", static_cast<int>(op.micro));
      net.backward(params, slot, b.inputs[slot], d, k, g, bout ? din.data() : nullptr, true);
      timeline_backward.reset();
      std::optional<TimelineSpan> timeline_send;
      if (bout) timeline_send.emplace("send", "communication", static_cast<int>(op.micro));
      if (bout) bout->comm->send(bout->peer, bout->tag(op.micro), std::move(din), bout->name.c_str());
      timeline_send.reset();
      if (bin) bin->comm->recycle(std::move(msg));
      clk.busy += seconds_since(t0);
    }
  }
  return loss;
}

template <class Dev, class Group>
class LayerwiseEngine {
 public:
  using Comm = typename Lanes<Group>::Comm;
  static_assert(comm::PointToPoint<Comm> && comm::Splittable<Comm> && comm::Collectives<Comm>,
                "tessera: Partition<Layerwise> needs a communicator with collectives, messages and sub-groups "
                "(comm::Communicator); this Reduce choice's communicator lacks some");
  static_assert(std::is_same_v<typename Dev::template vector<float>, std::vector<float>>,
                "tessera: Partition<Layerwise> runs on devices whose memory is the host's (Device<Cpu>)");
  static constexpr bool shared = Comm::shared_memory;
  enum class Mode { forward, gradient, train };

  LayerwiseEngine(Group& group, const Architecture& arch, float weight_decay, const optim::Optimizer& opt,
                  std::span<const float> init, PipelineOptions o, std::size_t epochs, std::size_t rows_per_replica)
      : lanes_(group), arch_(arch), wd_(weight_decay), o_(o), plan_(plan_stages(arch, o.stages, o.balance)), opt_(opt),
        epochs_(epochs) {
    check_pipeline(arch, o);
    require(init.size() == arch.parameter_count(), ErrorKind::shape,
            "Partition<Layerwise>: " + std::to_string(init.size()) + " parameters for a model of " +
                std::to_string(arch.parameter_count()));
    require(workers() == o_.stages * o_.replicas, ErrorKind::invalid_argument,
            "Partition<Layerwise>: " + std::to_string(workers()) + " workers for " + std::to_string(o_.stages) +
                " stages x " + std::to_string(o_.replicas) + " replicas");
    lane_.resize(lanes_.size());
    if constexpr (shared) {  // one copy of each stage of this process's lanes, shared by its replicas
      stage_params_.resize(o_.stages);
      stage_sum_.resize(o_.stages);
      for (std::size_t s = 0; s < o_.stages; ++s) {
        const StageSpan& st = plan_.stages[s];
        stage_params_[s].assign(init.begin() + static_cast<std::ptrdiff_t>(st.parameter_begin),
                                init.begin() + static_cast<std::ptrdiff_t>(st.parameter_end));
        stage_sum_[s].assign(st.parameters(), 0.0f);
        stage_state_.push_back(std::make_unique<optim::State<Dev>>(opt, st.parameters()));
      }
    }
    lanes_.run([&](std::size_t w) { setup_lane(w, init); });
    reserve(rows_per_replica);
  }

  [[nodiscard]] const StagePlan& plan() const noexcept { return plan_; }
  [[nodiscard]] const PipelineOptions& options() const noexcept { return o_; }
  [[nodiscard]] std::size_t workers() const noexcept { return lanes_.workers(); }
  [[nodiscard]] const PipelineStats& stats() const noexcept { return stats_; }
  void reset_stats() noexcept { stats_ = {}; }
  [[nodiscard]] std::size_t steps_per_epoch(std::size_t n) const {
    const std::size_t global = o_.replicas * batch_;
    return (n + global - 1) / global;
  }

  /// Sizes every stage's workspace for replica shares of up to `rows` rows (the batch of a step).
  void reserve(std::size_t rows) {
    batch_ = std::max(batch_, std::max<std::size_t>(rows, 1));
    const std::size_t micro = (batch_ + o_.micro_batches - 1) / o_.micro_batches;
    if (micro <= micro_rows_) return;
    micro_rows_ = micro;
    for (auto& l : lane_) l->net->reserve(micro);
  }

  /// The whole model's parameters, gathered from the stages (replica 0's copies).
  [[nodiscard]] std::vector<float> parameters() {
    return gather([&](LaneState& l) -> const float* { return params_of(l); }, "parameters of the stages");
  }
  /// The gradient of the last step (summed over replicas), in the whole model's layout.
  [[nodiscard]] std::vector<float> gradient() {
    return gather([&](LaneState& l) -> const float* { return sum_of(l); }, "gradients of the stages");
  }
  /// 0.5 * weight_decay * |W|^2 over all stages.
  [[nodiscard]] double weight_penalty() { return weight_penalty_of(arch_, parameters(), wd_); }

  /// What every worker holds (floats), indexed by worker. Collective across processes.
  [[nodiscard]] std::vector<WorkerMemory> memory() {
    return lanes_.memory([&](std::size_t w) {
      const LaneState& l = *lane_[w];
      const std::size_t n = plan_.stages[l.s].parameters();
      return WorkerMemory{n, l.grad.size(), opt_.state_buffers() * n, l.net->activation_floats() + l.bufs.floats()};
    });
  }
  /// "rank 2 (stage 2 of 3, replica 0)": this process's part, for messages across processes.
  [[nodiscard]] std::string where() const {
    const LaneState& l = *lane_[0];
    return "rank " + std::to_string(l.g) + " (stage " + std::to_string(l.s) + " of " + std::to_string(o_.stages) +
           ", replica " + std::to_string(l.r) + ")";
  }
  /// The stage of this process's first worker.
  [[nodiscard]] std::size_t stage() const noexcept { return lane_[0]->s; }
  [[nodiscard]] std::size_t replica() const noexcept { return lane_[0]->r; }

  /// One step on rows [0, rows) of src: outputs (forward mode, rows x outputs) or the gradient
  /// (kept, see gradient()). Returns the summed loss (gradient mode).
  double run_once(const RowSource& src, std::size_t rows, Mode mode, float* outputs) {
    reserve((rows + o_.replicas - 1) / o_.replicas);
    const auto scale = static_cast<float>(1.0 / loss_normaliser(arch_.loss, rows, arch_.output_dim()));
    const std::size_t outs = outputs ? rows * arch_.output_dim() : 0;
    std::vector<std::vector<float>> own(lanes_.size());
    double loss = 0.0;
    lanes_.run([&](std::size_t w) {
      LaneState& l = *lane_[w];
      [[maybe_unused]] auto bound = l.device.bind();
      lane_threads<Dev>();
      float* out = nullptr;
      if (outputs) {
        if constexpr (shared) {
          out = outputs;
        } else {
          own[w].assign(outs, 0.0f);
          out = own[w].data();
        }
      }
      const double lane_loss = step(w, src, 0, rows, mode, scale, out);
      const double step_loss = finish_step(w, mode, lane_loss, 0.0, 0);
      if (outputs && !shared) lanes_.comm(w).all_reduce(out, out, outs, "outputs of the last stages");
      if (w == 0) loss = step_loss;
    });
    if (outputs && !shared) std::copy(own[0].begin(), own[0].end(), outputs);
    return loss;
  }

  /// Steps [span.lo, span.hi) of a training epoch (batches of the engine's batch per replica, in
  /// `order`), going on from `so_far`.
  template <class OnStep>
  EpochResult epoch(const data::Dataset& d, const std::vector<std::size_t>& order, std::size_t epoch, Range span,
                    const EpochResult& so_far, OnStep&& on_step) {
    const RowSource src = rows_of(d, order);
    const std::size_t n = d.rows(), global = o_.replicas * batch_, steps = (n + global - 1) / global;
    span.hi = std::min(span.hi, steps);
    EpochResult out = so_far;
    out.pipeline = true;
    const PipelineStats before = stats_;
    lanes_.run([&](std::size_t w) {
      LaneState& l = *lane_[w];
      [[maybe_unused]] auto bound = l.device.bind();
      lane_threads<Dev>();
      for (std::size_t s = span.lo; s < span.hi; ++s) {
        const std::size_t rows = std::min(global, n - s * global);
        const auto scale = static_cast<float>(1.0 / loss_normaliser(arch_.loss, rows, arch_.output_dim()));
        const double lr = learning_rate(opt_, epoch, s, steps, epochs_);
        const auto t0 = Clock::now();
        const double lane_loss = step(w, src, s * global, rows, Mode::train, scale, nullptr, epoch, s);
        const double step_loss = finish_step(w, Mode::train, lane_loss, lr, ++l.steps);
        if (!std::isfinite(step_loss)) loss_diverged(step_loss, epoch, s, opt_, lanes_.group().processes() > 1);
        if (w == 0) {  // lane 0's time: its passes and update, versus waiting and exchange
          const double busy = l.clk.busy + l.update_seconds;
          out.compute_seconds += busy;
          out.communication_seconds += std::max(0.0, seconds_since(t0) - busy);
          out.learning_rate = lr;
          out.loss_sum += step_loss;
          const std::size_t seen = std::min(n, (s + 1) * global);
          on_step(s, out.loss_sum / loss_normaliser(arch_.loss, seen, arch_.output_dim()));
        }
      }
    });
    out.stats.busy_seconds += stats_.busy_seconds - before.busy_seconds;
    out.stats.worker_seconds += stats_.worker_seconds - before.worker_seconds;
    out.stats.steps += stats_.steps - before.steps;
    return out;
  }

  /// The training state in the whole model's layout: each stage's parameters and optimizer
  /// buffers (replica 0's). Collective across processes.
  [[nodiscard]] TrainingState state() {
    TrainingState t;
    t.parameters = parameters();
    t.steps = lane_[0]->steps;
    for (std::size_t b = 0; b < opt_.state_buffers(); ++b)
      t.moments.push_back(gather([&](LaneState& l) -> const float* { return state_of(l).buffer(b).data(); },
                                 "optimizer state of the stages"));
    return t;
  }

  /// Takes up a training state (of any number of stages or workers): before the first step.
  void restore(const TrainingState& t) {
    check_state(t, arch_.parameter_count(), opt_);
    const auto put = [&](const std::vector<float>& whole, float* stage, std::size_t s) {
      const StageSpan& st = plan_.stages[s];
      std::copy(whole.begin() + static_cast<std::ptrdiff_t>(st.parameter_begin),
                whole.begin() + static_cast<std::ptrdiff_t>(st.parameter_end), stage);
    };
    for (auto& lp : lane_) {
      LaneState& l = *lp;
      l.steps = t.steps;
      put(t.parameters, params_of(l), l.s);
      for (std::size_t b = 0; b < t.moments.size(); ++b) put(t.moments[b], state_of(l).buffer(b).data(), l.s);
    }
  }

 private:
  struct LaneState {
    explicit LaneState(int index) : device(index) {}
    typename Dev::Lane device;
    std::size_t g = 0, s = 0, r = 0;
    std::unique_ptr<Comm> dp;  ///< the replicas of this lane's stage
    std::unique_ptr<StageLink<Comm>> fin, fout, bin, bout;
    std::unique_ptr<Network<Dev>> net;
    std::vector<float> grad, own;  ///< gradient; own copy of the stage without shared memory
    std::unique_ptr<optim::State<Dev>> state;
    StageBuffers bufs;
    StepClock clk;
    double update_seconds = 0.0;
    std::uint64_t steps = 0;
  };

  void setup_lane(std::size_t w, std::span<const float> init) {
    lane_[w] = std::make_unique<LaneState>(lanes_.group().device(w));
    LaneState& l = *lane_[w];
    [[maybe_unused]] auto bound = l.device.bind();
    Comm& c = lanes_.comm(w);
    const std::size_t S = o_.stages;
    l.g = c.rank();
    l.s = l.g % S;
    l.r = l.g / S;
    l.dp = std::make_unique<Comm>(c.split(l.s, l.r));
    const StageSpan& st = plan_.stages[l.s];
    const std::string me = "Partition<Layerwise> replica " + std::to_string(l.r) + ", ";
    const auto between = [&](std::size_t a, std::size_t b) {
      return "stages " + std::to_string(a) + "->" + std::to_string(b) + " (workers " + std::to_string(l.r * S + a) + "->" +
             std::to_string(l.r * S + b) + ")";
    };
    if (l.s > 0) {
      l.fin = std::make_unique<StageLink<Comm>>(StageLink<Comm>{&c, l.g - 1, 0, me + "activations, " + between(l.s - 1, l.s)});
      l.bout = std::make_unique<StageLink<Comm>>(StageLink<Comm>{&c, l.g - 1, 1, me + "gradients, " + between(l.s - 1, l.s)});
    }
    if (l.s + 1 < S) {
      l.fout = std::make_unique<StageLink<Comm>>(StageLink<Comm>{&c, l.g + 1, 0, me + "activations, " + between(l.s, l.s + 1)});
      l.bin = std::make_unique<StageLink<Comm>>(StageLink<Comm>{&c, l.g + 1, 1, me + "gradients, " + between(l.s, l.s + 1)});
    }
    const std::size_t slots = pipeline_slots(o_.schedule, S, l.s, o_.micro_batches);
    l.net = std::make_unique<Network<Dev>>(layer_views(arch_, st.first_layer, st.end_layer), arch_.objective(), 1, slots);
    l.bufs.resize(slots);
    l.grad.assign(st.parameters(), 0.0f);
    if constexpr (!shared) {
      l.own.assign(init.begin() + static_cast<std::ptrdiff_t>(st.parameter_begin),
                   init.begin() + static_cast<std::ptrdiff_t>(st.parameter_end));
      l.state = std::make_unique<optim::State<Dev>>(opt_, st.parameters());
    }
  }

  float* params_of(LaneState& l) {
    if constexpr (shared) return stage_params_[l.s].data();
    return l.own.data();
  }
  optim::State<Dev>& state_of(LaneState& l) {
    if constexpr (shared) return *stage_state_[l.s];
    return *l.state;
  }
  float* sum_of(LaneState& l) {
    if constexpr (shared) {
      if (o_.replicas > 1) return stage_sum_[l.s].data();
    }
    return l.grad.data();
  }

  /// Lane w's part of one step over rows [first, first + rows) of src.
  double step(std::size_t w, const RowSource& src, std::size_t first, std::size_t rows, Mode mode, float scale,
              float* outputs, std::uint64_t epoch = 0, std::uint64_t step_index = 0) {
    LaneState& l = *lane_[w];
    timeline_lane() = static_cast<std::uint32_t>(w);  // run_stage_ops' spans are on this lane's track
    l.clk.start = Clock::now();
    l.clk.busy = 0.0;
    const Range share_r = share(rows, o_.replicas, l.r);
    const std::size_t n = share_r.hi - share_r.lo, lo = first + share_r.lo;
    if (mode != Mode::forward) std::fill(l.grad.begin(), l.grad.end(), 0.0f);
    const std::size_t m = std::min(o_.micro_batches, std::max<std::size_t>(n, 1));
    std::vector<PipeOp> ops;
    if (mode == Mode::forward) {
      for (std::size_t i = 0; i < m; ++i) ops.push_back({true, i});
    } else {
      ops = pipeline_ops(o_.schedule, o_.stages, l.s, m);
    }
    const float* params = params_of(l);
    const DrawKey draw{o_.seed, epoch, step_index, 0};
    const double loss = n == 0 ? 0.0
                               : run_stage_ops(*l.net, params, l.grad.data(), ops, m, src, lo, n, scale,
                                               outputs ? outputs + share_r.lo * l.net->out_width() : nullptr,
                                               l.fin.get(), l.fout.get(), l.bin.get(), l.bout.get(), l.bufs, l.clk,
                                               mode == Mode::forward ? nullptr : &draw);
    if (mode != Mode::forward && l.r == 0 && wd_ > 0.0f) {
      const auto t0 = Clock::now();
      l.net->add_weight_decay(params, l.grad.data(), wd_);
      l.clk.busy += seconds_since(t0);
    }
    l.clk.end = Clock::now();
    if constexpr (requires(Comm& c) { c.flush(); }) lanes_.comm(w).flush();  // every message has left
    return loss;
  }

  /// Ends a step: the replicas of the stage sum its gradient and (training) update it; every lane
  /// learns the step's loss and the workers' busy and elapsed times. Returns the step's loss.
  double finish_step(std::size_t w, Mode mode, double loss, double lr, std::uint64_t t) {
    LaneState& l = *lane_[w];
    Comm& c = lanes_.comm(w);
    const auto u0 = Clock::now();
    if (mode != Mode::forward) {
      Comm& dp = *l.dp;
      float* sum = sum_of(l);
      const std::size_t n = l.grad.size();
      std::optional<TimelineSpan> timeline_sum;
      if (dp.size() > 1) timeline_sum.emplace("gradient sum", w, "communication");
      if (dp.size() > 1) dp.all_reduce(l.grad.data(), sum, n, "stage gradient over replicas");
      timeline_sum.reset();
      if (mode == Mode::train) {
        const Range mine = comm::slice(n, dp.local_size(), dp.local_rank());
        const TimelineSpan timeline_update("update", w, "optimizer");
        state_of(l).update_from(Dev::exec(), params_of(l), GradientOf{sum + mine.lo}, mine.lo, mine.hi, lr, t);
      }
      const TimelineSpan timeline_wait("wait", w, "communication");
      dp.local_barrier("stage parameters");
    }
    l.update_seconds = seconds_since(u0);
    const std::size_t W = workers();
    std::vector<double> v(2 + W, 0.0);
    v[0] = l.s + 1 == o_.stages ? loss : 0.0;
    v[1] = l.clk.busy;
    v[2 + l.g] = std::chrono::duration<double>(l.clk.end - l.clk.start).count();
    std::optional<TimelineSpan> timeline_loss(std::in_place, "step loss", w, "communication");
    c.all_reduce(v.data(), v.size(), "step loss and times");
    timeline_loss.reset();
    if (w == 0) {
      stats_.busy_seconds += v[1];
      stats_.worker_seconds += static_cast<double>(W) * *std::max_element(v.begin() + 2, v.end());
      ++stats_.steps;
    }
    return v[0];
  }

  /// Every stage's values (replica 0's), in the whole model's layout, on every lane.
  template <class Values>
  std::vector<float> gather(Values&& values, const char* what) {
    return lanes_.gather(
        arch_.parameter_count(),
        [&](std::size_t w, float* whole) {
          LaneState& l = *lane_[w];
          if (l.r != 0) return;
          const StageSpan& st = plan_.stages[l.s];
          const float* v = values(l);
          std::copy(v, v + st.parameters(), whole + st.parameter_begin);
        },
        what);
  }

  Lanes<Group> lanes_;
  Architecture arch_;
  float wd_;
  PipelineOptions o_;
  StagePlan plan_;
  optim::Optimizer opt_;
  std::size_t epochs_;
  std::size_t batch_ = 1, micro_rows_ = 0;
  std::vector<std::unique_ptr<LaneState>> lane_;
  std::vector<std::vector<float>> stage_params_, stage_sum_;  ///< shared memory: one per stage
  std::vector<std::unique_ptr<optim::State<Dev>>> stage_state_;
  PipelineStats stats_;
};

}  // namespace detail
}  // namespace tessera
