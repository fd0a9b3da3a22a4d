// tessera/engine/columnwise.hpp - Partition<Columnwise>: tensor-parallel dense layers (Megatron
// style), written once for every communicator (worker threads, MPI ranks of one worker each).
//
// Layers are taken in pairs: the first of a pair is split by output columns (worker w holds
// columns [c0, c1) of W and b), the second by input rows (the same rows [c0, c1) of its W; its
// bias is replicated). Forward, the column layer needs no exchange (its input is replicated) and
// the row layer's partial products are summed by one all-reduce; backward, the row layer's input
// gradient is local and the column layer's partial input gradient is summed by one all-reduce
// (skipped for the first layer: the data needs no gradient). A layer left without a partner (an
// odd count) is replicated. Every worker then holds the full output and computes the same loss;
// each updates only its own parameters. The passes are the model's own (model/network.hpp) over
// the worker's transformed layer list.
#pragma once

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "tessera/comm/concepts.hpp"
#include "tessera/engine/common.hpp"
#include "tessera/engine/lanes.hpp"
#include "tessera/engine/replicate.hpp"
#include "tessera/model/network.hpp"
#include "tessera/optim/update.hpp"
#include "tessera/train/timeline.hpp"

namespace tessera::detail {

enum class SplitRole { columns, rows, replicated };

/// Worker w's part of one layer: `in` x `out` local weights at `offset` in its buffer, then its bias.
struct LocalLayer {
  SplitRole role = SplitRole::replicated;
  std::size_t in = 0, out = 0, offset = 0;
  std::size_t lo = 0, hi = 0;  ///< the columns (columns) or rows (rows) of the whole layer it holds
  Activation activation = Activation::identity;
  [[nodiscard]] std::size_t bias_offset() const noexcept { return offset + in * out; }
  [[nodiscard]] std::size_t parameter_count() const noexcept { return in * out + out; }
};

/// Worker w of T's part of every layer: layers in pairs, the first split by output columns, the
/// second by the same input rows, a layer without a partner replicated; offsets in w's own buffer.
inline std::vector<LocalLayer> column_layout(const Architecture& arch, std::size_t T, std::size_t w) {
  const std::size_t L = arch.layers.size();
  std::vector<LocalLayer> layers;
  std::size_t offset = 0;
  for (std::size_t l = 0; l < L; ++l) {
    const Layer& D = arch.layers[l];
    if (!D.is_dense())
      fail(ErrorKind::invalid_argument,
           "Partition<Columnwise>: layer " + std::to_string(l) + " (" + D.op->describe() +
               ") does not split by columns; the column split takes dense layers only (use Partition<Replicate> "
               "or Partition<Layerwise>)");
    LocalLayer x;
    x.activation = D.activation;
    x.role = l % 2 == 0 ? (l + 1 < L ? SplitRole::columns : SplitRole::replicated) : SplitRole::rows;
    if (x.role == SplitRole::columns) {
      require(D.out >= T, ErrorKind::invalid_argument,
              "Partition<Columnwise>: layer " + std::to_string(l) + " (" + std::to_string(D.in) + " -> " +
                  std::to_string(D.out) + ") has " + std::to_string(D.out) + " outputs, too few to split across " +
                  std::to_string(T) + " workers; use at most " + std::to_string(D.out) + " workers");
      const Range c = share(D.out, T, w);
      x.lo = c.lo;
      x.hi = c.hi;
      x.in = D.in;
      x.out = c.hi - c.lo;
    } else if (x.role == SplitRole::rows) {
      x.lo = layers[l - 1].lo;
      x.hi = layers[l - 1].hi;
      x.in = x.hi - x.lo;
      x.out = D.out;
    } else {
      x.in = D.in;
      x.out = D.out;
      x.hi = D.out;
    }
    x.offset = offset;
    offset += x.parameter_count();
    layers.push_back(x);
  }
  return layers;
}

/// Floats of a worker's local buffer.
inline std::size_t column_floats(const std::vector<LocalLayer>& layers) {
  return layers.empty() ? 0 : layers.back().offset + layers.back().parameter_count();
}

/// Position in the whole layer's weights of local weight (i, j).
inline std::size_t column_index(const LocalLayer& x, const DenseLayer& D, std::size_t i, std::size_t j) {
  switch (x.role) {
    case SplitRole::columns: return i * D.out + x.lo + j;
    case SplitRole::rows: return (x.lo + i) * D.out + j;
    case SplitRole::replicated: break;
  }
  return i * D.out + j;
}

/// A worker's part of whole-layout values `whole` into its local layout `local`.
inline void scatter_columns(const Architecture& arch, const std::vector<LocalLayer>& layers, const float* whole,
                            float* local) {
  for (std::size_t l = 0; l < arch.layers.size(); ++l) {
    const DenseLayer& D = arch.layers[l];
    const LocalLayer& x = layers[l];
    for (std::size_t i = 0; i < x.in; ++i)
      for (std::size_t j = 0; j < x.out; ++j) local[x.offset + i * x.out + j] = whole[D.offset + column_index(x, D, i, j)];
    for (std::size_t j = 0; j < x.out; ++j)
      local[x.bias_offset() + j] = whole[D.bias_offset() + (x.role == SplitRole::columns ? x.lo + j : j)];
  }
}

/// Writes a worker's local values into their places in `whole`; replicated values (a replicated
/// layer, a row layer's bias) only from the first worker, so the workers' parts are disjoint.
inline void gather_columns(const Architecture& arch, const std::vector<LocalLayer>& layers, bool first_worker,
                           const float* local, float* whole) {
  for (std::size_t l = 0; l < arch.layers.size(); ++l) {
    const DenseLayer& D = arch.layers[l];
    const LocalLayer& x = layers[l];
    if (x.role == SplitRole::replicated && !first_worker) continue;
    for (std::size_t i = 0; i < x.in; ++i)
      for (std::size_t j = 0; j < x.out; ++j) whole[D.offset + column_index(x, D, i, j)] = local[x.offset + i * x.out + j];
    if (x.role == SplitRole::rows && !first_worker) continue;
    for (std::size_t j = 0; j < x.out; ++j)
      whole[D.bias_offset() + (x.role == SplitRole::columns ? x.lo + j : j)] = local[x.bias_offset() + j];
  }
}

/// A worker's part of the model as the layers the one forward/backward pass runs: each layer its
/// columns or rows, with the partial sums a column split needs.
inline std::vector<LayerView> column_views(const std::vector<LocalLayer>& layers) {
  std::vector<LayerView> v;
  for (const LocalLayer& x : layers)
    v.push_back({x.in, x.out, x.offset, x.activation, x.role == SplitRole::rows, x.role == SplitRole::columns});
  return v;
}

template <class Dev, class Group>
class ColumnEngine {
 public:
  using Comm = typename Lanes<Group>::Comm;
  static_assert(comm::Collectives<Comm>, "tessera: Partition<Columnwise> needs a communicator with collectives "
                                         "(comm::Collectives); this Reduce choice's communicator lacks some");
  static_assert(std::is_same_v<typename Dev::template vector<float>, std::vector<float>>,
                "tessera: Partition<Columnwise> runs on devices whose memory is the host's (Device<Cpu>)");
  enum class Mode { forward, gradient, train };

