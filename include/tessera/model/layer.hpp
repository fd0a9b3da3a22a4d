// tessera/model/layer.hpp - the Layer concept: what a layer other than dense tells the one
// forward/backward pass (its widths, parameters, kernels, cost, initialisation and file form),
// the shipped ones (layer normalisation, dropout, embedding), and the registry that lets a model file name a
// layer kind of the user's.
//
// A layer kind is a class derived from LayerOp. It is held by shared pointer in the model's
// architecture, so copies of a model share the (immutable) kind. Its parameters live in the
// model's flat buffer like a dense layer's; its kernels run on views into that buffer and into
// the worker's activation buffers (LayerPass). The shipped kinds run on every device through the
// same Thrust kernels (detail/layer_kernels.hpp); a user's kind runs its host kernels on devices
// whose memory the host reads (the CPU).
#pragma once

#include <thrust/system/cpp/execution_policy.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "tessera/core/checked.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/detail/elementwise.hpp"
#include "tessera/detail/layer_kernels.hpp"

namespace tessera {

/// What identifies a training pass's random draws (dropout masks): the fit's seed, the epoch, the
/// step in the epoch, and the sample position of the pass's first row within the step's batch.
/// Worker w's rows of a step carry their positions in the whole batch, so the draws do not depend
/// on the worker count.
struct DrawKey {
  ///@{
  /// Seed, epoch, step in the epoch, and the first row's position in the step's batch.
  std::uint64_t seed = 0, epoch = 0, step = 0, first = 0;
  ///@}
};

/// The buffers one layer's kernels work on, for `rows` rows. All pointers are into the worker's
/// device memory (host memory on the CPU); row-major.
struct LayerPass {
  ///@{
  /// Rows in the pass, input width, output width.
  std::size_t rows = 0, in = 0, out = 0;
  ///@}
  /// The layer's parameters (parameter_count(in) values) in the flat buffer.
  const float* params = nullptr;
  /// The layer's gradient (backward): parameter_count(in) values, overwritten, or added to when
  /// `accumulate`.
  float* grads = nullptr;
  /// Backward: add to `grads` instead of overwriting (micro-batches of one step).
  bool accumulate = false;
  /// Input, rows x in.
  const float* x = nullptr;
  /// Output, rows x out: written by forward, read by backward.
  float* y = nullptr;
  /// saved_per_row(in) floats per row that forward may keep for backward.
  float* saved = nullptr;
  /// Backward: the gradient at the output, rows x out.
  const float* dy = nullptr;
  /// Backward: where the gradient at the input goes (rows x in), or null when none is needed (the
  /// model's first layer).
  float* dx = nullptr;
  /// Forward: true in a training pass, false in predict and evaluate (dropout is then off).
  bool training = false;
  /// Index of the layer in the model (for keying draws).
  std::uint32_t layer = 0;
  /// The draws' key (training passes).
  DrawKey draw{};
};

namespace detail {
/// The shortest decimal text that reads back as the same float: the form options() write.
inline std::string float_text(float v) {
  char b[32];
  for (int digits = 6; digits <= 9; ++digits) {
    std::snprintf(b, sizeof b, "%.*g", digits, static_cast<double>(v));
    if (std::strtof(b, nullptr) == v) break;
  }
  return b;
}
/// A float read from the whole of `text`, or throws (ErrorKind::format) naming what it is.
inline float parse_float(const std::string& text, const std::string& what) {
  char* end = nullptr;
  const float f = std::strtof(text.c_str(), &end);
  require(!text.empty() && end == text.c_str() + text.size(), ErrorKind::format, what + " is not a number: '" + text + "'");
  return f;
}
/// The shipped kinds other than dense, which every device runs through the same Thrust kernels.
enum class BuiltinLayer { none, layer_norm, dropout, embedding };
}  // namespace detail

/// A layer kind other than dense: derive from it, override what differs from the defaults, and
/// add it to a model with `layers::custom(std::make_shared<MyLayer>(...))`. Every function is
/// const: a kind is shared by every copy of a model and every worker.
class LayerOp {
 public:
  virtual ~LayerOp() = default;

