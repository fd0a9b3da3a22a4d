// tessera/train/data_parallel.hpp - data-parallel training on worker threads of one process.
//
// Every step, the global batch (workers x batch_size samples, in the epoch's order) is cut into
// contiguous shares, one per worker. Each worker computes the gradient of its share into its own
// flat buffer, already scaled by 1 / (global batch), so that the sum over workers is the gradient
// of the mean loss of the global batch. Then every worker sums one slice of the flat buffer over
// all workers, in worker order, and applies the optimizer update to that slice of the shared
// parameters: a reduce-scatter fused with the update, after which every worker reads the new
// parameters in shared memory (the all-gather is free).
//
// Sync<Periodic<K>> instead gives each worker its own replica and optimizer state; workers step
// alone on their share and the replicas are averaged (sliced, in worker order) every K steps.
//
// Deterministic mode cuts each global batch into a fixed number of logical shards, whatever the
// number of workers; each shard's gradient is computed alone and the shard gradients are summed
// by a fixed pairwise tree over the shard index, so the result is bitwise independent of the
// number of workers.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "tessera/data/dataset.hpp"
#include "tessera/device/cpu.hpp"
#include "tessera/load/prefetch.hpp"
#include "tessera/model/network.hpp"
#include "tessera/optim/update.hpp"
#include "tessera/comm/thread_comm.hpp"
#include "tessera/reduce/thread_team.hpp"
#include "tessera/train/progress.hpp"

namespace tessera::detail {

/// One point-to-point message between ranks: `count` floats at `data` to or from rank `peer`.
struct RankMessage {
  float* data = nullptr;
  std::size_t count = 0;
  std::size_t peer = 0;
  int tag = 0;
};

/// Other processes training the same model (Reduce<MpiAllreduce>): this process is rank `rank` of
/// `size`. Every call is made from the main thread only (worker 0), by every rank in the same order,
/// and none waits forever: a rank that fails or stops answering makes the others throw.
class CrossRanks {
 public:
  virtual ~CrossRanks() = default;
  std::size_t rank = 0, size = 1;
  /// In place: the sum over ranks.
  virtual void sum(float* p, std::size_t n, const char* what) = 0;
  virtual void sum(double* p, std::size_t n, const char* what) = 0;
  /// Starts a sum over ranks without waiting; sums complete in the order started.
  virtual void start_sum(float* p, std::size_t n, const char* what) = 0;
  /// Advances started sums without waiting.
  virtual void progress() = 0;
  /// Waits until every started sum is complete.
  virtual void finish() = 0;
  virtual void broadcast(float* p, std::size_t n, std::size_t root, const char* what) = 0;
  /// Posts every send and receive, then waits for all of them.
  virtual void exchange(std::span<const RankMessage> sends, std::span<const RankMessage> recvs, const char* what) = 0;
  /// This rank stops with `message`: tells the other ranks, so that none waits for it.
  virtual void fail(const std::string& message) noexcept = 0;
};

/// A worker of this process failed while worker 0 waited for it: the team's first error is the
/// one reported.
struct TeamAborted {};

struct ParallelPlan {
  CrossRanks* cross = nullptr;  ///< null: this process trains alone
  std::size_t workers = 1;
  std::size_t batch = 32;         ///< samples per worker per step
  std::size_t micro_batches = 1;  ///< forward/backward passes per worker per step (same gradient)
  std::size_t period = 0;         ///< 0: average gradients every step; K: local SGD, average every K steps
  std::size_t shards = 0;         ///< deterministic mode: logical shards per global batch (0: off)
  bool prefetch = false;          ///< Load<Prefetch>: a producer thread gathers the next steps' batches
  bool overlap = true;            ///< across ranks: sum gradient buckets during the backward pass
  std::size_t bucket_floats = std::size_t{1} << 20;  ///< gradient bucket size (whole layers, at least this)
  /// Sharded data (data::read_binary_shard): the rows each rank holds; empty when every rank holds
  /// the whole data set. Each step a rank trains on its next workers x batch rows of its own shard.
  std::vector<std::size_t> rank_rows;
};

/// One global batch gathered in the epoch's order.
struct HostBatch {
  std::vector<float> x, y;
};

struct EpochResult {
  double loss_sum = 0.0;  ///< unnormalised sum of per-sample losses
  double compute_seconds = 0.0, communication_seconds = 0.0;
  double learning_rate = 0.0;
};

template <class Dev>
class DataParallel {
 public:
  DataParallel(const Architecture& arch, float weight_decay, const optim::Optimizer& opt, std::span<const float> init,
               ParallelPlan plan, std::size_t total_epochs)
      : arch_(arch), wd_(weight_decay), opt_(opt), plan_(plan), epochs_(total_epochs), team_(plan.workers),
        p_(init.size()) {
    const std::size_t n = plan_.workers;
    const std::size_t replicas = plan_.period ? n : 1;
    for (std::size_t r = 0; r < replicas; ++r) {
      params_.emplace_back(init.begin(), init.end());
      states_.emplace_back(opt, p_);
    }
    const std::size_t buffers = plan_.shards ? plan_.shards : n;
    grads_.assign(buffers, std::vector<float>(p_, 0.0f));
    losses_.assign(buffers, 0.0);
    const std::size_t rows = plan_.shards ? (ranks() * n * plan_.batch + plan_.shards - 1) / plan_.shards
                                          : (plan_.batch + plan_.micro_batches - 1) / plan_.micro_batches;
    for (std::size_t w = 0; w < n; ++w) nets_.push_back(std::make_unique<Network<Dev>>(arch_, rows));
    xb_.assign(n, {});
    yb_.assign(n, {});
    if (overlapping()) plan_buckets();
    if (plan_.cross && plan_.shards) {
      detail::require(plan_.shards < 16384, ErrorKind::invalid_argument,
                      "Trainer: deterministic mode across processes takes fewer than 16384 shards, got " +
                          std::to_string(plan_.shards));
      for (std::size_t r = 0; r < ranks(); ++r) {
        const Range k = share(plan_.shards, ranks(), r);
        for (std::size_t i = k.lo; i < k.hi; ++i) shard_owner_.push_back(r);
      }
      received_.assign(p_, 0.0f);
    }
  }

