// tessera/model/network.hpp - the one forward and backward pass of tessera: a run of layers (dense
// ones, and kinds of the Layer concept) on a device, over parameters and gradients in flat buffers. The whole model runs all its layers;
// a pipeline stage runs a sub-range of them (with one activation slot per micro-batch in flight);
// a column split runs a transformed list (each layer its columns or rows, with partial sums to
// all-reduce). One Network is one worker's workspace: its buffers are sized once for the largest
// batch, so steady-state steps allocate nothing.
#pragma once

#include <thrust/memory.h>

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

#include "tessera/detail/activation_kernels.hpp"
#include "tessera/detail/elementwise.hpp"
#include "tessera/detail/least_squares.hpp"
#include "tessera/detail/loss_kernels.hpp"
#include "tessera/device/concepts.hpp"
#include "tessera/model/architecture.hpp"

namespace tessera {

/// One layer as a worker holds it. A dense one: `in` x `out` weights (row-major) at `offset` of the
/// worker's flat buffer, then `out` biases. A column split marks a row-split layer, whose product
/// is a partial sum (`sum_output`: all-reduced before bias and activation), and a column-split
/// layer, whose gradient at the input is one (`sum_input_gradient`). A layer of another kind
/// (`op`) has its parameters at `offset`.
struct LayerView {
  ///@{
  /// Input width, output width, and index of W in the worker's flat buffer.
  std::size_t in = 0, out = 0, offset = 0;
  ///@}
  /// Applied after the bias.
  Activation activation = Activation::identity;
  ///@{
  /// Whether the product is a partial sum, and the input gradient a sum, over the column split.
  bool sum_output = false, sum_input_gradient = false;
  ///@}
  /// The kind of a layer other than dense, or null.
  std::shared_ptr<const LayerOp> op{};
  /// The layer's index in the whole model (keys its random draws).
  std::uint32_t index = 0;

  /// Parameters under weight decay (dense: the weights).
  [[nodiscard]] std::size_t weight_count() const { return op ? op->decayed_count(in) : in * out; }
  /// Index of the first bias (dense).
  [[nodiscard]] std::size_t bias_offset() const noexcept { return offset + in * out; }
  /// All its parameters.
  [[nodiscard]] std::size_t parameter_count() const { return op ? op->parameter_count(in) : in * out + out; }
  /// Floats per row its forward pass keeps for the backward one.
  [[nodiscard]] std::size_t saved_per_row() const { return op ? op->saved_per_row(in) : 0; }
};

/// Layers [first, end) of `arch`, offsets relative to the first one's.
inline std::vector<LayerView> layer_views(const Architecture& arch, std::size_t first, std::size_t end) {
  std::vector<LayerView> v;
  const std::size_t base = first < arch.layers.size() ? arch.layers[first].offset : 0;
  for (std::size_t l = first; l < end; ++l) {
    const Layer& L = arch.layers[l];
    v.push_back({L.in, L.out, L.offset - base, L.activation, false, false, L.op, static_cast<std::uint32_t>(l)});
  }
  return v;
}

namespace detail {
/// No partial sums (every layer whole on this worker).
struct NoSum {
  void operator()(float*, std::size_t) const noexcept {}
};
struct NoLayerDone {
  void operator()(std::size_t) const noexcept {}
};
}  // namespace detail

/// The forward and backward passes of a stack of layers on device `Dev`, with the activations of
/// `slots` micro-batches of up to capacity() rows.
template <class Dev>
class Network {
 public:
  /// The device's float vector.
  using vector = typename Dev::template vector<float>;

  /// Layers as this worker holds them; `loss` applies after the last one when this network
  /// holds the model's output; `slots` activation sets (micro-batches in flight).
  Network(std::vector<LayerView> layers, LossSpec loss, std::size_t max_rows, std::size_t slots = 1)
      : Network(std::move(layers), loss, max_rows, slots, false) {}
  /// The whole model: one linear output on squared error takes the fused least-squares kernel.
  Network(const Architecture& arch, std::size_t max_rows)
      : Network(layer_views(arch, 0, arch.layers.size()), arch.objective(), max_rows, 1, arch.is_linear_least_squares()) {}

  /// Input width of the first layer.
  [[nodiscard]] std::size_t in_width() const noexcept { return layers_.front().in; }
  /// Output width of the last layer.
  [[nodiscard]] std::size_t out_width() const noexcept { return layers_.back().out; }
  /// Activation sets (micro-batches in flight).
  [[nodiscard]] std::size_t slots() const noexcept { return acts_.size(); }
  /// Rows each activation set holds.
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  /// The layers as this worker holds them.
  [[nodiscard]] const std::vector<LayerView>& layers() const noexcept { return layers_; }
  /// Floats held for activations and backward scratch.
  [[nodiscard]] std::size_t activation_floats() const noexcept {
    std::size_t n = delta_[0].size() + delta_[1].size() + ones_.size() + fused_scratch_.size();
    for (const auto& slot : acts_)
      for (const auto& a : slot) n += a.size();
    for (const auto& slot : saved_)
      for (const auto& a : slot) n += a.size();
    return n;
  }

