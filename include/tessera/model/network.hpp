// tessera/model/network.hpp - forward and backward passes of an Architecture on a device, over
// parameters and gradients held in flat buffers. One Network is one worker's workspace: its
// activation buffers are sized once for the largest batch, so steady-state steps allocate nothing.
#pragma once

#include <thrust/memory.h>

#include <cstddef>
#include <vector>

#include "tessera/detail/activation_kernels.hpp"
#include "tessera/detail/elementwise.hpp"
#include "tessera/detail/least_squares.hpp"
#include "tessera/detail/loss_kernels.hpp"
#include "tessera/model/architecture.hpp"

namespace tessera {

template <class Dev>
class Network {
 public:
  using vector = typename Dev::template vector<float>;

  Network(const Architecture& arch, std::size_t max_rows) : arch_(arch) { reserve(max_rows); }

  [[nodiscard]] const Architecture& architecture() const noexcept { return arch_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

  /// Grows the workspace to hold batches of `rows` samples.
  void reserve(std::size_t rows) {
    if (rows <= capacity_) return;
    capacity_ = rows;
    acts_.resize(arch_.layers.size());
    for (std::size_t l = 0; l < arch_.layers.size(); ++l) acts_[l].resize(rows * arch_.layers[l].out);
    if (arch_.is_linear_least_squares()) {  // the fused path needs no deltas: only block partials
      fused_scratch_.resize(detail::least_squares_scratch(rows, arch_.input_dim));
      fused_out_.resize(arch_.input_dim + 2);
      return;
    }
    if constexpr (defer_loss) row_loss_.resize(rows);
    delta_[0].resize(rows * arch_.max_width());
    delta_[1].resize(rows * arch_.max_width());
    ones_.resize(rows);
    detail::fill(Dev::exec(), raw(ones_), rows, 1.0f);
  }

  /// Forward pass of `rows` samples x (rows x input_dim); returns the device pointer to the
  /// outputs (rows x output_dim), valid until the next call.
  const float* forward(const float* params, const float* x, std::size_t rows) {
    reserve(rows);
    const float* in = x;
    for (std::size_t l = 0; l < arch_.layers.size(); ++l) {
      const DenseLayer& L = arch_.layers[l];
      float* out = raw(acts_[l]);
      Dev::gemm(false, false, rows, L.out, L.in, 1.0f, in, L.in, params + L.offset, L.out, 0.0f, out, L.out);
      detail::bias_activate(Dev::exec(), L.activation, out, params + L.bias_offset(), rows, L.out);
      in = out;
    }
    return in;
  }

  /// Forward and backward pass: writes d(loss)/d(params) into `grads` (adds to it when
  /// `accumulate`), where the loss is the sum of the per-sample losses times `scale` (plus the L2
  /// term 0.5 * weight_decay * |W|^2 once per call when weight_decay > 0). Returns the
  /// unscaled sum of per-sample losses of the batch. `layer_done(l)` runs as soon as layer l's
  /// gradient (weights, bias and L2 term) is final, last layer first: a gradient sum can start
  /// there while the backward pass goes on.
  template <class LayerDone>
  double forward_backward(const float* params, const float* x, const float* y, std::size_t rows, float* grads,
                          float scale, float weight_decay, bool accumulate, LayerDone&& layer_done) {
    reserve(rows);
    double loss_sum = 0.0;
    if (arch_.is_linear_least_squares()) {
      fused_least_squares(params, x, y, rows, grads, scale, accumulate);
      if (weight_decay > 0.0f) add_weight_decay(arch_.layers[0], params, grads, weight_decay);
      layer_done(std::size_t{0});
      // the loss is read once the gradient (and any sum started by layer_done) is enqueued
      float loss = 0.0f;
      Dev::download(raw(fused_out_) + arch_.input_dim + 1, &loss, 1);
      loss_sum = loss;
    } else {
      const float* out = forward(params, x, rows);
      float* d = raw(delta_[0]);
      float* d_prev = raw(delta_[1]);
      if constexpr (defer_loss)
        detail::loss_rows_into(Dev::exec(), arch_.loss, out, y, d, rows, arch_.output_dim(), scale, raw(row_loss_));
      else
        loss_sum = detail::loss_rows(Dev::exec(), arch_.loss, out, y, d, rows, arch_.output_dim(), scale);
      for (std::size_t l = arch_.layers.size(); l-- > 0;) {
        const DenseLayer& L = arch_.layers[l];
        detail::activation_backward(Dev::exec(), L.activation, d, raw(acts_[l]), rows, L.out);
        const float* in = l == 0 ? x : raw(acts_[l - 1]);
        const float beta = accumulate ? 1.0f : 0.0f;
        Dev::gemm(true, false, L.in, L.out, rows, 1.0f, in, L.in, d, L.out, beta, grads + L.offset, L.out);
        Dev::gemv(true, rows, L.out, 1.0f, d, L.out, raw(ones_), beta, grads + L.bias_offset());
        if (weight_decay > 0.0f) add_weight_decay(L, params, grads, weight_decay);
        layer_done(l);
        if (l > 0) {
          Dev::gemm(false, true, rows, L.in, L.out, 1.0f, d, L.out, params + L.offset, L.out, 0.0f, d_prev, L.in);
          std::swap(d, d_prev);
        }
      }
      // the one wait of the pass, once all of it is enqueued (the loss is summed after the
      // gradient kernels in stream order)
      if constexpr (defer_loss) loss_sum = detail::sum_row_losses(Dev::exec(), raw(row_loss_), rows);
    }
    return loss_sum;
  }
  double forward_backward(const float* params, const float* x, const float* y, std::size_t rows, float* grads,
                          float scale, float weight_decay = 0.0f, bool accumulate = false) {
    return forward_backward(params, x, y, rows, grads, scale, weight_decay, accumulate, [](std::size_t) {});
  }

  /// 0.5 * weight_decay * sum of squared weights (biases excluded).
  double weight_penalty(const float* params, float weight_decay) const {
    double s = 0.0;
    for (const DenseLayer& L : arch_.layers)
      s += detail::sum_over(Dev::exec(), L.weight_count(), detail::SquareOf{params + L.offset});
    return 0.5 * weight_decay * s;
  }

  /// Sum of per-sample losses without gradients (for evaluation).
  double loss_sum(const float* params, const float* x, const float* y, std::size_t rows) {
    const float* out = forward(params, x, rows);
    return detail::loss_rows(Dev::exec(), arch_.loss, out, y, nullptr, rows, arch_.output_dim(), 1.0f);
  }

 private:
  /// On a fine-grained system (a GPU) the per-row losses stay on the device until the backward
  /// pass is enqueued: summing them at once would make the host wait for the forward pass before
  /// it could enqueue the backward one, leaving the GPU idle meanwhile.
  static constexpr bool defer_loss = detail::fine_grained<decltype(Dev::exec())>;

  static float* raw(vector& v) { return thrust::raw_pointer_cast(v.data()); }
  static double* raw(typename Dev::template vector<double>& v) { return thrust::raw_pointer_cast(v.data()); }

  /// The gradient into grads; the loss sum stays in fused_out_[d + 1].
  void fused_least_squares(const float* params, const float* x, const float* y, std::size_t rows, float* grads,
                           float scale, bool accumulate) {
    const std::size_t d = arch_.input_dim;
    float* out = raw(fused_out_);
    detail::least_squares_gradient(Dev::exec(), x, params, params + d, y, rows, d, 2.0f * scale, raw(fused_scratch_),
                                   out);
    detail::for_each_element(Dev::exec(), d + 1, detail::ScaleInto{grads, out, 1.0f, accumulate});
  }

  void add_weight_decay(const DenseLayer& L, const float* params, float* grads, float weight_decay) {
    detail::for_each_element(Dev::exec(), L.weight_count(),
                             detail::Axpy{grads + L.offset, params + L.offset, weight_decay});
  }

  Architecture arch_;
  std::size_t capacity_ = 0;
  std::vector<vector> acts_;
  vector delta_[2];
  vector ones_;
  vector fused_scratch_, fused_out_;
  typename Dev::template vector<double> row_loss_;  ///< per-row losses (defer_loss only)
};

}  // namespace tessera