  /// One epoch over `d` in `order` (empty: the data's own order).
  EpochResult epoch(const data::Dataset& d, const std::vector<std::size_t>& order, std::size_t epoch,
                    ProgressLine& progress) {
    const std::size_t n = d.rows(), steps = steps_per_epoch(n);
    std::vector<EpochResult> per(team_.size());
    std::unique_ptr<Prefetcher<HostBatch>> pf;
    if (plan_.prefetch && steps > 0)
      pf = std::make_unique<Prefetcher<HostBatch>>(steps, plan_.workers, [&](std::size_t s, HostBatch& b) {
        const Range mine = this_rank(s, n);
        gather(d, order, mine.lo, mine.hi, b.x, b.y);
      });
    prefetch_ = pf.get();
    team_.run([&](std::size_t w) { per[w] = worker_epoch(w, d, order, epoch, steps, progress); },
              [&] {
                if (prefetch_) prefetch_->abort();
              });
    prefetch_ = nullptr;
    EpochResult r = per[0];
    r.loss_sum = 0.0;
    for (const auto& e : per) r.loss_sum += e.loss_sum;  // worker order: deterministic
    if (plan_.cross && plan_.period) plan_.cross->sum(&r.loss_sum, 1, "epoch loss");  // synchronous: already global
    return r;
  }

  /// Steps of an epoch over n rows (this process's rows when the data is sharded): as many as the
  /// largest shard needs.
  [[nodiscard]] std::size_t steps_per_epoch(std::size_t n) const {
    if (!sharded()) return (n + global_batch() - 1) / global_batch();
    const std::size_t most = *std::max_element(plan_.rank_rows.begin(), plan_.rank_rows.end());
    return (most + local_batch() - 1) / local_batch();
  }

  /// The trained parameters (replicas averaged for local SGD).
  [[nodiscard]] std::vector<float> parameters() const {
    if (params_.size() == 1) return params_[0];
    std::vector<float> avg(p_, 0.0f);
    for (std::size_t i = 0; i < p_; ++i) {
      float s = 0.0f;
      for (const auto& r : params_) s += r[i];
      avg[i] = s / static_cast<float>(params_.size());
    }
    return avg;
  }

