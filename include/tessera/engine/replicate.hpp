// tessera/engine/replicate.hpp - Partition<Replicate>: data parallelism, written once for every
// device and communicator (threads, MPI ranks x threads, GPUs over NCCL).
//
// Every step, the global batch (workers x batch samples, in the epoch's order) is cut into one
// contiguous share per worker: each process takes its share, its lanes share that. Each lane
// computes the gradient of its share into its own buffer, scaled by 1 / (global batch), so that
// the sum over workers is the gradient of the mean loss of the global batch; then the Sync choice
// combines (sync/sync.hpp). With overlap, gradient buckets (whole layers, last layer first) start
// their sum while the backward pass goes on.
//
// Deterministic mode cuts each global batch into a fixed number of logical shards, whatever the
// number of workers: each shard's gradient is computed alone and the shard gradients are summed by
// a fixed pairwise tree over the shard index (in shared memory slice by slice; where the tree
// joins shards of two processes, by one message), so the result is bitwise independent of the
// number of workers and processes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "tessera/comm/concepts.hpp"
#include "tessera/detail/config.hpp"
#include "tessera/device/cpu.hpp"
#include "tessera/engine/common.hpp"
#include "tessera/engine/feed.hpp"
#include "tessera/engine/lanes.hpp"
#include "tessera/model/network.hpp"
#include "tessera/optim/update.hpp"
#include "tessera/sync/sync.hpp"
#include "tessera/train/gradient_buckets.hpp"
#include "tessera/train/timeline.hpp"

namespace tessera::detail {

/// OpenMP's thread count is per thread: an engine's lane keeps an OpenMP-built BLAS (and its own
/// kernels) on its core, unless it is the one lane of a process that uses every core itself.
template <class Dev>
inline void lane_threads() {
#if defined(_OPENMP)
  if constexpr (!std::is_same_v<Dev, Cpu>) omp_set_num_threads(1);
#endif
}

template <class Dev, class Group, class Sync>
class ReplicateEngine {
 public:
  using Comm = std::remove_cvref_t<decltype(std::declval<Group&>().lane(std::size_t{0}))>;
  static_assert(comm::Collectives<Comm>, "tessera: Partition<Replicate> needs a communicator with collectives "
                                         "(comm::Collectives); this Reduce choice's communicator lacks some");
  static_assert(comm::Group<Group>, "tessera: a Reduce choice's factory must make a comm::Group");
  using vector = typename Dev::template vector<float>;
  static constexpr bool shared = Comm::shared_memory;

  ReplicateEngine(Group& group, const Architecture& arch, float weight_decay, const optim::Optimizer& opt,
                  std::span<const float> init, EngineConfig cfg)
      : group_(group), team_(group), arch_(arch), wd_(weight_decay), opt_(opt), cfg_(std::move(cfg)),
        p_(init.size()), lanes_(group.lanes()), feed_(lanes_, cfg_.batch) {
    workers_ = team_.workers();
    processes_ = group.processes();
    process_ = group.process();
    require(!(cfg_.shards && Sync::period), ErrorKind::invalid_argument,
            "Trainer: deterministic mode applies to Sync<EveryStep>; local SGD (Sync<Periodic<K>>) has no "
            "worker-independent result");
    require(!(cfg_.shards && Sync::scope == StateScope::replica), ErrorKind::invalid_argument,
            std::string("Trainer: deterministic mode sums gradients; Sync<") + Sync::name + "> keeps a replica per worker");
    if (cfg_.shards) {
      if constexpr (!shared) {
        fail(ErrorKind::invalid_argument,
             "Trainer: deterministic mode needs workers that share memory (threads, and MPI ranks of threads); this "
             "device and communicator cannot give the same bits for another number of workers");
      } else {
        require(processes_ == 1 || cross_capable, ErrorKind::invalid_argument,
                "Trainer: deterministic mode across processes needs a communicator with a cross-process level");
        require(cfg_.shards <= 16384, ErrorKind::invalid_argument,
                "Trainer: deterministic mode takes at most 16384 shards, got " + std::to_string(cfg_.shards));
      }
    }
    overlap_ = cfg_.overlap && Sync::overlaps && !cfg_.shards && !(shared && processes_ == 1);
    if (overlap_) buckets_ = plan_gradient_buckets(arch_, cfg_.bucket_floats);
    lane_.resize(lanes_);
    losses_.assign(lanes_, 0.0);
    if constexpr (shared) {  // one replica per process, shared by its lanes
      if (Sync::scope != StateScope::replica) {
        params_shared_.assign(init.begin(), init.end());
        sum_shared_.assign(p_, 0.0f);
        if (Sync::scope == StateScope::local_slice) state_shared_ = std::make_unique<optim::State<Dev>>(opt, p_);
      }
      if (cfg_.shards) setup_shards();
    }
    try {
      team_.run([&](std::size_t w) { setup_lane(w, init); });
    } catch (...) {
      lane_.clear();
      throw;
    }
  }

