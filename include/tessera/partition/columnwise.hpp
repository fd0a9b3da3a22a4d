// tessera/partition/columnwise.hpp - tensor-parallel dense layers on worker threads (Megatron
// style). Layers are taken in pairs: the first of a pair is split by output columns (worker w
// holds columns [c0, c1) of W and b), the second by input rows (the same rows [c0, c1) of its W;
// its bias is replicated). Forward, the column layer needs no exchange (its input is replicated)
// and the row layer's partial products are summed by one all-reduce; backward, the row layer's
// input gradient is local and the column layer's partial input gradient is summed by one
// all-reduce (skipped for the first layer: the data needs no gradient). A layer left without a
// partner (an odd count) is replicated. Every worker then holds the full output and computes the
// same loss; each updates only its own parameters.
#pragma once

#include <thrust/memory.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "tessera/comm/thread_comm.hpp"
#include "tessera/device/cpu.hpp"
#include "tessera/detail/activation_kernels.hpp"
#include "tessera/detail/elementwise.hpp"
#include "tessera/detail/loss_kernels.hpp"
#include "tessera/model/architecture.hpp"
#include "tessera/optim/update.hpp"
#include "tessera/partition/channel.hpp"
#include "tessera/partition/common.hpp"
#include "tessera/reduce/thread_team.hpp"

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
    const DenseLayer& D = arch.layers[l];
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

/// A worker's scratch for its passes: activations per layer, two gradient buffers, a column of
/// ones (bias gradients), gathered rows and targets.
template <class Dev>
struct ColumnScratch {
  using vector = typename Dev::template vector<float>;
  std::vector<vector> acts;
  std::array<vector, 2> deltas;
  vector ones;
  std::vector<float> xbuf, ybuf;
  std::size_t rows = 0;

  void reserve(const Architecture& arch, const std::vector<LocalLayer>& layers, std::size_t micro) {
    if (micro <= rows) return;
    rows = micro;
    acts.resize(layers.size());
    for (std::size_t l = 0; l < layers.size(); ++l) acts[l].resize(micro * layers[l].out);
    for (auto& d : deltas) d.resize(micro * arch.max_width());
    ones.resize(micro);
    fill(Dev::exec(), thrust::raw_pointer_cast(ones.data()), micro, 1.0f);
  }
  [[nodiscard]] std::size_t floats() const noexcept {
    std::size_t n = ones.size() + deltas[0].size() + deltas[1].size();
    for (const auto& a : acts) n += a.size();
    return n;
  }
};

/// One worker's forward (and backward) passes over rows [first, first + rows) of src in `micro`
/// parts, with its local parameters p (gradient added into g, which the caller zeroes).
/// all_reduce(buf, n) sums buf over the workers in place; every worker calls it at the same points.
/// With `outputs`, copies the outputs there. Returns the summed loss (gradient mode).
template <class Dev, class AllReduce>
double column_pass(const Architecture& arch, const std::vector<LocalLayer>& layers, const float* p, float* g,
                   ColumnScratch<Dev>& ws, const RowSource& src, std::size_t first, std::size_t rows, std::size_t micro,
                   bool forward_only, float weight_decay, float scale, float* outputs, AllReduce&& all_reduce) {
  const auto raw = [](auto& v) { return thrust::raw_pointer_cast(v.data()); };
  double loss = 0.0;
  const std::size_t parts = std::min(micro, std::max<std::size_t>(rows, 1));
  for (std::size_t part = 0; part < parts; ++part) {
    const Range mb = share(rows, parts, part);
    const std::size_t k = mb.hi - mb.lo;
    const float* x = src.features(first + mb.lo, first + mb.hi, ws.xbuf);
    // forward
    const float* in = x;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const LocalLayer& L = layers[l];
      float* out = raw(ws.acts[l]);
      Dev::gemm(false, false, k, L.out, L.in, 1.0f, in, L.in, p + L.offset, L.out, 0.0f, out, L.out);
      if (L.role == SplitRole::rows) all_reduce(out, k * L.out);
      bias_activate(Dev::exec(), L.activation, out, p + L.bias_offset(), k, L.out);
      in = out;
    }
    if (forward_only) {
      if (outputs) std::memcpy(outputs + mb.lo * arch.output_dim(), in, k * arch.output_dim() * sizeof(float));
      continue;
    }
    // loss and backward
    const float* y = src.targets(first + mb.lo, first + mb.hi, ws.ybuf);
    float* d = raw(ws.deltas[0]);
    std::size_t spare = 1;
    loss += loss_rows(Dev::exec(), arch.loss, in, y, d, k, arch.output_dim(), scale);
    for (std::size_t l = layers.size(); l-- > 0;) {
      const LocalLayer& L = layers[l];
      activation_backward(Dev::exec(), L.activation, d, raw(ws.acts[l]), k, L.out);
      const float* lin = l == 0 ? x : raw(ws.acts[l - 1]);
      Dev::gemm(true, false, L.in, L.out, k, 1.0f, lin, L.in, d, L.out, 1.0f, g + L.offset, L.out);
      Dev::gemv(true, k, L.out, 1.0f, d, L.out, raw(ws.ones), 1.0f, g + L.bias_offset());
      if (l == 0) break;
      float* prev = raw(ws.deltas[spare]);
      Dev::gemm(false, true, k, L.in, L.out, 1.0f, d, L.out, p + L.offset, L.out, 0.0f, prev, L.in);
      if (L.role == SplitRole::columns) all_reduce(prev, k * L.in);
      d = prev;
      spare ^= 1;
    }
  }
  if (!forward_only && weight_decay > 0.0f)
    for (const LocalLayer& L : layers)
      for_each_element(Dev::exec(), L.in * L.out, Axpy{g + L.offset, p + L.offset, weight_decay});
  return loss;
}