  /// As above; `fused` takes the fused least-squares kernel (one linear layer on squared error).
  Network(std::vector<LayerView> layers, LossSpec loss, std::size_t max_rows, std::size_t slots, bool fused)
      : layers_(std::move(layers)),
        loss_(std::move(loss)),
        fused_(fused),
        acts_(std::max<std::size_t>(slots, 1)),
        saved_(std::max<std::size_t>(slots, 1)),
        draws_(std::max<std::size_t>(slots, 1)) {
    for (const LayerView& L : layers_) {
      widest_ = std::max({widest_, L.in, L.out});
      detail::require(!L.op || L.op->builtin() != detail::BuiltinLayer::none || detail::host_memory<Dev>,
                      ErrorKind::invalid_argument,
                      std::string("layer ") + std::to_string(L.index) + " (" + (L.op ? L.op->describe() : "") +
                          ") has host kernels only; on " + Dev::name +
                          " use the shipped layer kinds, or a device whose memory the host reads");
    }
    if (loss_.op) {
      detail::require(loss_.op->builtin() != detail::BuiltinLoss::none || detail::host_memory<Dev>,
                      ErrorKind::invalid_argument,
                      "the loss " + loss_.op->describe() + " has a host kernel only; on " + std::string(Dev::name) +
                          " use the shipped losses, or a device whose memory the host reads");
      const std::vector<float> c = loss_.op->constants();
      if (!c.empty()) {
        loss_constants_.resize(c.size());
        Dev::upload(c.data(), raw(loss_constants_), c.size());
      }
    }
    reserve(max_rows);
  }

  /// Makes the following forward passes training passes with draws keyed by `key` (dropout on),
  /// until eval_mode(). forward_backward is always a training pass.
  void train_mode(const DrawKey& key) noexcept {
    draw_ = key;
    training_ = true;
  }
  /// Makes the following forward passes inference passes (dropout off): the default.
  void eval_mode() noexcept { training_ = false; }

  /// Grows the workspace to hold batches of `rows` samples.
  void reserve(std::size_t rows) {
    if (rows <= capacity_) return;
    capacity_ = rows;
    for (auto& slot : acts_) {
      slot.resize(layers_.size());
      for (std::size_t l = 0; l < layers_.size(); ++l) slot[l].resize(rows * layers_[l].out);
    }
    for (auto& slot : saved_) {
      slot.resize(layers_.size());
      for (std::size_t l = 0; l < layers_.size(); ++l) slot[l].resize(rows * layers_[l].saved_per_row());
    }
    if (fused_) {  // the fused least-squares path needs no deltas: only block partials
      fused_scratch_.resize(detail::least_squares_scratch(rows, layers_[0].in));
      fused_out_.resize(layers_[0].in + 2);
      return;
    }
    if constexpr (defer_loss) row_loss_.resize(rows);
    delta_[0].resize(rows * widest_);
    delta_[1].resize(rows * widest_);
    ones_.resize(rows);
    detail::fill(Dev::exec(), raw(ones_), rows, 1.0f);
  }

  /// Forward pass of `rows` rows of x (rows x in_width) into activation slot `slot`; returns the
  /// device pointer to the outputs (rows x out_width), valid until the slot is reused.
  /// `sum(buf, count)` all-reduces a row-split layer's partial products.
  template <class Sum = detail::NoSum>
  const float* forward(const float* params, const float* x, std::size_t rows, std::size_t slot = 0, Sum&& sum = {}) {
    reserve(rows);
    draws_[slot] = draw_;  // the backward pass of this slot draws the masks its forward pass drew
    const float* in = x;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const LayerView& L = layers_[l];
      float* out = raw(acts_[slot][l]);
      if (L.op) {
        layer_forward<Dev>(*L.op, pass(L, slot, l, params, in, rows));
        in = out;
        continue;
      }
      Dev::gemm(false, false, rows, L.out, L.in, 1.0f, in, L.in, params + L.offset, L.out, 0.0f, out, L.out);
      if (L.sum_output) sum(out, rows * L.out);
      detail::bias_activate(Dev::exec(), L.activation, out, params + L.bias_offset(), rows, L.out);
      in = out;
    }
    return in;
  }

  /// The loss of slot `slot`'s outputs against y (sum over rows) and its gradient times `scale`
  /// into the network's own buffer, returned through `d`.
  double loss(std::size_t slot, const float* y, std::size_t rows, float scale, float*& d) {
    d = raw(delta_[0]);
    return loss_rows(raw(acts_[slot].back()), y, d, rows, scale, nullptr);
  }