  [[nodiscard]] std::size_t workers() const noexcept { return workers_; }

  /// Steps of an epoch over n rows (this process's rows when the data is sharded): as many as the
  /// largest shard needs.
  [[nodiscard]] std::size_t steps_per_epoch(std::size_t n) const {
    if (!sharded()) return (n + global_batch() - 1) / global_batch();
    const std::size_t most = *std::max_element(cfg_.process_rows.begin(), cfg_.process_rows.end());
    return (most + local_batch() - 1) / local_batch();
  }

  /// Steps [span.lo, span.hi) of an epoch over `d` in `order`, going on from `so_far` (the
  /// epoch's result before span.lo); on_step(step, running mean loss) on lane 0.
  template <class OnStep>
  EpochResult epoch(const data::Dataset& d, const std::vector<std::size_t>& order, std::size_t epoch, Range span,
                    const EpochResult& so_far, OnStep&& on_step) {
    const std::size_t n = d.rows();
    span.hi = std::min(span.hi, steps_per_epoch(n));
    if (span.lo == 0)
      for (auto& l : lane_) l->epoch_loss = 0.0;
    std::vector<EpochResult> per(lanes_, so_far);
    feed_.begin(d, order, span, cfg_.prefetch, [this, n](std::size_t s) { return process_range(s, n); },
                [this, n](std::size_t w, std::size_t s) { return lane_range(w, s, n); });
    try {
      team_.run([&](std::size_t w) { per[w] = lane_epoch(w, d, epoch, span, per[w], on_step); }, [&] { feed_.abort(); });
    } catch (...) {
      feed_.end();
      throw;
    }
    feed_.end();
    EpochResult r = per[0];
    if (Sync::period) {  // each lane's own losses: the epoch's is their sum (lane order), over processes
      r.loss_sum = 0.0;
      for (const auto& l : lane_) r.loss_sum += l->epoch_loss;
      if (processes_ > 1) group_.sum(&r.loss_sum, 1, "epoch loss");
    }
    return r;
  }

  /// The training state in the whole model's layout (the parameters and every optimizer buffer,
  /// gathered from the lanes' slices). Collective across processes.
  [[nodiscard]] TrainingState state() {
    require(Sync::scope != StateScope::replica, ErrorKind::invalid_argument,
            std::string("Trainer: Sync<") + Sync::name + "> keeps a replica and an optimizer state per worker, which no "
            "checkpoint of the whole model holds in this version; checkpoint with Sync<EveryStep> or Sync<Sharded>");
    TrainingState t;
    t.parameters = parameters();
    t.steps = lane_[0]->steps;
    for (std::size_t b = 0; b < opt_.state_buffers(); ++b) {
      if (Sync::scope == StateScope::local_slice) {  // every process holds the whole state
        if constexpr (shared) {
          t.moments.push_back(host_copy(state_shared_->buffer(b)));
        } else {
          [[maybe_unused]] auto bound = lane_[0]->device.bind();
          t.moments.push_back(host_copy(lane_[0]->state->buffer(b)));
        }
        continue;
      }
      require(host_memory<Dev> || processes_ == 1, ErrorKind::invalid_argument,
              "Trainer: a checkpoint of Sync<Sharded> across processes gathers the optimizer state in host memory; "
              "on this device it is taken within one process only in this version");
      t.moments.push_back(team_.gather(
          p_,
          [&](std::size_t w, float* whole) {
            LaneState& l = *lane_[w];
            [[maybe_unused]] auto bound = l.device.bind();
            Dev::download(raw(l.state->buffer(b)), whole + l.state_lo, l.state->buffer(b).size());
          },
          "optimizer state"));
    }
    return t;
  }