  /// The kind's name, as a model file records it ("layer_norm"); register_layer makes a file
  /// with it loadable.
  [[nodiscard]] virtual std::string kind() const = 0;
  /// The kind's options as text ("p=0.5"), written into model files and read back by the
  /// registered factory; "" when it has none.
  [[nodiscard]] virtual std::string options() const { return {}; }
  /// For messages and signatures: "kind(options)".
  [[nodiscard]] virtual std::string describe() const {
    const std::string o = options();
    return o.empty() ? kind() : kind() + "(" + o + ")";
  }
  /// Output width for input width `in`; throws Error (ErrorKind::invalid_argument) when the
  /// layer cannot take `in` features.
  [[nodiscard]] virtual std::size_t out_width(std::size_t in) const { return in; }
  /// Parameters for input width `in`.
  [[nodiscard]] virtual std::size_t parameter_count(std::size_t /*in*/) const { return 0; }
  /// How many of the leading parameters the model's L2 weight decay applies to (weights, not
  /// gains or biases).
  [[nodiscard]] virtual std::size_t decayed_count(std::size_t /*in*/) const { return 0; }
  /// Floats per row that forward keeps for backward (besides the output).
  [[nodiscard]] virtual std::size_t saved_per_row(std::size_t /*in*/) const { return 0; }
  /// Estimated multiply-adds per sample of forward and backward together (pipeline balancing).
  [[nodiscard]] virtual double cost(std::size_t in) const { return 8.0 * static_cast<double>(in); }
  /// Starting values of the parameters (parameter_count(in) values, zero on entry), drawn from
  /// the counter-based generator keyed by (seed, layer): e.g.
  /// `rng::normal(seed, rng::Stream::init, i, layer)`.
  virtual void initialise(std::span<float> /*params*/, std::size_t /*in*/, std::uint64_t /*seed*/,
                          std::uint32_t /*layer*/) const {}
  /// Writes y (and saved) from x.
  virtual void forward(const LayerPass& p) const = 0;
  /// Writes grads (added to when p.accumulate) and dx (when not null) from dy, x, y and saved.
  virtual void backward(const LayerPass& p) const = 0;

  /// Which shipped kind this is (none for the user's): the pass then runs the shipped kernels on
  /// the worker's device.
  [[nodiscard]] virtual detail::BuiltinLayer builtin() const noexcept { return detail::BuiltinLayer::none; }
};

/// Layer normalisation (Ba et al. 2016) over each row's features, with a learned gain (starting
/// at 1) and bias (starting at 0): 2 x in parameters, out = in.
class LayerNorm final : public LayerOp {
 public:
  /// `epsilon` guards the variance; it must be positive and finite.
  explicit LayerNorm(float epsilon = 1e-5f) : eps_(epsilon) {
    detail::require(epsilon > 0.0f && epsilon < 1e30f, ErrorKind::invalid_argument,
                    "layers::layer_norm: epsilon must be positive and finite, got " + std::to_string(epsilon));
  }
  /// The variance guard.
  [[nodiscard]] float epsilon() const noexcept { return eps_; }
  [[nodiscard]] std::string kind() const override { return "layer_norm"; }
  [[nodiscard]] std::string options() const override { return "epsilon=" + detail::float_text(eps_); }
  [[nodiscard]] std::size_t parameter_count(std::size_t in) const override { return 2 * in; }
  [[nodiscard]] std::size_t saved_per_row(std::size_t) const override { return 2; }
  [[nodiscard]] double cost(std::size_t in) const override { return 12.0 * static_cast<double>(in); }
  void initialise(std::span<float> p, std::size_t in, std::uint64_t, std::uint32_t) const override {
    for (std::size_t j = 0; j < in; ++j) p[j] = 1.0f;
  }
  void forward(const LayerPass& p) const override { run_forward(thrust::cpp::par, p); }
  void backward(const LayerPass& p) const override { run_backward(thrust::cpp::par, p); }
  [[nodiscard]] detail::BuiltinLayer builtin() const noexcept override { return detail::BuiltinLayer::layer_norm; }

  /// The forward kernel on `exec`'s system.
  template <class Exec>
  void run_forward(Exec&& exec, const LayerPass& p) const {
    detail::for_each_index(exec, p.rows,
                           detail::LayerNormForward{p.x, p.y, p.params, p.params + p.in, p.saved, p.in, eps_});
  }
  /// The backward kernels on `exec`'s system.
  template <class Exec>
  void run_backward(Exec&& exec, const LayerPass& p) const {
    detail::for_each_index(exec, p.in,
                           detail::LayerNormParameterGradient{p.x, p.dy, p.saved, p.grads, p.grads + p.in, p.rows,
                                                              p.in, p.accumulate});
    if (p.dx)
      detail::for_each_index(exec, p.rows,
                             detail::LayerNormInputGradient{p.x, p.dy, p.dx, p.params, p.saved, p.in});
  }