template <class Dev>
class ColumnEngine {
 public:
  using vector = typename Dev::template vector<float>;
  enum class Mode { forward, gradient, train };

  ColumnEngine(const Architecture& arch, float weight_decay, std::span<const float> init, std::size_t workers,
               const optim::Optimizer& opt, std::size_t max_rows, std::size_t micro_batches)
      : arch_(arch), wd_(weight_decay), opt_(opt), micro_(micro_batches), team_(workers), comm_(team_) {
    require(workers >= 1, ErrorKind::invalid_argument, "Partition<Columnwise>: 0 workers; a split needs at least 1");
    require(micro_batches >= 1, ErrorKind::invalid_argument, "Partition<Columnwise>: 0 micro-batches");
    require(init.size() == arch.parameter_count(), ErrorKind::shape,
            "Partition<Columnwise>: " + std::to_string(init.size()) + " parameters for a model of " +
                std::to_string(arch.parameter_count()));
    const std::size_t T = team_.size();
    for (std::size_t w = 0; w < T; ++w) {
      layers_.push_back(column_layout(arch, T, w));
      const std::size_t n = column_floats(layers_[w]);
      params_.emplace_back(n, 0.0f);
      grads_.emplace_back(n, 0.0f);
      states_.emplace_back(opt, n);
      scatter_columns(arch, layers_[w], init.data(), params_[w].data());
    }
    scratch_.resize(T);
    reserve(max_rows);
  }

  [[nodiscard]] std::size_t workers() const noexcept { return team_.size(); }

  /// "layer 0 (64 -> 128): columns | layer 1 (128 -> 10): rows".
  [[nodiscard]] std::string describe() const {
    std::string s;
    for (std::size_t l = 0; l < arch_.layers.size(); ++l) {
      const auto role = layers_[0][l].role;
      s += (l ? " | layer " : "layer ") + std::to_string(l) + " (" + std::to_string(arch_.layers[l].in) + " -> " +
           std::to_string(arch_.layers[l].out) + "): " +
           (role == SplitRole::columns ? "columns" : role == SplitRole::rows ? "rows" : "replicated");
    }
    return s;
  }

  void reserve(std::size_t rows) {
    const std::size_t micro = (std::max<std::size_t>(rows, 1) + micro_ - 1) / micro_;
    for (std::size_t w = 0; w < team_.size(); ++w) scratch_[w].reserve(arch_, layers_[w], micro);
  }

  /// The whole model's parameters, gathered from the workers.
  [[nodiscard]] std::vector<float> parameters() const { return gather(params_); }
  /// The last step's gradient, in the whole model's layout.
  [[nodiscard]] std::vector<float> gradient() const { return gather(grads_); }
  [[nodiscard]] double weight_penalty() const {
    const std::vector<float> p = parameters();
    double s = 0.0;
    for (const DenseLayer& L : arch_.layers)
      for (std::size_t i = 0; i < L.weight_count(); ++i) s += static_cast<double>(p[L.offset + i]) * static_cast<double>(p[L.offset + i]);
    return 0.5 * wd_ * s;
  }

  [[nodiscard]] std::vector<WorkerMemory> memory() const {
    std::vector<WorkerMemory> m(team_.size());
    for (std::size_t w = 0; w < team_.size(); ++w) {
      m[w].parameters = params_[w].size();
      m[w].gradients = grads_[w].size();
      m[w].optimizer_state = opt_.state_buffers() * params_[w].size();
      m[w].activations = scratch_[w].floats();
    }
    return m;
  }