  /// Takes up a training state (another engine's, of any number of workers): before the first step.
  void restore(const TrainingState& t) {
    require(Sync::scope != StateScope::replica, ErrorKind::invalid_argument,
            std::string("Trainer: Sync<") + Sync::name + "> cannot resume from a checkpoint in this version");
    check_state(t, p_, opt_);
    if constexpr (shared) {
      if (Sync::scope != StateScope::replica) std::copy(t.parameters.begin(), t.parameters.end(), params_shared_.begin());
      if (Sync::scope == StateScope::local_slice)
        for (std::size_t b = 0; b < t.moments.size(); ++b)
          Dev::upload(t.moments[b].data(), raw(state_shared_->buffer(b)), p_);
    }
    for (auto& lp : lane_) {
      LaneState& l = *lp;
      [[maybe_unused]] auto bound = l.device.bind();
      l.steps = t.steps;
      if (l.own.size() == p_) Dev::upload(t.parameters.data(), raw(l.own), p_);
      if (l.state)
        for (std::size_t b = 0; b < t.moments.size(); ++b)
          Dev::upload(t.moments[b].data() + l.state_lo, raw(l.state->buffer(b)), l.state->buffer(b).size());
    }
    Dev::synchronize();
  }

  /// The trained parameters (replicas of this process averaged for local SGD).
  [[nodiscard]] std::vector<float> parameters() {
    if constexpr (shared) {
      if (Sync::scope != StateScope::replica) return params_shared_;
      std::vector<float> avg(p_, 0.0f);
      for (std::size_t i = 0; i < p_; ++i) {
        float s = 0.0f;
        for (const auto& l : lane_) s += l->own[i];
        avg[i] = s / static_cast<float>(lanes_);
      }
      return avg;
    } else {
      std::vector<float> out(p_);
      LaneState& l = *lane_[0];
      [[maybe_unused]] auto bound = l.device.bind();
      Dev::download(raw(l.own), out.data(), p_);
      return out;
    }
  }

  /// Device allocations of Thrust's temporary storage so far, over the lanes (0 on the CPU):
  /// constant in a steady state.
  [[nodiscard]] std::size_t device_allocations() const {
    std::size_t n = 0;
    for (const auto& l : lane_)
      if constexpr (requires { l->device.allocations(); }) n += l->device.allocations();
    return n;
  }

  /// What every worker holds (floats), indexed by worker: the parameters it updates, their
  /// optimizer state, its gradient and its activations. Collective across processes.
  [[nodiscard]] std::vector<WorkerMemory> memory() {
    return team_.memory([&](std::size_t w) {
      const LaneState& l = *lane_[w];
      return WorkerMemory{l.owned, l.grads.size() + l.shard_floats, opt_.state_buffers() * l.owned,
                          l.net ? l.net->activation_floats() : 0};
    });
  }

 private:
  static constexpr bool cross_capable = requires(Comm& c) { c.cross(); c.local(); };

  struct LaneState {
    explicit LaneState(int index) : device(index) {}
    typename Dev::Lane device;
    std::unique_ptr<Network<Dev>> net;
    vector grads;           ///< this lane's gradient (not in deterministic mode)
    vector own;             ///< its own replica (local SGD; or every lane without shared memory)
    std::unique_ptr<optim::State<Dev>> state;  ///< its own optimizer state (replica or global slice)
    std::size_t state_lo = 0;                  ///< where that state starts in the replica
    std::size_t owned = 0;                     ///< parameters it updates
    std::size_t shard_floats = 0;
    std::uint64_t steps = 0;
    std::uint64_t draw_epoch = 0, draw_step = 0;  ///< the step its training passes key draws with
    double epoch_loss = 0.0;  ///< the lane's own loss sum of the epoch so far (local SGD)
    double update_seconds = 0.0, comm_seconds = 0.0;
  };
  static std::vector<float> host_copy(const vector& v) {
    std::vector<float> out(v.size());
    Dev::download(thrust::raw_pointer_cast(v.data()), out.data(), v.size());
    return out;
  }

  static float* raw(vector& v) { return thrust::raw_pointer_cast(v.data()); }

  [[nodiscard]] bool sharded() const noexcept { return !cfg_.process_rows.empty(); }
  [[nodiscard]] std::size_t global_batch() const noexcept { return workers_ * cfg_.batch; }
  [[nodiscard]] std::size_t local_batch() const noexcept { return lanes_ * cfg_.batch; }