  ColumnEngine(Group& group, const Architecture& arch, float weight_decay, std::span<const float> init,
               const optim::Optimizer& opt, std::size_t max_rows, std::size_t micro_batches, std::size_t epochs)
      : lanes_(group), arch_(arch), wd_(weight_decay), opt_(opt), micro_(micro_batches), epochs_(epochs) {
    require(micro_batches >= 1, ErrorKind::invalid_argument, "Partition<Columnwise>: 0 micro-batches");
    require(init.size() == arch.parameter_count(), ErrorKind::shape,
            "Partition<Columnwise>: " + std::to_string(init.size()) + " parameters for a model of " +
                std::to_string(arch.parameter_count()));
    for (std::size_t w = 0; w < lanes_.size(); ++w) {
      auto l = std::make_unique<LaneState>(group.device(w));
      l->layers = column_layout(arch, lanes_.workers(), lanes_.comm(w).rank());
      const std::size_t n = column_floats(l->layers);
      l->params.assign(n, 0.0f);
      l->grads.assign(n, 0.0f);
      l->state = std::make_unique<optim::State<Dev>>(opt, n);
      scatter_columns(arch, l->layers, init.data(), l->params.data());
      l->net = std::make_unique<Network<Dev>>(column_views(l->layers), arch.objective(), 1);
      lane_.push_back(std::move(l));
    }
    reserve(max_rows);
  }

  [[nodiscard]] std::size_t workers() const noexcept { return lanes_.workers(); }
  [[nodiscard]] std::size_t steps_per_epoch(std::size_t n) const { return (n + batch_ - 1) / batch_; }