  double run_once(const RowSource& src, std::size_t rows, Mode mode, float* outputs) {
    reserve(rows);
    const auto scale = static_cast<float>(1.0 / loss_normaliser(arch_.loss, rows, arch_.output_dim()));
    std::vector<double> loss(team_.size(), 0.0);
    team_.run(
        [&](std::size_t w) {
          single_threaded_kernels();
          loss[w] = step(w, src, 0, rows, mode, scale, outputs);
        },
        [] {});
    return loss[0];
  }

  using EpochOut = PartitionEpochOut;

  template <class OnStep>
  EpochOut epoch(const RowSource& src, std::size_t n, std::size_t batch, std::size_t epoch, std::size_t epochs,
                 OnStep&& on_step) {
    const std::size_t steps = (n + batch - 1) / batch;
    reserve(batch);
    EpochOut out;
    team_.run(
        [&](std::size_t w) {
          single_threaded_kernels();
          for (std::size_t s = 0; s < steps; ++s) {
            const auto t0 = clock::now();
            const std::size_t rows = std::min(batch, n - s * batch);
            const auto scale = static_cast<float>(1.0 / loss_normaliser(arch_.loss, rows, arch_.output_dim()));
            const double lr = opt_.learning_rate *
                              opt_.schedule.factor(static_cast<double>(epoch) + static_cast<double>(s) / static_cast<double>(steps),
                                                   static_cast<double>(epochs));
            comm_seconds_[w] = 0.0;
            const double loss = step(w, src, s * batch, rows, Mode::train, scale, nullptr);
            check_step_loss(loss, epoch, s, opt_.describe());
            states_[w].update(Dev::exec(), params_[w].data(), grads_[w].data(), 0, params_[w].size(), lr,
                              step_count_ + s + 1);
            if (w == 0) {
              const double all = since(t0);
              out.communication_seconds += comm_seconds_[0];
              out.compute_seconds += all - comm_seconds_[0];
              out.loss_sum += loss;
              out.learning_rate = lr;
              on_step(s, loss);
            }
          }
        },
        [] {});
    step_count_ += steps;
    return out;
  }

 private:
  using clock = std::chrono::steady_clock;
  static double since(clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); }
  static void single_threaded_kernels() {
#if defined(_OPENMP)
    if constexpr (!std::is_same_v<Dev, Cpu>) omp_set_num_threads(1);
#endif
  }

  /// Sums buf over the team in place (worker order); leaves through the failure path when a
  /// worker failed.
  void all_reduce(std::size_t w, float* buf, std::size_t count) {
    const auto t0 = clock::now();
    if (!comm_.all_reduce(w, buf, count)) throw Aborted{};
    comm_seconds_[w] += since(t0);
  }

  /// The whole-layout buffer from the workers' local buffers (replicated values from worker 0).
  [[nodiscard]] std::vector<float> gather(const std::vector<std::vector<float>>& local) const {
    std::vector<float> whole(arch_.parameter_count(), 0.0f);
    for (std::size_t w = 0; w < team_.size(); ++w) gather_columns(arch_, layers_[w], w == 0, local[w].data(), whole.data());
    return whole;
  }

  /// Worker w's forward (and backward) pass over rows [first, first + rows), in micro_ passes.
  double step(std::size_t w, const RowSource& src, std::size_t first, std::size_t rows, Mode mode, float scale,
              float* outputs) {
    if (mode != Mode::forward) std::fill(grads_[w].begin(), grads_[w].end(), 0.0f);
    return column_pass(arch_, layers_[w], params_[w].data(), grads_[w].data(), scratch_[w], src, first, rows, micro_,
                       mode == Mode::forward, wd_, scale, w == 0 ? outputs : nullptr,
                       [&](float* buf, std::size_t count) { all_reduce(w, buf, count); });
  }

  Architecture arch_;
  float wd_;
  optim::Optimizer opt_;
  std::size_t micro_;
  ThreadTeam team_;
  ThreadComm comm_;
  std::vector<std::vector<LocalLayer>> layers_;
  std::vector<std::vector<float>> params_, grads_;
  std::vector<optim::State<Dev>> states_;
  std::vector<ColumnScratch<Dev>> scratch_;
  std::vector<double> comm_seconds_ = std::vector<double>(team_.size(), 0.0);
  std::uint64_t step_count_ = 0;
};

}  // namespace tessera::detail