  /// Backward pass of slot `slot`'s rows: `d` is the gradient at the output (rows x out_width;
  /// overwritten), x the slot's input. Writes the parameter gradient into `grads` (adds to it when
  /// `accumulate`), plus weight_decay x W per layer when weight_decay > 0, and the gradient at the
  /// input into `d_in` when not null. `layer_done(l)` runs as soon as layer l's gradient is final,
  /// last layer first: a gradient sum can start there while the pass goes on. `sum(buf, count)`
  /// all-reduces a column-split layer's partial input gradient.
  template <class LayerDone = detail::NoLayerDone, class Sum = detail::NoSum>
  void backward(const float* params, std::size_t slot, const float* x, float* d, std::size_t rows, float* grads,
                float* d_in, bool accumulate, float weight_decay = 0.0f, LayerDone&& layer_done = {}, Sum&& sum = {}) {
    std::size_t k = d == raw(delta_[0]) ? 1 : 0;  // the scratch buffer that d is not
    const float beta = accumulate ? 1.0f : 0.0f;
    for (std::size_t l = layers_.size(); l-- > 0;) {
      const LayerView& L = layers_[l];
      if (L.op) {
        const float* in = l == 0 ? x : raw(acts_[slot][l - 1]);
        float* prev = l > 0 ? raw(delta_[k]) : d_in;
        LayerPass p = pass(L, slot, l, params, in, rows);
        p.grads = grads + L.offset;
        p.accumulate = accumulate;
        p.dy = d;
        p.dx = prev;
        layer_backward<Dev>(*L.op, p);
        if (weight_decay > 0.0f) add_weight_decay(L, params, grads, weight_decay);
        layer_done(l);
        if (l > 0) {
          d = prev;
          k ^= 1;
        }
        continue;
      }
      detail::activation_backward(Dev::exec(), L.activation, d, raw(acts_[slot][l]), rows, L.out);
      const float* in = l == 0 ? x : raw(acts_[slot][l - 1]);
      Dev::gemm(true, false, L.in, L.out, rows, 1.0f, in, L.in, d, L.out, beta, grads + L.offset, L.out);
      Dev::gemv(true, rows, L.out, 1.0f, d, L.out, raw(ones_), beta, grads + L.bias_offset());
      if (weight_decay > 0.0f) add_weight_decay(L, params, grads, weight_decay);
      layer_done(l);
      float* prev = l > 0 ? raw(delta_[k]) : d_in;
      if (prev) {
        Dev::gemm(false, true, rows, L.in, L.out, 1.0f, d, L.out, params + L.offset, L.out, 0.0f, prev, L.in);
        if (L.sum_input_gradient) sum(prev, rows * L.in);
      }
      if (l > 0) {
        d = prev;
        k ^= 1;
      }
    }
  }

  /// Forward, loss and backward of one batch (all layers, this network holding the output):
  /// d(loss)/d(params) into `grads` (added when `accumulate`), where the loss is the sum of the
  /// per-sample losses times `scale`, plus the L2 term 0.5 * weight_decay * |W|^2 when
  /// weight_decay > 0. Returns the unscaled sum of per-sample losses. One linear output on squared
  /// error takes the fused least-squares kernel, which reads x once.
  template <class LayerDone = detail::NoLayerDone, class Sum = detail::NoSum>
  double forward_backward(const float* params, const float* x, const float* y, std::size_t rows, float* grads,
                          float scale, float weight_decay = 0.0f, bool accumulate = false, LayerDone&& layer_done = {},
                          Sum&& sum = {}) {
    reserve(rows);
    if (fused_) {
      fused_least_squares(params, x, y, rows, grads, scale, accumulate);
      if (weight_decay > 0.0f) add_weight_decay(layers_[0], params, grads, weight_decay);
      layer_done(std::size_t{0});
      // the loss is read once the gradient (and any sum started by layer_done) is enqueued
      float loss = 0.0f;
      Dev::download(raw(fused_out_) + layers_[0].in + 1, &loss, 1);
      return loss;
    }
    const bool was_training = training_;
    training_ = true;
    const float* out = forward(params, x, rows, 0, sum);
    training_ = was_training;
    float* d = raw(delta_[0]);
    double loss_sum = 0.0;
    if constexpr (defer_loss)
      loss_rows(out, y, d, rows, scale, raw(row_loss_));
    else
      loss_sum = loss_rows(out, y, d, rows, scale, nullptr);
    backward(params, 0, x, d, rows, grads, nullptr, accumulate, weight_decay, layer_done, sum);
    // the one wait of the pass, once all of it is enqueued (the loss is summed after the gradient
    // kernels in stream order)
    if constexpr (defer_loss) loss_sum = detail::sum_row_losses(Dev::exec(), raw(row_loss_), rows);
    return loss_sum;
  }