  /// Samples of steps 0..s-1 on every process.
  [[nodiscard]] std::size_t rows_before(std::size_t s, std::size_t n) const {
    if (!sharded()) return std::min(n, s * global_batch());
    std::size_t all = 0;
    for (std::size_t r : cfg_.process_rows) all += std::min(r, s * local_batch());
    return all;
  }
  [[nodiscard]] std::size_t step_rows(std::size_t s, std::size_t n) const { return rows_before(s + 1, n) - rows_before(s, n); }

  /// Positions of step s's samples that this process trains on: its share of the global batch (in
  /// deterministic mode, the rows of its block of shards; with sharded data, its own next rows).
  [[nodiscard]] Range process_range(std::size_t s, std::size_t n) const {
    if (sharded()) return {std::min(n, s * local_batch()), std::min(n, (s + 1) * local_batch())};
    const std::size_t first = s * global_batch(), rows = std::min(global_batch(), n - first);
    if (cfg_.shards) {
      const Range k = process_shards();
      if (k.hi == k.lo) return {first, first};
      return {first + share(rows, cfg_.shards, k.lo).lo, first + share(rows, cfg_.shards, k.hi - 1).hi};
    }
    const Range r = share(rows, workers_, process_ * lanes_);
    const Range q = share(rows, workers_, process_ * lanes_ + lanes_ - 1);
    return {first + r.lo, first + q.hi};
  }
  /// This lane's positions of step s (not in deterministic mode).
  [[nodiscard]] Range lane_range(std::size_t w, std::size_t s, std::size_t n) const {
    if (sharded()) {
      const Range here = process_range(s, n);
      const Range m = share(here.hi - here.lo, lanes_, w);
      return {here.lo + m.lo, here.lo + m.hi};
    }
    const std::size_t first = s * global_batch(), rows = std::min(global_batch(), n - first);
    const Range r = share(rows, workers_, team_.comm(w).rank());
    return {first + r.lo, first + r.hi};
  }
  /// The shards of this process (deterministic mode): the union of its lanes' contiguous blocks.
  [[nodiscard]] Range process_shards() const {
    return {share(cfg_.shards, workers_, process_ * lanes_).lo, share(cfg_.shards, workers_, process_ * lanes_ + lanes_ - 1).hi};
  }

  void setup_shards() {
    const Range mine = process_shards();
    shard_grads_.assign(mine.hi - mine.lo, std::vector<float>(p_, 0.0f));
    shard_losses_.assign(cfg_.shards, 0.0);
    received_.assign(p_, 0.0f);
  }

  void setup_lane(std::size_t w, std::span<const float> init) {
    lane_[w] = std::make_unique<LaneState>(group_.device(w));
    LaneState& l = *lane_[w];
    [[maybe_unused]] auto bound = l.device.bind();
    lane_threads<Dev>();
    const Comm& c = team_.comm(w);
    const std::size_t rows = cfg_.shards ? (workers_ * cfg_.batch + cfg_.shards - 1) / cfg_.shards
                                         : (cfg_.batch + cfg_.micro_batches - 1) / cfg_.micro_batches;
    l.net = std::make_unique<Network<Dev>>(arch_, std::max<std::size_t>(rows, 1));
    if (!cfg_.shards) l.grads.resize(p_);
    const bool own_replica = !shared || Sync::scope == StateScope::replica;
    if (own_replica) {
      l.own.resize(p_);
      Dev::upload(init.data(), raw(l.own), p_);
    }
    switch (Sync::scope) {
      case StateScope::replica: l.state = std::make_unique<optim::State<Dev>>(opt_, p_); l.owned = p_; break;
      case StateScope::local_slice: {
        const Range r = comm::slice(p_, c.local_size(), c.local_rank());
        l.owned = r.hi - r.lo;
        if (!shared) l.state = std::make_unique<optim::State<Dev>>(opt_, p_);
        break;
      }
      case StateScope::global_slice: {
        const Range r = comm::slice(p_, c.size(), c.rank());
        l.state_lo = r.lo;
        l.owned = r.hi - r.lo;
        l.state = std::make_unique<optim::State<Dev>>(opt_, l.owned);
        break;
      }
    }
    if (cfg_.shards) {
      const Range k = share(cfg_.shards, workers_, c.rank());
      l.shard_floats = (k.hi - k.lo) * p_;
    }
    Dev::synchronize();
  }