 private:
  float eps_;
};

/// Inverted dropout: in training each value is zeroed with probability p and the kept ones are
/// scaled by 1 / (1 - p); in predict and evaluate it passes values through. The mask is a pure
/// function of (seed, epoch, step, sample position, column), so deterministic mode stays bitwise
/// at any worker count and a resumed fit draws the same masks.
class Dropout final : public LayerOp {
 public:
  /// `p` in [0, 1).
  explicit Dropout(float p) : p_(p) {
    detail::require(p >= 0.0f && p < 1.0f, ErrorKind::invalid_argument,
                    "layers::dropout: the drop probability must be in [0, 1), got " + std::to_string(p));
  }
  /// The drop probability.
  [[nodiscard]] float probability() const noexcept { return p_; }
  [[nodiscard]] std::string kind() const override { return "dropout"; }
  [[nodiscard]] std::string options() const override { return "p=" + detail::float_text(p_); }
  [[nodiscard]] double cost(std::size_t in) const override { return 4.0 * static_cast<double>(in); }
  void forward(const LayerPass& p) const override { run_forward(thrust::cpp::par, p); }
  void backward(const LayerPass& p) const override { run_backward(thrust::cpp::par, p); }
  [[nodiscard]] detail::BuiltinLayer builtin() const noexcept override { return detail::BuiltinLayer::dropout; }

  /// The forward kernel on `exec`'s system.
  template <class Exec>
  void run_forward(Exec&& exec, const LayerPass& p) const {
    if (!p.training || p_ == 0.0f) {
      detail::for_each_element(exec, p.rows * p.in, detail::CopyOf{p.x, p.y});
      return;
    }
    detail::for_each_element(exec, p.rows * p.in, apply(p, p.x, p.y));
  }
  /// The backward kernel on `exec`'s system (the mask drawn again).
  template <class Exec>
  void run_backward(Exec&& exec, const LayerPass& p) const {
    if (!p.dx) return;
    if (p_ == 0.0f) {
      detail::for_each_element(exec, p.rows * p.in, detail::CopyOf{p.dy, p.dx});
      return;
    }
    detail::for_each_element(exec, p.rows * p.in, apply(p, p.dy, p.dx));
  }

 private:
  [[nodiscard]] detail::DropoutApply apply(const LayerPass& p, const float* in, float* out) const {
    return {in, out, detail::dropout_key(p.draw.seed, p.draw.epoch, p.draw.step, p.layer), p.draw.first, p.in, p_,
            1.0f / (1.0f - p_)};
  }
  float p_;
};

/// Embedding of categorical features: the last `columns` input features are category ids (whole
/// numbers stored as float, in [0, vocabulary)), and each is replaced by the `dim` values of its
/// row in a table of its own (one table per id column); the leading in - columns features pass
/// through unchanged, first in the output. out = (in - columns) + columns x dim.
///
/// Parameters: columns x vocabulary x dim, table c at c x vocabulary x dim and row `id` of it at
/// id x dim; they start standard normal (as PyTorch's nn.Embedding). Weight decay does not apply
/// to them (decayed_count() is 0): a row that a batch does not use gets no gradient, and a decay
/// would shrink the rows of rare categories towards 0 for that alone.
///
/// Forward refuses an id that is not finite, not a whole number, negative or not below the
/// vocabulary with Error (ErrorKind::invalid_argument), naming the row within the pass, the id
/// column, the input feature, the value and the vocabulary; the id columns' input gradient is 0.
class Embedding final : public LayerOp {
 public:
  /// The largest vocabulary: a float holds every whole number up to 2^24 exactly, and no id above
  /// it could name its own category.
  static constexpr std::size_t max_vocabulary = std::size_t{1} << 24;

