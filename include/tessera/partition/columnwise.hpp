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
    const std::size_t L = arch.layers.size(), T = team_.size();
    layers_.assign(T, {});
    for (std::size_t w = 0; w < T; ++w) {
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
          x.lo = layers_[w][l - 1].lo;
          x.hi = layers_[w][l - 1].hi;
          x.in = x.hi - x.lo;
          x.out = D.out;
        } else {
          x.in = D.in;
          x.out = D.out;
          x.hi = D.out;
        }
        x.offset = offset;
        offset += x.parameter_count();
        layers_[w].push_back(x);
      }
      params_.emplace_back(offset, 0.0f);
      grads_.emplace_back(offset, 0.0f);
      states_.emplace_back(opt, offset);
      scatter(w, init.data(), params_[w].data());
    }
    acts_.assign(T, std::vector<vector>(L));
    deltas_.assign(T, {});
    ones_.assign(T, {});
    xbuf_.assign(T, {});
    ybuf_.assign(T, {});
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
    if (micro <= rows_) return;
    rows_ = micro;
    for (std::size_t w = 0; w < team_.size(); ++w) {
      for (std::size_t l = 0; l < arch_.layers.size(); ++l) acts_[w][l].resize(micro * layers_[w][l].out);
      for (auto& d : deltas_[w]) d.resize(micro * arch_.max_width());
      ones_[w].resize(micro);
      fill(Dev::exec(), raw(ones_[w]), micro, 1.0f);
    }
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
      for (const auto& a : acts_[w]) m[w].activations += a.size();
      for (const auto& d : deltas_[w]) m[w].activations += d.size();
      m[w].activations += ones_[w].size();
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

  struct EpochOut {
    double loss_sum = 0.0, compute_seconds = 0.0, communication_seconds = 0.0, learning_rate = 0.0;
    PipelineStats stats;
  };

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
  static float* raw(vector& v) { return thrust::raw_pointer_cast(v.data()); }
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

  /// Worker w's part of whole-layout values `whole` into its local layout `local`.
  void scatter(std::size_t w, const float* whole, float* local) const {
    for (std::size_t l = 0; l < arch_.layers.size(); ++l) {
      const DenseLayer& D = arch_.layers[l];
      const LocalLayer& x = layers_[w][l];
      for (std::size_t i = 0; i < x.in; ++i)
        for (std::size_t j = 0; j < x.out; ++j) local[x.offset + i * x.out + j] = whole[D.offset + index(x, D, i, j)];
      for (std::size_t j = 0; j < x.out; ++j)
        local[x.bias_offset() + j] = whole[D.bias_offset() + (x.role == SplitRole::columns ? x.lo + j : j)];
    }
  }
  /// Position in the whole layer's weights of local weight (i, j).
  static std::size_t index(const LocalLayer& x, const DenseLayer& D, std::size_t i, std::size_t j) {
    switch (x.role) {
      case SplitRole::columns: return i * D.out + x.lo + j;
      case SplitRole::rows: return (x.lo + i) * D.out + j;
      case SplitRole::replicated: break;
    }
    return i * D.out + j;
  }
  /// The whole-layout buffer from the workers' local buffers (replicated values from worker 0).
  [[nodiscard]] std::vector<float> gather(const std::vector<std::vector<float>>& local) const {
    std::vector<float> whole(arch_.parameter_count(), 0.0f);
    for (std::size_t w = team_.size(); w-- > 0;)
      for (std::size_t l = 0; l < arch_.layers.size(); ++l) {
        const DenseLayer& D = arch_.layers[l];
        const LocalLayer& x = layers_[w][l];
        if (x.role == SplitRole::replicated && w != 0) continue;
        for (std::size_t i = 0; i < x.in; ++i)
          for (std::size_t j = 0; j < x.out; ++j) whole[D.offset + index(x, D, i, j)] = local[w][x.offset + i * x.out + j];
        if (x.role == SplitRole::rows && w != 0) continue;  // the replicated bias: worker 0's
        for (std::size_t j = 0; j < x.out; ++j)
          whole[D.bias_offset() + (x.role == SplitRole::columns ? x.lo + j : j)] = local[w][x.bias_offset() + j];
      }
    return whole;
  }

  /// Worker w's forward (and backward) pass over rows [first, first + rows), in micro_ passes.
  double step(std::size_t w, const RowSource& src, std::size_t first, std::size_t rows, Mode mode, float scale,
              float* outputs) {
    const std::vector<LocalLayer>& layers = layers_[w];
    const float* p = params_[w].data();
    float* g = grads_[w].data();
    if (mode != Mode::forward) std::fill(grads_[w].begin(), grads_[w].end(), 0.0f);
    double loss = 0.0;
    const std::size_t parts = std::min(micro_, std::max<std::size_t>(rows, 1));
    for (std::size_t part = 0; part < parts; ++part) {
      const Range mb = share(rows, parts, part);
      const std::size_t k = mb.hi - mb.lo;
      const float* x = src.features(first + mb.lo, first + mb.hi, xbuf_[w]);
      // forward
      const float* in = x;
      for (std::size_t l = 0; l < layers.size(); ++l) {
        const LocalLayer& L = layers[l];
        float* out = raw(acts_[w][l]);
        Dev::gemm(false, false, k, L.out, L.in, 1.0f, in, L.in, p + L.offset, L.out, 0.0f, out, L.out);
        if (L.role == SplitRole::rows) all_reduce(w, out, k * L.out);
        bias_activate(Dev::exec(), L.activation, out, p + L.bias_offset(), k, L.out);
        in = out;
      }
      if (mode == Mode::forward) {
        if (w == 0 && outputs) std::memcpy(outputs + mb.lo * arch_.output_dim(), in, k * arch_.output_dim() * sizeof(float));
        continue;
      }
      // loss and backward
      const float* y = src.targets(first + mb.lo, first + mb.hi, ybuf_[w]);
      float* d = raw(deltas_[w][0]);
      std::size_t spare = 1;
      loss += loss_rows(Dev::exec(), arch_.loss, in, y, d, k, arch_.output_dim(), scale);
      for (std::size_t l = layers.size(); l-- > 0;) {
        const LocalLayer& L = layers[l];
        activation_backward(Dev::exec(), L.activation, d, raw(acts_[w][l]), k, L.out);
        const float* lin = l == 0 ? x : raw(acts_[w][l - 1]);
        Dev::gemm(true, false, L.in, L.out, k, 1.0f, lin, L.in, d, L.out, 1.0f, g + L.offset, L.out);
        Dev::gemv(true, k, L.out, 1.0f, d, L.out, raw(ones_[w]), 1.0f, g + L.bias_offset());
        if (l == 0) break;
        float* prev = raw(deltas_[w][spare]);
        Dev::gemm(false, true, k, L.in, L.out, 1.0f, d, L.out, p + L.offset, L.out, 0.0f, prev, L.in);
        if (L.role == SplitRole::columns) all_reduce(w, prev, k * L.in);
        d = prev;
        spare ^= 1;
      }
    }
    if (mode != Mode::forward && wd_ > 0.0f)
      for (const LocalLayer& L : layers)
        for_each_element(Dev::exec(), L.in * L.out, Axpy{g + L.offset, p + L.offset, wd_});
    return loss;
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
  std::vector<std::vector<vector>> acts_;
  std::vector<std::array<vector, 2>> deltas_;
  std::vector<vector> ones_;
  std::vector<std::vector<float>> xbuf_, ybuf_;
  std::vector<double> comm_seconds_ = std::vector<double>(team_.size(), 0.0);
  std::size_t rows_ = 0;
  std::uint64_t step_count_ = 0;
};

}  // namespace tessera::detail