 private:
  using clock = std::chrono::steady_clock;
  [[nodiscard]] std::size_t ranks() const noexcept { return plan_.cross ? plan_.cross->size : 1; }
  [[nodiscard]] std::size_t my_rank() const noexcept { return plan_.cross ? plan_.cross->rank : 0; }
  [[nodiscard]] bool overlapping() const noexcept {
    return plan_.cross && plan_.overlap && !plan_.period && !plan_.shards && ranks() > 1;
  }
  [[nodiscard]] std::size_t global_batch() const noexcept { return ranks() * plan_.workers * plan_.batch; }
  [[nodiscard]] std::size_t local_batch() const noexcept { return plan_.workers * plan_.batch; }
  [[nodiscard]] bool sharded() const noexcept { return !plan_.rank_rows.empty(); }

  /// Samples of steps 0..s-1 on all ranks.
  [[nodiscard]] std::size_t rows_before(std::size_t s, std::size_t n) const {
    if (!sharded()) return std::min(n, s * global_batch());
    std::size_t all = 0;
    for (std::size_t r : plan_.rank_rows) all += std::min(r, s * local_batch());
    return all;
  }
  /// Samples of step s on all ranks.
  [[nodiscard]] std::size_t step_rows(std::size_t s, std::size_t n) const { return rows_before(s + 1, n) - rows_before(s, n); }

  /// Positions of step s's samples that this process trains on: its share of the global batch (in
  /// deterministic mode, the rows of its block of shards; with sharded data, its own next rows).
  [[nodiscard]] Range this_rank(std::size_t s, std::size_t n) const {
    if (sharded()) return {std::min(n, s * local_batch()), std::min(n, (s + 1) * local_batch())};
    const std::size_t global = global_batch(), first = s * global, rows = std::min(global, n - first);
    if (plan_.shards) {
      const Range k = share(plan_.shards, ranks(), my_rank());
      if (k.hi == k.lo) return {first, first};
      return {first + share(rows, plan_.shards, k.lo).lo, first + share(rows, plan_.shards, k.hi - 1).hi};
    }
    const Range r = share(rows, ranks(), my_rank());
    return {first + r.lo, first + r.hi};
  }

  /// Gradient buckets for the overlapped sum: whole layers, last layer first, each at least
  /// bucket_floats (the first layers may close a smaller last bucket). Layers are contiguous in
  /// the flat buffer, so each bucket is one range.
  void plan_buckets() {
    const auto& layers = arch_.layers;
    layer_count_ = std::make_unique<std::atomic<std::uint64_t>[]>(layers.size());
    for (std::size_t l = 0; l < layers.size(); ++l) layer_count_[l].store(0);
    Bucket b{layers.back().offset + layers.back().parameter_count(), 0, 0};
    for (std::size_t l = layers.size(); l-- > 0;) {
      b.lo = layers[l].offset;
      b.low_layer = l;
      if (b.hi - b.lo >= plan_.bucket_floats || l == 0) {
        buckets_.push_back(b);
        b = Bucket{b.lo, 0, 0};
      }
    }
  }
  static double since(clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); }

  /// Copies positions [lo, hi) of the epoch order (empty: the data's own order) into x and y.
  static void gather(const data::Dataset& d, const std::vector<std::size_t>& order, std::size_t lo, std::size_t hi,
                     std::vector<float>& x, std::vector<float>& y) {
    const std::size_t c = d.cols(), t = d.target_dim;
    x.resize((hi - lo) * c);
    y.resize((hi - lo) * t);
    for (std::size_t r = lo; r < hi; ++r) {
      const std::size_t i = order.empty() ? r : order[r];
      std::copy(d.features.row(i), d.features.row(i) + c, x.data() + (r - lo) * c);
      std::copy(d.targets.data() + i * t, d.targets.data() + (i + 1) * t, y.data() + (r - lo) * t);
    }
  }

  /// Pointers to positions [lo, hi) of the epoch order: from the prefetched batch, the data itself
  /// when contiguous, or gathered into the worker's buffers.
  std::pair<const float*, const float*> rows_of(std::size_t w, const data::Dataset& d,
                                                const std::vector<std::size_t>& order, std::size_t lo, std::size_t hi) {
    const std::size_t c = d.cols(), t = d.target_dim;
    if (batch_[w]) return {batch_[w]->x.data() + (lo - batch_first_[w]) * c, batch_[w]->y.data() + (lo - batch_first_[w]) * t};
    if (order.empty()) return {d.features.row(lo), d.targets.data() + lo * t};
    gather(d, order, lo, hi, xb_[w], yb_[w]);
    return {xb_[w].data(), yb_[w].data()};
  }