  /// `columns` id columns, each with its own table of `vocabulary` rows of `dim` values. Throws
  /// Error (ErrorKind::invalid_argument) when one is 0, the vocabulary exceeds max_vocabulary, or
  /// the parameter count overflows.
  Embedding(std::size_t columns, std::size_t vocabulary, std::size_t dim)
      : columns_(columns), vocabulary_(vocabulary), dim_(dim) {
    detail::require(columns > 0 && vocabulary > 0 && dim > 0, ErrorKind::invalid_argument,
                    "layers::embedding(" + numbers() + "): columns, vocabulary and dim must be positive");
    detail::require(vocabulary <= max_vocabulary, ErrorKind::invalid_argument,
                    "layers::embedding(" + numbers() + "): the vocabulary exceeds 2^24 = 16777216, the largest a "
                        "float id can index exactly");
    std::size_t per_table = 0;
    detail::require(!detail::mul_overflows(vocabulary, dim, per_table) &&
                        !detail::mul_overflows(columns, per_table, count_),
                    ErrorKind::invalid_argument,
                    "layers::embedding(" + numbers() +
                        "): the parameter count columns x vocabulary x dim overflows 2^64");
  }
  /// The id columns (the last features of the input).
  [[nodiscard]] std::size_t columns() const noexcept { return columns_; }
  /// Categories per id column: ids are in [0, vocabulary).
  [[nodiscard]] std::size_t vocabulary() const noexcept { return vocabulary_; }
  /// Values each id is replaced by.
  [[nodiscard]] std::size_t dim() const noexcept { return dim_; }
  [[nodiscard]] std::string kind() const override { return "embedding"; }
  [[nodiscard]] std::string options() const override {
    return "columns=" + std::to_string(columns_) + ",vocabulary=" + std::to_string(vocabulary_) +
           ",dim=" + std::to_string(dim_);
  }
  /// (in - columns) + columns x dim; throws Error (ErrorKind::invalid_argument) when the input has
  /// fewer than `columns` features or the width overflows.
  [[nodiscard]] std::size_t out_width(std::size_t in) const override {
    detail::require(columns_ <= in, ErrorKind::invalid_argument,
                    "layers::embedding(" + numbers() + "): " + std::to_string(columns_) +
                        " id columns, but the layer's input has only " + std::to_string(in) +
                        (in == 1 ? " feature" : " features"));
    std::size_t ids = 0, out = 0;
    detail::require(!detail::mul_overflows(columns_, dim_, ids) && !detail::add_overflows(in - columns_, ids, out),
                    ErrorKind::invalid_argument,
                    "layers::embedding(" + numbers() + "): the output width (" + std::to_string(in) + " - " +
                        std::to_string(columns_) + ") + " + std::to_string(columns_) + " x " + std::to_string(dim_) +
                        " overflows 2^64");
    return out;
  }
  /// columns x vocabulary x dim, whatever the input width.
  [[nodiscard]] std::size_t parameter_count(std::size_t) const override { return count_; }
  /// 0: weight decay does not apply to embedding tables (see the class).
  [[nodiscard]] std::size_t decayed_count(std::size_t) const override { return 0; }
  /// A copy per output value, forward and backward: 4 x out, however large the tables.
  [[nodiscard]] double cost(std::size_t in) const override {
    const double lead = in > columns_ ? static_cast<double>(in - columns_) : 0.0;
    return 4.0 * (lead + static_cast<double>(columns_) * static_cast<double>(dim_));
  }
  /// Standard normal: rng::normal(seed, rng::Stream::init, i, layer) for parameter i.
  void initialise(std::span<float> p, std::size_t, std::uint64_t seed, std::uint32_t layer) const override {
    for (std::size_t i = 0; i < p.size(); ++i) p[i] = rng::normal(seed, rng::Stream::init, i, layer);
  }
  void forward(const LayerPass& p) const override { run_forward(thrust::cpp::par, p); }
  void backward(const LayerPass& p) const override { run_backward(thrust::cpp::par, p); }
  [[nodiscard]] detail::BuiltinLayer builtin() const noexcept override { return detail::BuiltinLayer::embedding; }

  /// The forward kernels on `exec`'s system: the ids are counted bad or good on the device first
  /// (one reduction), so that the lookup never reads outside a table.
  template <class Exec>
  void run_forward(Exec&& exec, const LayerPass& p) const {
    const std::size_t lead = p.in - columns_, ids = p.rows * columns_;
    const detail::EmbeddingBadId bad{p.x, p.in, lead, columns_, vocabulary_};
    const double bad_count = detail::sum_over(exec, ids, bad);
    if (bad_count != 0.0) refuse(exec, p, bad, static_cast<std::size_t>(bad_count));
    detail::for_each_element(exec, p.rows * p.out,
                             detail::EmbeddingForward{p.x, p.y, p.params, p.in, p.out, lead, vocabulary_, dim_});
  }
  /// The backward kernels on `exec`'s system: one item per (table, entry), its rows in row order,
  /// so the gradient's bits depend on neither thread count nor device.
  template <class Exec>
  void run_backward(Exec&& exec, const LayerPass& p) const {
    const std::size_t lead = p.in - columns_;
    if (!p.accumulate) detail::fill(exec, p.grads, count_, 0.0f);
    detail::for_each_index(exec, columns_ * dim_,
                           detail::EmbeddingTableGradient{p.x, p.dy, p.grads, p.rows, p.in, p.out, lead, vocabulary_,
                                                          dim_});
    if (p.dx)
      detail::for_each_element(exec, p.rows * p.in, detail::EmbeddingInputGradient{p.dy, p.dx, p.in, p.out, lead});
  }