  /// The replica lane w trains with and updates.
  float* replica(std::size_t w) {
    if constexpr (shared) {
      if (Sync::scope != StateScope::replica) return params_shared_.data();
    }
    return raw(lane_[w]->own);
  }
  float* sum_buffer(std::size_t w) {
    if constexpr (shared) return sum_shared_.data();
    return raw(lane_[w]->grads);
  }

  /// Gradient of positions [lo, hi) into g (times scale), in micro-batch passes; returns the loss
  /// sum. The L2 term is added when `decay` (once per step in the sum). `layer_done(l)` runs
  /// when layer l's part of g is final.
  template <class LayerDone>
  double gradient(std::size_t w, std::size_t lo, std::size_t hi, std::size_t micro, const float* params, float* g,
                  float scale, bool decay, LayerDone&& layer_done) {
    Network<Dev>& net = *lane_[w]->net;
    if (hi == lo) {
      fill(Dev::exec(), g, p_, 0.0f);
      for (std::size_t l = arch_.layers.size(); l-- > 0;) layer_done(l);
      return 0.0;
    }
    double loss = 0.0;
    const std::size_t parts = std::min(micro, hi - lo);
    for (std::size_t j = 0; j < parts; ++j) {
      const Range m = share(hi - lo, parts, j);
      const auto [x, y] = feed_.rows(w, lo + m.lo, lo + m.hi);
      const float wd = decay && j == 0 ? wd_ : 0.0f;
      net.train_mode({cfg_.seed, lane_[w]->draw_epoch, lane_[w]->draw_step, lo + m.lo});
      if (j + 1 == parts)
        loss += net.forward_backward(params, x, y, m.hi - m.lo, g, scale, wd, j > 0, layer_done);
      else
        loss += net.forward_backward(params, x, y, m.hi - m.lo, g, scale, wd, j > 0);
    }
    return loss;
  }

  template <class OnStep>
  EpochResult lane_epoch(std::size_t w, const data::Dataset& d, std::size_t epoch, Range span, EpochResult res,
                         OnStep& on_step) {
    LaneState& l = *lane_[w];
    [[maybe_unused]] auto bound = l.device.bind();
    lane_threads<Dev>();
    Comm& c = team_.comm(w);
    const std::size_t n = d.rows(), steps = steps_per_epoch(n);
    const bool periodic = Sync::period != 0;
    if (periodic) res.loss_sum = l.epoch_loss;  // each lane's own losses
    for (std::size_t s = span.lo; s < span.hi; ++s) {
      const auto t0 = Clock::now();
      const std::size_t rows = step_rows(s, n);
      const double lr = learning_rate(opt_, epoch, s, steps, cfg_.epochs);
      const std::uint64_t t = ++l.steps;
      l.draw_epoch = epoch;
      l.draw_step = s;
      const bool last = s + 1 == steps && epoch + 1 == cfg_.epochs;
      res.learning_rate = lr;
      feed_.prepare(w, s);
      l.update_seconds = 0.0;
      double loss = 0.0;
      double comm_seconds = 0.0;
      const auto update = [&](Range r, auto g) {
        const TimelineSpan timeline_update("update", w, "optimizer");
        const auto u0 = Clock::now();
        float* params = replica(w);
        if (l.state) {
          l.state->update_from(Dev::exec(), params + l.state_lo, g, r.lo - l.state_lo, r.hi - l.state_lo, lr, t);
        } else {
          state_shared_->update_from(Dev::exec(), params, g, r.lo, r.hi, lr, t);
        }
        l.update_seconds += seconds_since(u0);
      };
      if (cfg_.shards) {
        loss = deterministic_step(w, s, rows, update);
        comm_seconds = l.comm_seconds;
      } else {
        const Range mine = lane_range(w, s, n);
        const std::size_t norm_rows = periodic ? std::max<std::size_t>(mine.hi - mine.lo, 1) : rows;
        const auto scale = static_cast<float>(1.0 / loss_normaliser(arch_.loss, norm_rows, arch_.output_dim()));
        const bool decay = periodic || c.rank() == 0;  // the L2 term enters the sum once
        float* g = raw(l.grads);
        float* sum = sum_buffer(w);
        std::size_t next_bucket = 0;
        const auto layer_done = [&](std::size_t layer) {
          if (!overlap_) return;
          while (next_bucket < buckets_.size() && buckets_[next_bucket].low_layer >= layer) {
            const GradientBucket& b = buckets_[next_bucket++];
            c.start_all_reduce(g, sum, b.lo, b.hi, "gradient bucket");
          }
          c.progress();
        };
        {
          const TimelineSpan timeline_compute("compute", w);
          loss = gradient(w, mine.lo, mine.hi, cfg_.micro_batches, replica(w), g, scale, decay, layer_done);
        }
        feed_.after_gradient(w, s);
        const auto c0 = Clock::now();
        std::optional<TimelineSpan> timeline_sum(std::in_place, "gradient sum", w, "communication");
        if (overlap_) c.finish("gradient buckets");
        losses_[w] = loss;
        double global = loss;
        auto losses = [&] {
          if constexpr (shared) {
            if (processes_ == 1) {
              global = 0.0;
              for (double v : losses_) global += v;  // lane order: deterministic
            }
          }
        };
        SyncStep<Comm, decltype(update), decltype(losses)> step{c, g, sum, replica(w), p_, t, last, overlap_, update, losses};
        Sync::step(step);
        timeline_sum.reset();
        feed_.after_update(w, s);
        if (!periodic && !(shared && processes_ == 1)) {
          const TimelineSpan timeline_loss("step loss", w, "communication");
          c.all_reduce(&global, 1, "step loss");
        }
        loss = global;
        comm_seconds = seconds_since(c0) - l.update_seconds;
      }
      if (!std::isfinite(loss)) loss_diverged(loss, epoch, s, opt_, !periodic && processes_ > 1);
      res.loss_sum += loss;
      res.communication_seconds += comm_seconds;
      res.compute_seconds += seconds_since(t0) - comm_seconds;
      if (w == 0) {
        const std::size_t all = rows_before(s + 1, n);  // samples of the epoch so far, on every process
        const std::size_t seen = periodic ? std::max<std::size_t>(1, all / workers_) : all;
        on_step(s, res.loss_sum / loss_normaliser(arch_.loss, std::max<std::size_t>(seen, 1), arch_.output_dim()));
      }
    }
    Dev::synchronize();
    if (periodic) l.epoch_loss = res.loss_sum;
    return res;
  }