  /// Takes step s's prefetched batch for worker w (no-op without Load<Prefetch>).
  void take_batch(std::size_t w, std::size_t s, std::size_t first) {
    if (!prefetch_) return;
    batch_[w] = &prefetch_->acquire(s);
    batch_first_[w] = first;
  }
  void return_batch(std::size_t w, std::size_t s) {
    if (!prefetch_) return;
    batch_[w] = nullptr;
    prefetch_->release(s);
  }

  /// Gradient of rows [lo, hi) into g (times scale), in `parts` passes; returns the loss sum. The
  /// L2 term is added when `decay` is set: by exactly one contribution of each step's sum.
  /// `layer_done(l)` runs when layer l's part of g is final (during the last pass; layers the
  /// passes never reach are the caller's to signal).
  template <class LayerDone>
  double gradient(std::size_t w, const data::Dataset& d, const std::vector<std::size_t>& order, std::size_t lo,
                  std::size_t hi, std::size_t parts, const float* params, float* g, float scale, bool decay,
                  LayerDone&& layer_done) {
    if (hi == lo) {
      std::fill(g, g + p_, 0.0f);
      return 0.0;
    }
    double loss = 0.0;
    for (std::size_t j = 0; j < parts; ++j) {
      const Range m = share(hi - lo, parts, j);
      if (m.hi == m.lo) continue;
      const auto [x, y] = rows_of(w, d, order, lo + m.lo, lo + m.hi);
      const float wd = decay && j == 0 ? wd_ : 0.0f;
      if (j + 1 == parts)
        loss += nets_[w]->forward_backward(params, x, y, m.hi - m.lo, g, scale, wd, j > 0, layer_done);
      else
        loss += nets_[w]->forward_backward(params, x, y, m.hi - m.lo, g, scale, wd, j > 0);
    }
    return loss;
  }
  double gradient(std::size_t w, const data::Dataset& d, const std::vector<std::size_t>& order, std::size_t lo,
                  std::size_t hi, std::size_t parts, const float* params, float* g, float scale, bool decay) {
    return gradient(w, d, order, lo, hi, parts, params, g, scale, decay, [](std::size_t) {});
  }

