// tessera/partition/stage.hpp - the forward and backward passes of one pipeline stage: a run of
// dense layers over the stage's own parameter and gradient buffers (offsets relative to the
// stage's first parameter). Activations are kept per in-flight micro-batch in `slots` slots, so a
// stage holds only as many micro-batches as its schedule has in flight.
#pragma once

#include <thrust/memory.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "tessera/detail/activation_kernels.hpp"
#include "tessera/detail/elementwise.hpp"
#include "tessera/detail/loss_kernels.hpp"
#include "tessera/partition/plan.hpp"

namespace tessera::detail {

template <class Dev>
class StageNet {
 public:
  using vector = typename Dev::template vector<float>;

  StageNet(const Architecture& arch, const StageSpan& span, std::size_t max_rows, std::size_t slots)
      : loss_(arch.loss) {
    std::size_t widest = 0;
    for (std::size_t l = span.first_layer; l < span.end_layer; ++l) {
      DenseLayer L = arch.layers[l];
      L.offset -= span.parameter_begin;
      layers_.push_back(L);
      widest = std::max({widest, L.in, L.out});
    }
    acts_.resize(slots);
    for (auto& slot : acts_) {
      slot.resize(layers_.size());
      for (std::size_t l = 0; l < layers_.size(); ++l) slot[l].resize(max_rows * layers_[l].out);
    }
    for (auto& d : delta_) d.resize(max_rows * widest);
    ones_.resize(max_rows);
    fill(Dev::exec(), raw(ones_), max_rows, 1.0f);
  }

  [[nodiscard]] std::size_t in_width() const noexcept { return layers_.front().in; }
  [[nodiscard]] std::size_t out_width() const noexcept { return layers_.back().out; }
  [[nodiscard]] std::size_t slots() const noexcept { return acts_.size(); }
  /// Floats held for activations and backward scratch.
  [[nodiscard]] std::size_t activation_floats() const noexcept {
    std::size_t n = delta_[0].size() + delta_[1].size() + ones_.size();
    for (const auto& slot : acts_)
      for (const auto& a : slot) n += a.size();
    return n;
  }

  /// Forward pass of `rows` rows of x (rows x in_width) into `slot`; returns the stage's output.
  const float* forward(const float* params, std::size_t slot, const float* x, std::size_t rows) {
    const float* in = x;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const DenseLayer& L = layers_[l];
      float* out = raw(acts_[slot][l]);
      Dev::gemm(false, false, rows, L.out, L.in, 1.0f, in, L.in, params + L.offset, L.out, 0.0f, out, L.out);
      bias_activate(Dev::exec(), L.activation, out, params + L.bias_offset(), rows, L.out);
      in = out;
    }
    return in;
  }

  /// Last stage only: the loss of the slot's outputs against y (sum over rows) and its gradient
  /// times `scale`, into the stage's own buffer (returned through `d`).
  double loss(std::size_t slot, const float* y, std::size_t rows, float scale, float*& d) {
    d = raw(delta_[0]);
    return loss_rows(Dev::exec(), loss_, raw(acts_[slot].back()), y, d, rows, out_width(), scale);
  }

  /// Backward pass of the slot's micro-batch: `d` is the gradient at the stage's output (rows x
  /// out_width; overwritten), x the micro-batch's input. Adds the parameter gradient into grads and
  /// writes the gradient at the input into d_in (when not null).
  void backward(const float* params, std::size_t slot, const float* x, float* d, std::size_t rows, float* grads,
                float* d_in) {
    std::size_t k = d == raw(delta_[0]) ? 1 : 0;  // the scratch buffer that d is not
    for (std::size_t l = layers_.size(); l-- > 0;) {
      const DenseLayer& L = layers_[l];
      activation_backward(Dev::exec(), L.activation, d, raw(acts_[slot][l]), rows, L.out);
      const float* in = l == 0 ? x : raw(acts_[slot][l - 1]);
      Dev::gemm(true, false, L.in, L.out, rows, 1.0f, in, L.in, d, L.out, 1.0f, grads + L.offset, L.out);
      Dev::gemv(true, rows, L.out, 1.0f, d, L.out, raw(ones_), 1.0f, grads + L.bias_offset());
      float* prev = l > 0 ? raw(delta_[k]) : d_in;
      if (prev) Dev::gemm(false, true, rows, L.in, L.out, 1.0f, d, L.out, params + L.offset, L.out, 0.0f, prev, L.in);
      if (l > 0) {
        d = prev;
        k ^= 1;
      }
    }
  }

  /// grads += weight_decay * W over the stage's weights (biases excluded).
  void add_weight_decay(const float* params, float* grads, float weight_decay) const {
    for (const DenseLayer& L : layers_)
      for_each_element(Dev::exec(), L.weight_count(), Axpy{grads + L.offset, params + L.offset, weight_decay});
  }
  /// Sum of squared weights of the stage.
  [[nodiscard]] double squared_weights(const float* params) const {
    double s = 0.0;
    for (const DenseLayer& L : layers_) s += sum_over(Dev::exec(), L.weight_count(), SquareOf{params + L.offset});
    return s;
  }

 private:
  static float* raw(vector& v) { return thrust::raw_pointer_cast(v.data()); }

  Loss loss_;
  std::vector<DenseLayer> layers_;
  std::vector<std::vector<vector>> acts_;
  vector delta_[2];
  vector ones_;
};

}  // namespace tessera::detail