  /// Deterministic mode: lane w computes the gradients of its contiguous block of the step's
  /// logical shards, alone each; the shard gradients are summed by a fixed pairwise tree over the
  /// shard index and every lane updates its slice of the process's replica. Returns the step's
  /// loss, summed over the shards in shard order.
  template <class Update>
  double deterministic_step(std::size_t w, std::size_t s, std::size_t rows, Update& update) {
    if constexpr (!shared) {
      (void)w, (void)s, (void)rows, (void)update;
      return 0.0;
    } else {
      Comm& c = team_.comm(w);
      const std::size_t S = cfg_.shards, first = s * global_batch();
      const Range pk = process_shards(), mine = share(S, workers_, c.rank());
      const auto scale = static_cast<float>(1.0 / loss_normaliser(arch_.loss, rows, arch_.output_dim()));
      std::optional<TimelineSpan> timeline_compute(std::in_place, "compute", w);
      for (std::size_t k = mine.lo; k < mine.hi; ++k) {
        const Range r = share(rows, S, k);
        shard_losses_[k] = gradient(w, first + r.lo, first + r.hi, 1, params_shared_.data(),
                                    shard_grads_[k - pk.lo].data(), scale, k == 0, NoLayerDone{});
      }
      timeline_compute.reset();
      feed_.after_gradient(w, s);
      const auto c0 = Clock::now();
      std::optional<TimelineSpan> timeline_sum(std::in_place, "gradient sum", w, "communication");
      {
        const TimelineSpan timeline_wait("wait", w, "communication");
        c.local_barrier("shard gradients");
      }
      if (processes_ == 1) {
        // every level of the tree, slice by slice: elementwise, so no lane waits between levels
        const Range slice = comm::slice(p_, c.local_size(), c.local_rank());
        for (std::size_t stride = 1; stride < S; stride *= 2)
          for (std::size_t k = 0; k + stride < S; k += 2 * stride)
            add_into(shard_grads_[k].data(), shard_grads_[k + stride].data(), slice);
      } else {
        if constexpr (cross_capable) {
          if (w == 0) tree_across_processes(*c.cross());
        }
        c.local_barrier("shard tree");
      }
      lane_[w]->comm_seconds = seconds_since(c0);
      // the Sync choice applies the tree's sum as it would any sum: a slice of the process's
      // replica per lane (EveryStep), or the lane's slice of the one replica, gathered (Sharded)
      float* sum = processes_ == 1 ? shard_grads_[0].data() : received_.data();
      double loss = 0.0;
      const std::uint64_t t = lane_[w]->steps;
      auto losses = [&] {
        for (double v : shard_losses_) loss += v;  // every shard's loss is in: read in shard order
      };
      SyncStep<Comm, Update, decltype(losses)> step{c, sum, sum, params_shared_.data(), p_, t, false, true, update, losses};
      Sync::step(step);  // ends with a barrier: no lane writes the next shard losses before all read these
      timeline_sum.reset();
      feed_.after_update(w, s);
      return loss;
    }
  }