  /// Sum of per-sample losses without gradients (for evaluation).
  template <class Sum = detail::NoSum>
  double loss_sum(const float* params, const float* x, const float* y, std::size_t rows, Sum&& sum = {}) {
    const float* out = forward(params, x, rows, 0, sum);
    return loss_rows(out, y, nullptr, rows, 1.0f, nullptr);
  }

  /// grads += weight_decay * W over every layer (biases excluded).
  void add_weight_decay(const float* params, float* grads, float weight_decay) const {
    for (const LayerView& L : layers_) add_weight_decay(L, params, grads, weight_decay);
  }
  /// Sum of squared weights (biases excluded).
  [[nodiscard]] double squared_weights(const float* params) const {
    double s = 0.0;
    for (const LayerView& L : layers_)
      s += detail::sum_over(Dev::exec(), L.weight_count(), detail::SquareOf{params + L.offset});
    return s;
  }
  /// 0.5 * weight_decay * sum of squared weights.
  [[nodiscard]] double weight_penalty(const float* params, float weight_decay) const {
    return 0.5 * weight_decay * squared_weights(params);
  }

 private:
  /// On a fine-grained system (a GPU) the per-row losses stay on the device until the backward
  /// pass is enqueued: summing them at once would make the host wait for the forward pass before
  /// it could enqueue the backward one, leaving the GPU idle meanwhile.
  static constexpr bool defer_loss = detail::fine_grained<decltype(Dev::exec())>;

  static float* raw(vector& v) { return thrust::raw_pointer_cast(v.data()); }
  /// The loss of `rows` output rows z against y: summed and returned, or each row's into
  /// `per_row`; the gradient times `scale` into `grad` when it is not null.
  double loss_rows(const float* z, const float* y, float* grad, std::size_t rows, float scale, double* per_row) {
    if (!loss_.op) {
      if (per_row) {
        detail::loss_rows_into(Dev::exec(), loss_.family, z, y, grad, rows, out_width(), scale, per_row);
        return 0.0;
      }
      return detail::loss_rows(Dev::exec(), loss_.family, z, y, grad, rows, out_width(), scale);
    }
    LossPass p;
    p.z = z;
    p.y = y;
    p.grad = grad;
    p.rows = rows;
    p.cols = out_width();
    p.scale = scale;
    p.per_row = per_row;
    p.constants = loss_constants_.empty() ? nullptr : raw(loss_constants_);
    return loss_evaluate<Dev>(*loss_.op, p);
  }
  /// The pass of layer l (view L) on slot `slot`'s buffers, forward fields filled.
  LayerPass pass(const LayerView& L, std::size_t slot, std::size_t l, const float* params, const float* in,
                 std::size_t rows) {
    LayerPass p;
    p.rows = rows;
    p.in = L.in;
    p.out = L.out;
    p.params = params + L.offset;
    p.x = in;
    p.y = raw(acts_[slot][l]);
    p.saved = raw(saved_[slot][l]);
    p.training = training_;
    p.layer = L.index;
    p.draw = draws_[slot];
    return p;
  }
  static double* raw(typename Dev::template vector<double>& v) { return thrust::raw_pointer_cast(v.data()); }

  /// The gradient into grads; the loss sum stays in fused_out_[d + 1].
  void fused_least_squares(const float* params, const float* x, const float* y, std::size_t rows, float* grads,
                           float scale, bool accumulate) {
    const std::size_t d = layers_[0].in;
    float* out = raw(fused_out_);
    detail::least_squares_gradient(Dev::exec(), x, params, params + d, y, rows, d, 2.0f * scale, raw(fused_scratch_),
                                   out);
    detail::for_each_element(Dev::exec(), d + 1, detail::ScaleInto{grads, out, 1.0f, accumulate});
  }

  static void add_weight_decay(const LayerView& L, const float* params, float* grads, float weight_decay) {
    detail::for_each_element(Dev::exec(), L.weight_count(),
                             detail::Axpy{grads + L.offset, params + L.offset, weight_decay});
  }

  std::vector<LayerView> layers_;
  LossSpec loss_;
  vector loss_constants_;  ///< the loss's constants() on the device
  std::size_t widest_ = 0, capacity_ = 0;
  bool fused_ = false;
  std::vector<std::vector<vector>> acts_;   ///< per slot, per layer
  std::vector<std::vector<vector>> saved_;  ///< per slot, per layer: what forward keeps for backward
  bool training_ = false;
  DrawKey draw_{};
  std::vector<DrawKey> draws_;  ///< per slot: the key its last forward pass drew with
  vector delta_[2];
  vector ones_;
  vector fused_scratch_, fused_out_;
  typename Dev::template vector<double> row_loss_;  ///< per-row losses (defer_loss only)
};

}  // namespace tessera