 private:
  [[nodiscard]] std::string numbers() const {
    return "columns=" + std::to_string(columns_) + ", vocabulary=" + std::to_string(vocabulary_) +
           ", dim=" + std::to_string(dim_);
  }
  /// Finds the first bad id on the device (a min-reduction over the flat id index), brings its
  /// value over and throws.
  template <class Exec>
  [[noreturn]] void refuse(Exec&& exec, const LayerPass& p, const detail::EmbeddingBadId& bad,
                           std::size_t count) const {
    const std::size_t ids = p.rows * columns_;
    const std::size_t first = detail::min_over(exec, ids, detail::EmbeddingFirstBadId{bad, ids}, ids);
    // the count said there is one; a first index past the end would mean the input changed under us
    detail::require(first < ids, ErrorKind::runtime, "layers::embedding: the input changed while it was checked");
    const std::size_t r = first / columns_, c = first % columns_, feature = p.in - columns_ + c;
    const double v = detail::sum_over(exec, 1, detail::ValueAt{p.x + r * p.in + feature});
    const char* why = !std::isfinite(v)                        ? "is not finite"
                      : v < 0.0                                ? "is negative"
                      : v >= static_cast<double>(vocabulary_) ? "is not below the vocabulary size"
                                                               : "is not a whole number";
    detail::fail(ErrorKind::invalid_argument,
                 "layer " + std::to_string(p.layer) + " (" + describe() + "): row " + std::to_string(r) +
                     " of the pass (of " + std::to_string(p.rows) + "), id column " + std::to_string(c) +
                     " (input feature " + std::to_string(feature) + ") holds " +
                     detail::float_text(static_cast<float>(v)) + ", which " + why +
                     "; an id must be a whole number in [0, " + std::to_string(vocabulary_) + ") (vocabulary " +
                     std::to_string(vocabulary_) + "); " + std::to_string(count) + " of the pass's " +
                     std::to_string(ids) + " ids " + (count == 1 ? "is" : "are") + " bad");
  }