  /// "layer 0 (64 -> 128): columns | layer 1 (128 -> 10): rows".
  [[nodiscard]] std::string describe() const {
    std::string s;
    for (std::size_t l = 0; l < arch_.layers.size(); ++l) {
      const auto role = lane_[0]->layers[l].role;
      s += (l ? " | layer " : "layer ") + std::to_string(l) + " (" + std::to_string(arch_.layers[l].in) + " -> " +
           std::to_string(arch_.layers[l].out) + "): " +
           (role == SplitRole::columns ? "columns" : role == SplitRole::rows ? "rows" : "replicated");
    }
    return s;
  }

  /// "rank 2 (columns of 3 ranks)": this process's part, for messages across processes.
  [[nodiscard]] std::string where() const {
    return "rank " + std::to_string(lanes_.comm(0).rank()) + " (columns of " + std::to_string(workers()) + " ranks)";
  }

  void reserve(std::size_t rows) {
    batch_ = std::max(batch_, std::max<std::size_t>(rows, 1));
    for (auto& l : lane_) l->net->reserve((batch_ + micro_ - 1) / micro_);
  }

  /// The whole model's parameters, gathered from the workers.
  [[nodiscard]] std::vector<float> parameters() { return gather(false); }
  /// The last step's gradient, in the whole model's layout.
  [[nodiscard]] std::vector<float> gradient() { return gather(true); }
  [[nodiscard]] double weight_penalty() { return weight_penalty_of(arch_, parameters(), wd_); }

  /// What every worker holds (floats), indexed by worker. Collective across processes.
  [[nodiscard]] std::vector<WorkerMemory> memory() {
    return lanes_.memory([&](std::size_t w) {
      const LaneState& l = *lane_[w];
      return WorkerMemory{l.params.size(), l.grads.size(), opt_.state_buffers() * l.params.size(),
                          l.net->activation_floats() + l.xbuf.capacity() + l.ybuf.capacity()};
    });
  }

  /// One pass on rows [0, rows) of src; every worker computes the whole outputs.
  double run_once(const RowSource& src, std::size_t rows, Mode mode, float* outputs) {
    reserve(rows);
    const auto scale = static_cast<float>(1.0 / loss_normaliser(arch_.loss, rows, arch_.output_dim()));
    double loss = 0.0;
    lanes_.run([&](std::size_t w) {
      lane_threads<Dev>();
      const double l = step(w, src, 0, rows, mode, scale, w == 0 ? outputs : nullptr);
      if (w == 0) loss = l;
    });
    return loss;
  }

  /// Steps [span.lo, span.hi) of a training epoch, going on from `so_far`.
  template <class OnStep>
  EpochResult epoch(const data::Dataset& d, const std::vector<std::size_t>& order, std::size_t epoch, Range span,
                    const EpochResult& so_far, OnStep&& on_step) {
    const RowSource src = rows_of(d, order);
    const std::size_t n = d.rows(), steps = steps_per_epoch(n);
    span.hi = std::min(span.hi, steps);
    EpochResult out = so_far;
    lanes_.run([&](std::size_t w) {
      LaneState& l = *lane_[w];
      [[maybe_unused]] auto bound = l.device.bind();
      lane_threads<Dev>();
      for (std::size_t s = span.lo; s < span.hi; ++s) {
        const auto t0 = Clock::now();
        const std::size_t rows = std::min(batch_, n - s * batch_);
        const auto scale = static_cast<float>(1.0 / loss_normaliser(arch_.loss, rows, arch_.output_dim()));
        const double lr = learning_rate(opt_, epoch, s, steps, epochs_);
        l.comm_seconds = 0.0;
        const double loss = step(w, src, s * batch_, rows, Mode::train, scale, nullptr);
        // the outputs are the same bits on every worker: so is the loss
        if (!std::isfinite(loss)) loss_diverged(loss, epoch, s, opt_, lanes_.group().processes() > 1);
        std::optional<TimelineSpan> timeline_update(std::in_place, "update", w, "optimizer");
        l.state->update(Dev::exec(), l.params.data(), l.grads.data(), 0, l.params.size(), lr, ++l.steps);
        timeline_update.reset();
        if (w == 0) {
          const double all = seconds_since(t0);
          out.communication_seconds += l.comm_seconds;
          out.compute_seconds += all - l.comm_seconds;
          out.loss_sum += loss;
          out.learning_rate = lr;
          const std::size_t seen = std::min(n, (s + 1) * batch_);
          on_step(s, out.loss_sum / loss_normaliser(arch_.loss, seen, arch_.output_dim()));
        }
      }
    });
    return out;
  }