  /// Overlap: worker w's gradient of layer l is final for step t. Worker 0 then starts the sum over
  /// ranks of every bucket whose layers all workers have finished.
  void layer_finished(std::size_t w, std::size_t l, std::uint64_t t) {
    signalled_[w] = l;
    if (w != 0) {
      layer_count_[l].fetch_add(1, std::memory_order_release);
      return;
    }
    const std::uint64_t others = (plan_.workers - 1) * t;
    while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].low_layer == l) {
      const Bucket b = buckets_[next_bucket_++];
      for (std::size_t k = b.low_layer; k < arch_.layers.size() && arch_.layers[k].offset < b.hi; ++k)
        for (unsigned spin = 0; layer_count_[k].load(std::memory_order_acquire) < others; ++spin) {
          if (team_.failed()) throw TeamAborted{};
          plan_.cross->progress();
          if (spin > 64) std::this_thread::yield();
        }
      for (std::size_t k = 1; k < plan_.workers; ++k) add_into(grads_[0].data(), grads_[k].data(), Range{b.lo, b.hi});
      plan_.cross->start_sum(grads_[0].data() + b.lo, b.hi - b.lo, "gradient bucket");
    }
    plan_.cross->progress();
  }
  /// Signals the layers worker w's passes did not reach this step (an empty share, say).
  void finish_layers(std::size_t w, std::uint64_t t) {
    while (signalled_[w] > 0) layer_finished(w, signalled_[w] - 1, t);
  }

  EpochResult worker_epoch(std::size_t w, const data::Dataset& d, const std::vector<std::size_t>& order,
                           std::size_t epoch, std::size_t steps, ProgressLine& progress) {
    const std::size_t n = d.rows(), workers = plan_.workers, global = global_batch();
    const auto exec = Dev::exec();
#if defined(_OPENMP)
    // OpenMP's thread count is per thread: keep an OpenMP-built BLAS on this worker's core.
    if constexpr (!std::is_same_v<Dev, Cpu>) omp_set_num_threads(1);
#endif
    EpochResult res;
    for (std::size_t s = 0; s < steps; ++s) {
      const auto t0 = clock::now();
      const std::size_t rows = step_rows(s, n);  // the step's samples on all ranks
      const Range here = this_rank(s, n);        // this process's part of them
      const std::size_t first = here.lo, local_rows = here.hi - here.lo;
      const double lr = opt_.learning_rate *
                        opt_.schedule.factor(static_cast<double>(epoch) + static_cast<double>(s) / static_cast<double>(steps),
                                             static_cast<double>(epochs_));
      const std::uint64_t t = ++step_count_[w];
      res.learning_rate = lr;
      take_batch(w, s, first);
      if (plan_.period) {  // local SGD: my share, my replica, my optimizer state
        const Range mine = share(local_rows, workers, w);
        float* g = grads_[w].data();
        const auto local = static_cast<float>(1.0 / loss_normaliser(arch_.loss, std::max<std::size_t>(mine.hi - mine.lo, 1), arch_.output_dim()));
        const double loss = gradient(w, d, order, first + mine.lo, first + mine.hi, plan_.micro_batches, params_[w].data(), g, local, true);
        return_batch(w, s);
        check_finite(loss, epoch, s);
        res.loss_sum += loss;
        if (mine.hi > mine.lo) states_[w].update(exec, params_[w].data(), g, 0, p_, lr, t);
        res.compute_seconds += since(t0);
        if (t % plan_.period == 0 || (s + 1 == steps && epoch + 1 == epochs_)) {
          const auto c0 = clock::now();
          if (!comm_.all_reduce(w, params_[w].data(), p_, 1.0f / static_cast<float>(workers))) return res;
          if (plan_.cross && !average_across_ranks(w)) return res;
          res.communication_seconds += since(c0);
        }
      } else if (overlapping()) {  // buckets summed over ranks while the backward pass goes on
        const auto scale = static_cast<float>(1.0 / loss_normaliser(arch_.loss, rows, arch_.output_dim()));
        const Range mine = share(local_rows, workers, w);
        const bool decay = w == 0 && my_rank() == 0;  // the L2 term enters the sum once
        signalled_[w] = arch_.layers.size();
        if (w == 0) next_bucket_ = 0;
        losses_[w] = gradient(w, d, order, first + mine.lo, first + mine.hi, plan_.micro_batches, params_[0].data(),
                              grads_[w].data(), scale, decay, [&](std::size_t l) { layer_finished(w, l, t); });
        finish_layers(w, t);
        return_batch(w, s);
        res.compute_seconds += since(t0);
        const auto c0 = clock::now();
        if (!team_.sync()) return res;
        if (w == 0) {
          plan_.cross->finish();
          cross_loss_ = 0.0;
          for (double l : losses_) cross_loss_ += l;
          plan_.cross->sum(&cross_loss_, 1, "step loss");
        }
        if (!team_.sync()) return res;
        const double comm = since(c0);
        const auto u0 = clock::now();
        const Range slice = share_aligned(p_, workers, w);
        states_[0].update(exec, params_[0].data(), grads_[0].data(), slice.lo, slice.hi, lr, t);
        const double upd = since(u0);
        const auto c1 = clock::now();
        if (!team_.sync()) return res;
        res.communication_seconds += comm + since(c1);
        res.compute_seconds += upd;
        check_finite(cross_loss_, epoch, s);
        if (w == 0) res.loss_sum += cross_loss_;
      } else {
        const auto scale = static_cast<float>(1.0 / loss_normaliser(arch_.loss, rows, arch_.output_dim()));
        const float* params = params_[0].data();
        if (plan_.shards) {
          const Range mine = share(plan_.shards, ranks(), my_rank());
          const std::size_t step_first = s * global;
          for (std::size_t k = mine.lo + w; k < mine.hi; k += workers) {
            const Range r = share(rows, plan_.shards, k);
            losses_[k] = gradient(w, d, order, step_first + r.lo, step_first + r.hi, 1, params, grads_[k].data(), scale, k == 0);
          }
        } else {
          const Range mine = share(local_rows, workers, w);
          // the L2 term enters the sum once: through worker 0 of rank 0
          const bool decay = w == 0 && (!plan_.cross || plan_.cross->rank == 0);
          losses_[w] = gradient(w, d, order, first + mine.lo, first + mine.hi, plan_.micro_batches, params, grads_[w].data(), scale, decay);
        }
        return_batch(w, s);
        res.compute_seconds += since(t0);
        const auto c0 = clock::now();
        if (!team_.sync()) return res;
        const Range slice = share_aligned(p_, workers, w);
        double comm = since(c0);  // the barrier; a fused reduction counts as update time below
        auto u0 = clock::now();
        double step_loss = 0.0;
        for (double l : losses_) step_loss += l;  // fixed order
        if (plan_.cross && plan_.shards) {  // the fixed shard tree, across ranks where it crosses them
          if (w == 0) cross_loss_ = deterministic_sum_across_ranks();
          if (!team_.sync()) return res;
          step_loss = cross_loss_;
          comm = since(c0);
          u0 = clock::now();
          states_[0].update(exec, params_[0].data(), grads_[0].data(), slice.lo, slice.hi, lr, t);
        } else if (plan_.cross) {  // this process's sum, then the sum over ranks, then the update
          reduce_slice(slice);
          if (!team_.sync()) return res;
          if (w == 0) {
            plan_.cross->sum(grads_[0].data(), p_, "gradients");
            cross_loss_ = step_loss;
            plan_.cross->sum(&cross_loss_, 1, "step loss");
          }
          if (!team_.sync()) return res;
          step_loss = cross_loss_;
          comm = since(c0);
          u0 = clock::now();
          states_[0].update(exec, params_[0].data(), grads_[0].data(), slice.lo, slice.hi, lr, t);
        } else if (!plan_.shards && workers == 2) {  // reduce-scatter fused into the update: one pass
          states_[0].update_from(exec, params_[0].data(),
                                 GradientSum2{grads_[0].data() + slice.lo, grads_[1].data() + slice.lo}, slice.lo,
                                 slice.hi, lr, t);
        } else {
          reduce_slice(slice);
          comm = since(c0);
          u0 = clock::now();
          states_[0].update(exec, params_[0].data(), grads_[0].data(), slice.lo, slice.hi, lr, t);
        }
        const double upd = since(u0);
        const auto c1 = clock::now();
        if (!team_.sync()) return res;  // parameters complete before anyone reads them
        res.communication_seconds += comm + since(c1);
        res.compute_seconds += upd;
        check_finite(step_loss, epoch, s);
        if (w == 0) res.loss_sum += step_loss;
      }
      if (w == 0) {  // local SGD: worker 0's own loss stands for the running loss
        const std::size_t all = rows_before(s + 1, n);  // samples of the epoch so far, on all ranks
        const std::size_t seen = plan_.period ? std::max<std::size_t>(1, all / (ranks() * workers)) : all;
        progress.step(epoch, s, res.loss_sum / loss_normaliser(arch_.loss, std::max<std::size_t>(seen, 1), arch_.output_dim()));
      }
    }
    return res;
  }

  /// After the replicas of this process agree: the mean over ranks, through worker 0.
  bool average_across_ranks(std::size_t w) {
    if (w == 0) {
      plan_.cross->sum(params_[0].data(), p_, "parameters (local SGD)");
      const float inv = 1.0f / static_cast<float>(ranks());
      for (float& v : params_[0]) v *= inv;
    }
    if (!team_.sync()) return false;
    if (w != 0) std::copy(params_[0].begin(), params_[0].end(), params_[w].begin());
    return team_.sync();
  }

  /// Deterministic mode across ranks, on worker 0: the shard gradients summed by the same fixed
  /// pairwise tree as in one process, each pair whose shards live on two ranks joined by one
  /// message; rank 0 ends with the sum (shard 0 is its) and broadcasts it. Returns the step's loss,
  /// summed over the shards in shard order.
  double deterministic_sum_across_ranks() {
    const std::size_t b = plan_.shards, me = my_rank();
    const Range all{0, p_};
    for (std::size_t stride = 1; stride < b; stride *= 2) {
      std::vector<RankMessage> sends, recvs;
      std::size_t add_to = b;
      for (std::size_t k = 0; k + stride < b; k += 2 * stride) {
        const std::size_t ok = shard_owner_[k], oj = shard_owner_[k + stride];
        if (ok == me && oj == me) {
          add_into(grads_[k].data(), grads_[k + stride].data(), all);
        } else if (oj == me) {
          sends.push_back({grads_[k + stride].data(), p_, ok, static_cast<int>(k + stride)});
        } else if (ok == me) {  // at most one per level: blocks of shards are contiguous
          recvs.push_back({received_.data(), p_, oj, static_cast<int>(k + stride)});
          add_to = k;
        }
      }
      if (!sends.empty() || !recvs.empty()) plan_.cross->exchange(sends, recvs, "deterministic gradient tree");
      if (add_to < b) add_into(grads_[add_to].data(), received_.data(), all);
    }
    plan_.cross->broadcast(grads_[0].data(), p_, 0, "gradients");
    std::vector<double> loss(b, 0.0);  // each entry non-zero on one rank only: the sum is exact
    const Range mine = share(b, ranks(), me);
    for (std::size_t k = mine.lo; k < mine.hi; ++k) loss[k] = losses_[k];
    plan_.cross->sum(loss.data(), b, "shard losses");
    double total = 0.0;
    for (double l : loss) total += l;
    return total;
  }

  void check_finite(double loss, std::size_t epoch, std::size_t step) const {
    if (!std::isfinite(loss) && plan_.cross && !plan_.period)  // the global loss: the same on every rank
      throw CollectiveError(ErrorKind::runtime, "Trainer::fit: the loss became " + std::to_string(loss) + " at epoch " +
                                                    std::to_string(epoch + 1) + ", step " + std::to_string(step + 1) +
                                                    " on every rank; the model is left unchanged. Lower the learning "
                                                    "rate (" + opt_.describe() + ") or standardise the features");
    if (!std::isfinite(loss))
      fail(ErrorKind::runtime, "Trainer::fit: the loss became " + std::to_string(loss) + " at epoch " +
                                   std::to_string(epoch + 1) + ", step " + std::to_string(step + 1) +
                                   "; the model is left unchanged. Lower the learning rate (" + opt_.describe() +
                                   ") or standardise the features");
  }

  /// grads_[0][slice] = sum of all gradient buffers over the slice: worker order, or in
  /// deterministic mode a fixed pairwise tree over the shards.
  void reduce_slice(Range slice) {
    const std::size_t b = grads_.size();
    if (plan_.shards) {
      for (std::size_t stride = 1; stride < b; stride *= 2)
        for (std::size_t k = 0; k + stride < b; k += 2 * stride) add_into(grads_[k].data(), grads_[k + stride].data(), slice);
    } else {
      for (std::size_t k = 1; k < b; ++k) add_into(grads_[0].data(), grads_[k].data(), slice);
    }
  }
  static void add_into(float* TESSERA_RESTRICT a, const float* TESSERA_RESTRICT b, Range r) {
    TESSERA_SIMD
    for (std::size_t i = r.lo; i < r.hi; ++i) a[i] += b[i];
  }

  Architecture arch_;
  float wd_;
  optim::Optimizer opt_;
  ParallelPlan plan_;
  std::size_t epochs_;
  ThreadTeam team_;
  ThreadComm comm_{team_};
  std::size_t p_;
  std::vector<std::vector<float>> params_;
  std::vector<optim::State<Dev>> states_;
  std::vector<std::vector<float>> grads_;
  std::vector<double> losses_;
  double cross_loss_ = 0.0;
  struct Bucket {
    std::size_t hi, lo, low_layer;  ///< parameter range [lo, hi) and its first layer
  };
  std::vector<Bucket> buckets_;
  std::size_t next_bucket_ = 0;
  std::unique_ptr<std::atomic<std::uint64_t>[]> layer_count_;  ///< per layer: finishes by workers 1..W-1
  std::vector<std::size_t> signalled_ = std::vector<std::size_t>(plan_.workers, 0);
  std::vector<std::size_t> shard_owner_;  ///< deterministic mode across ranks: the rank of each shard
  std::vector<float> received_;
  std::vector<std::unique_ptr<Network<Dev>>> nets_;
  std::vector<std::vector<float>> xb_, yb_;
  Prefetcher<HostBatch>* prefetch_ = nullptr;
  std::vector<const HostBatch*> batch_ = std::vector<const HostBatch*>(plan_.workers, nullptr);
  std::vector<std::size_t> batch_first_ = std::vector<std::size_t>(plan_.workers, 0);
  std::vector<std::uint64_t> step_count_ = std::vector<std::uint64_t>(plan_.workers, 0);
};

}  // namespace tessera::detail