  std::size_t columns_, vocabulary_, dim_, count_ = 0;
};

/// Runs a layer's forward pass on device `Dev`: the shipped kinds on the device's own system, a
/// user's kind through its host kernels (devices whose memory the host reads).
template <class Dev>
void layer_forward(const LayerOp& op, const LayerPass& p) {
  switch (op.builtin()) {
    case detail::BuiltinLayer::layer_norm: static_cast<const LayerNorm&>(op).run_forward(Dev::exec(), p); return;
    case detail::BuiltinLayer::dropout: static_cast<const Dropout&>(op).run_forward(Dev::exec(), p); return;
    case detail::BuiltinLayer::embedding: static_cast<const Embedding&>(op).run_forward(Dev::exec(), p); return;
    case detail::BuiltinLayer::none: op.forward(p); return;
  }
}
/// Same for the backward pass.
template <class Dev>
void layer_backward(const LayerOp& op, const LayerPass& p) {
  switch (op.builtin()) {
    case detail::BuiltinLayer::layer_norm: static_cast<const LayerNorm&>(op).run_backward(Dev::exec(), p); return;
    case detail::BuiltinLayer::dropout: static_cast<const Dropout&>(op).run_backward(Dev::exec(), p); return;
    case detail::BuiltinLayer::embedding: static_cast<const Embedding&>(op).run_backward(Dev::exec(), p); return;
    case detail::BuiltinLayer::none: op.backward(p); return;
  }
}

/// Makes a layer kind from the options text its options() wrote.
using LayerFactory = std::function<std::shared_ptr<const LayerOp>(const std::string& options)>;

namespace detail {
struct LayerRegistry {
  std::mutex mutex;
  std::map<std::string, LayerFactory, std::less<>> factories;
};
inline LayerRegistry& layer_registry() {
  static LayerRegistry r;
  return r;
}

/// "key=value" of `options` (options of the form "a=1,b=2"), or throws naming the kind (of a layer,
/// or of what `family` says).
inline std::string option_value(const std::string& options, std::string_view key, const std::string& kind,
                                const char* family = "layer") {
  std::size_t at = 0;
  while (at <= options.size()) {
    const std::size_t end = std::min(options.find(',', at), options.size());
    const std::string_view item(options.data() + at, end - at);
    if (item.size() > key.size() && item.substr(0, key.size()) == key && item[key.size()] == '=')
      return std::string(item.substr(key.size() + 1));
    at = end + 1;
  }
  fail(ErrorKind::format, std::string(family) + " kind '" + kind + "': option '" + std::string(key) + "' missing in '" +
                              options + "'");
}
/// A float option.
inline float float_option(const std::string& options, std::string_view key, const std::string& kind) {
  return parse_float(option_value(options, key, kind), "layer kind '" + kind + "': option '" + std::string(key) + "'");
}
/// A count option: a decimal text of digits only (no sign, no space), within std::size_t.
inline std::size_t size_option(const std::string& options, std::string_view key, const std::string& kind) {
  const std::string v = option_value(options, key, kind);
  const auto refuse = [&](const char* why) {
    fail(ErrorKind::format, "layer kind '" + kind + "': option '" + std::string(key) + "' " + why + ": '" + v + "'");
  };
  if (v.empty()) refuse("is not a whole number");
  std::size_t n = 0;
  for (const char ch : v) {
    if (ch < '0' || ch > '9') refuse("is not a whole number");
    if (mul_overflows(n, 10, n) || add_overflows(n, static_cast<std::size_t>(ch - '0'), n)) refuse("overflows 2^64");
  }
  return n;
}
}  // namespace detail

/// Makes model files with layers of kind `kind` loadable: `factory(options)` rebuilds the kind
/// from the options text its options() wrote. Registering a kind again replaces its factory; the
/// shipped kinds ("dense", "layer_norm", "dropout", "embedding") cannot be replaced
/// (ErrorKind::invalid_argument).
inline void register_layer(const std::string& kind, LayerFactory factory) {
  detail::require(kind != "dense" && kind != "layer_norm" && kind != "dropout" && kind != "embedding",
                  ErrorKind::invalid_argument,
                  "register_layer: '" + kind + "' is a shipped layer kind");
  detail::require(!kind.empty() && kind.size() <= 255 && static_cast<bool>(factory), ErrorKind::invalid_argument,
                  "register_layer: a kind needs a name of 1 to 255 bytes and a factory");
  auto& r = detail::layer_registry();
  const std::lock_guard lock(r.mutex);
  r.factories[kind] = std::move(factory);
}

/// Whether a model file can name `kind`: a shipped kind or a registered one.
inline bool layer_registered(std::string_view kind) {
  if (kind == "dense" || kind == "layer_norm" || kind == "dropout" || kind == "embedding") return true;
  auto& r = detail::layer_registry();
  const std::lock_guard lock(r.mutex);
  return r.factories.find(kind) != r.factories.end();
}

/// Rebuilds a layer kind from a model file's (kind, options); throws Error (ErrorKind::format)
/// for an unknown kind (naming register_layer) or options it cannot read.
inline std::shared_ptr<const LayerOp> make_layer(const std::string& kind, const std::string& options) {
  if (kind == "layer_norm") return std::make_shared<LayerNorm>(detail::float_option(options, "epsilon", kind));
  if (kind == "dropout") return std::make_shared<Dropout>(detail::float_option(options, "p", kind));
  if (kind == "embedding")
    return std::make_shared<Embedding>(detail::size_option(options, "columns", kind),
                                       detail::size_option(options, "vocabulary", kind),
                                       detail::size_option(options, "dim", kind));
  LayerFactory f;
  {
    auto& r = detail::layer_registry();
    const std::lock_guard lock(r.mutex);
    const auto it = r.factories.find(kind);
    detail::require(it != r.factories.end(), ErrorKind::format,
                    "layer kind '" + kind + "' is not registered: call tessera::register_layer(\"" + kind +
                        "\", factory) before loading this model");
    f = it->second;
  }
  auto op = f(options);
  detail::require(op && op->kind() == kind, ErrorKind::format,
                  "register_layer: the factory of '" + kind + "' made " + (op ? "a '" + op->kind() + "'" : "nothing"));
  return op;
}

}  // namespace tessera