  /// The training state in the whole model's layout. Collective across processes.
  [[nodiscard]] TrainingState state() {
    TrainingState t;
    t.parameters = parameters();
    t.steps = lane_[0]->steps;
    for (std::size_t b = 0; b < opt_.state_buffers(); ++b)
      t.moments.push_back(lanes_.gather(
          arch_.parameter_count(),
          [&](std::size_t w, float* whole) {
            const LaneState& l = *lane_[w];
            gather_columns(arch_, l.layers, lanes_.comm(w).rank() == 0, l.state->buffer(b).data(), whole);
          },
          "optimizer state of the column split"));
    return t;
  }

  /// Takes up a training state (of any number of workers or strategy): before the first step.
  void restore(const TrainingState& t) {
    check_state(t, arch_.parameter_count(), opt_);
    for (auto& lp : lane_) {
      LaneState& l = *lp;
      l.steps = t.steps;
      scatter_columns(arch_, l.layers, t.parameters.data(), l.params.data());
      for (std::size_t b = 0; b < t.moments.size(); ++b)
        scatter_columns(arch_, l.layers, t.moments[b].data(), l.state->buffer(b).data());
    }
  }

 private:
  struct LaneState {
    explicit LaneState(int index) : device(index) {}
    typename Dev::Lane device;
    std::vector<LocalLayer> layers;
    std::vector<float> params, grads, xbuf, ybuf;
    std::unique_ptr<optim::State<Dev>> state;
    std::unique_ptr<Network<Dev>> net;
    double comm_seconds = 0.0;
    std::uint64_t steps = 0;
  };

  /// Worker w's forward (and backward) pass over rows [first, first + rows), in micro_ passes.
  double step(std::size_t w, const RowSource& src, std::size_t first, std::size_t rows, Mode mode, float scale,
              float* outputs) {
    LaneState& l = *lane_[w];
    Comm& c = lanes_.comm(w);
    const auto sum = [&](float* buf, std::size_t count) {
      const auto t0 = Clock::now();
      const TimelineSpan timeline_sum("all-reduce", w, "communication");
      c.all_reduce(buf, buf, count, "Partition<Columnwise> partial products");
      l.comm_seconds += seconds_since(t0);
    };
    if (mode != Mode::forward) std::fill(l.grads.begin(), l.grads.end(), 0.0f);
    double loss = 0.0;
    const std::size_t parts = std::min(micro_, std::max<std::size_t>(rows, 1));
    for (std::size_t part = 0; part < parts; ++part) {
      const Range mb = share(rows, parts, part);
      const std::size_t k = mb.hi - mb.lo;
      const float* x = src.features(first + mb.lo, first + mb.hi, l.xbuf);
      const TimelineSpan timeline_compute("compute", w, "compute", static_cast<int>(part));
      const float* out = l.net->forward(l.params.data(), x, k, 0, sum);
      if (mode == Mode::forward) {
        if (outputs) std::memcpy(outputs + mb.lo * arch_.output_dim(), out, k * arch_.output_dim() * sizeof(float));
        continue;
      }
      const float* y = src.targets(first + mb.lo, first + mb.hi, l.ybuf);
      float* d = nullptr;
      loss += l.net->loss(0, y, k, scale, d);
      l.net->backward(l.params.data(), 0, x, d, k, l.grads.data(), nullptr, true, 0.0f, NoLayerDone{}, sum);
    }
    if (mode != Mode::forward && wd_ > 0.0f) l.net->add_weight_decay(l.params.data(), l.grads.data(), wd_);
    return loss;
  }

  /// The whole-layout buffer from the workers' local buffers (replicated values from worker 0):
  /// each worker writes its disjoint part, and one all-reduce (exact: one non-zero term per value)
  /// gives every worker the whole.
  std::vector<float> gather(bool gradients) {
    return lanes_.gather(
        arch_.parameter_count(),
        [&](std::size_t w, float* whole) {
          const LaneState& l = *lane_[w];
          gather_columns(arch_, l.layers, lanes_.comm(w).rank() == 0, (gradients ? l.grads : l.params).data(), whole);
        },
        gradients ? "gradients of the column split" : "parameters of the column split");
  }

  Lanes<Group> lanes_;
  Architecture arch_;
  float wd_;
  optim::Optimizer opt_;
  std::size_t micro_, epochs_, batch_ = 1;
  std::vector<std::unique_ptr<LaneState>> lane_;
};

}  // namespace tessera::detail