  /// Lane 0 of each process: the shard tree where it crosses processes, one message per pair that
  /// joins two processes; process 0 ends with the sum (shard 0 is its), broadcast into received_,
  /// and the shard losses summed over the processes (each entry non-zero on one process: exact).
  template <class Cross>
  void tree_across_processes(Cross& cross) {
    const std::size_t S = cfg_.shards;
    std::vector<std::size_t> owner(S);
    for (std::size_t q = 0; q < processes_; ++q) {
      const Range k{share(S, workers_, q * lanes_).lo, share(S, workers_, q * lanes_ + lanes_ - 1).hi};
      for (std::size_t i = k.lo; i < k.hi; ++i) owner[i] = q;
    }
    const Range pk = process_shards();
    const Range all{0, p_};
    for (std::size_t stride = 1; stride < S; stride *= 2) {
      for (std::size_t k = 0; k + stride < S; k += 2 * stride) {
        const std::size_t a = owner[k], b = owner[k + stride];
        if (a == process_ && b == process_) {
          add_into(shard_grads_[k - pk.lo].data(), shard_grads_[k + stride - pk.lo].data(), all);
        } else if (b == process_) {
          std::vector<float> out = cross.buffer(p_);
          std::copy(shard_grads_[k + stride - pk.lo].begin(), shard_grads_[k + stride - pk.lo].end(), out.begin());
          cross.send(a, static_cast<int>(k + stride), std::move(out), "deterministic gradient tree");
        } else if (a == process_) {
          std::vector<float> in = cross.recv(b, static_cast<int>(k + stride), p_, "deterministic gradient tree");
          add_into(shard_grads_[k - pk.lo].data(), in.data(), all);
          cross.recycle(std::move(in));
        }
      }
    }
    if constexpr (requires { cross.flush(); }) cross.flush();
    if (process_ == 0) std::copy(shard_grads_[0].begin(), shard_grads_[0].end(), received_.begin());
    cross.broadcast(received_.data(), p_, 0, "gradients");
    std::vector<double> loss(S, 0.0);
    for (std::size_t k = pk.lo; k < pk.hi; ++k) loss[k] = shard_losses_[k];
    cross.all_reduce(loss.data(), S, "shard losses");
    std::copy(loss.begin(), loss.end(), shard_losses_.begin());
  }

  static void add_into(float* TESSERA_RESTRICT a, const float* TESSERA_RESTRICT b, Range r) {
    TESSERA_SIMD
    for (std::size_t i = r.lo; i < r.hi; ++i) a[i] += b[i];
  }

  Group& group_;
  Lanes<Group> team_;
  Architecture arch_;
  float wd_;
  optim::Optimizer opt_;
  EngineConfig cfg_;
  std::size_t p_, lanes_, workers_ = 1, processes_ = 1, process_ = 0;
  std::vector<std::unique_ptr<LaneState>> lane_;
  Feed<Dev> feed_;
  bool overlap_ = false;
  std::vector<GradientBucket> buckets_;
  std::vector<double> losses_;  ///< each lane's loss of the step (shared memory)
  // one replica per process, when the lanes share memory
  std::vector<float> params_shared_, sum_shared_;
  std::unique_ptr<optim::State<Dev>> state_shared_;
  // deterministic mode
  std::vector<std::vector<float>> shard_grads_;  ///< the shards of this process
  std::vector<double> shard_losses_;             ///< every shard's loss of the step
  std::vector<float> received_;                  ///< the tree's sum across processes
};

}  // namespace tessera::detail
