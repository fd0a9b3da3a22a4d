// tessera/model/objective.hpp - the loss concept: a loss other than the three shipped enum losses
// (mean squared error, binary and softmax cross-entropy) is a class derived from LossOp, holding
// its options, that computes each row's loss and its gradient at the outputs in one pass. The
// shipped Huber and class-weighted softmax cross-entropy losses are such classes, run by the same
// Thrust kernels on every device; a user's loss runs its host kernel on devices whose memory the
// host reads (the CPU). A loss belongs to a family (one of the enum losses), which says what the
// targets are, what predict returns and what the summed loss is divided by.
#pragma once

#include <thrust/system/cpp/execution_policy.h>

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/detail/launch.hpp"
#include "tessera/detail/loss_kernels.hpp"
#include "tessera/model/layer.hpp"
#include "tessera/model/loss.hpp"

namespace tessera {

/// The buffers of one loss evaluation over `rows` rows of `cols` outputs (device memory; host
/// memory on the CPU).
struct LossPass {
  /// The model's outputs (logits for the cross-entropy families), rows x cols.
  const float* z = nullptr;
  /// The targets: rows x cols values (mean squared error and binary families) or one class index
  /// per row stored as float (softmax family).
  const float* y = nullptr;
  /// Where the gradient at z times `scale` goes (rows x cols), or null for the loss only.
  float* grad = nullptr;
  ///@{
  /// Rows and outputs per row.
  std::size_t rows = 0, cols = 0;
  ///@}
  /// The factor of the gradient (1 / the normaliser of the whole batch).
  float scale = 1.0f;
  /// When not null: each row's loss goes to per_row[r] (rows doubles) instead of being summed.
  double* per_row = nullptr;
  /// The loss's constants() on the device (class weights), or null.
  const float* constants = nullptr;
};

namespace detail {
/// The shipped losses of the concept.
enum class BuiltinLoss { none, huber, weighted_softmax_cross_entropy };
}  // namespace detail

/// A loss other than the enum losses: derive from it, and give it to a model with
/// `loss::custom(std::make_shared<MyLoss>(...))`.
class LossOp {
 public:
  virtual ~LossOp() = default;
  /// The kind's name, as a model file records it ("huber").
  [[nodiscard]] virtual std::string kind() const = 0;
  /// Its options as text ("delta=1"), written into model files and read back by the factory.
  [[nodiscard]] virtual std::string options() const { return {}; }
  /// "kind(options)", for messages and signatures.
  [[nodiscard]] virtual std::string describe() const {
    const std::string o = options();
    return o.empty() ? kind() : kind() + "(" + o + ")";
  }
  /// What the targets are, what predict returns and what the loss sum is divided by: one of the
  /// enum losses.
  [[nodiscard]] virtual Loss family() const = 0;
  /// Throws Error (ErrorKind::invalid_argument) when the loss cannot take a model of `outputs`
  /// outputs (class weights of another count).
  virtual void check(std::size_t /*outputs*/) const {}
  /// Values the kernel reads (class weights), put on the worker's device as LossPass::constants.
  [[nodiscard]] virtual std::vector<float> constants() const { return {}; }
  /// The sum of the rows' losses (or, with p.per_row, each row's loss there and 0), and the
  /// gradient times p.scale into p.grad when it is not null. Runs on the host.
  [[nodiscard]] virtual double evaluate(const LossPass& p) const = 0;
  /// Which shipped loss this is (none for the user's).
  [[nodiscard]] virtual detail::BuiltinLoss builtin() const noexcept { return detail::BuiltinLoss::none; }
};

namespace detail {

/// Huber on each output: 0.5 d^2 for |d| <= delta, delta (|d| - delta / 2) beyond; gradient d
/// clipped to [-delta, delta].
struct HuberRow {
  const float* z;
  const float* y;
  float* grad;
  std::size_t cols;
  float scale, delta;
  TESSERA_HD double operator()(std::size_t r) const {
    double s = 0.0;
    for (std::size_t j = 0; j < cols; ++j) {
      const float d = z[r * cols + j] - y[r * cols + j], a = std::fabs(d);
      s += a <= delta ? 0.5 * static_cast<double>(d) * d : static_cast<double>(delta) * (a - 0.5 * delta);
      if (grad) grad[r * cols + j] = scale * (a <= delta ? d : (d > 0.0f ? delta : -delta));
    }
    return s;
  }
};

/// Softmax cross-entropy with a weight per class: the plain row's loss and gradient times w[y_r].
struct WeightedSoftmaxRow {
  const float* z;
  const float* y;
  float* grad;
  std::size_t cols;
  float scale;
  const float* w;
  TESSERA_HD double operator()(std::size_t r) const {
    const float wr = w[static_cast<std::size_t>(y[r])];
    return static_cast<double>(wr) * SoftmaxCrossEntropyRow{z, y, grad, cols, scale * wr}(r);
  }
};

template <class Row>
struct StoreLossRow {
  Row row;
  double* out;
  TESSERA_HD void operator()(std::size_t r) const { out[r] = row(r); }
};

/// Sums a row functor over the pass's rows, or stores each row's value in p.per_row.
template <class Exec, class Row>
double run_loss_rows(Exec&& exec, const LossPass& p, Row row) {
  if (p.per_row) {
    for_each_index(exec, p.rows, StoreLossRow<Row>{row, p.per_row});
    return 0.0;
  }
  return sum_over(exec, p.rows, row);
}

}  // namespace detail

/// The Huber loss with threshold `delta` (> 0): squared error near the target, absolute error
/// beyond, so outliers pull less. Family mean_squared_error (targets are values; the sum is divided
/// by rows x outputs).
class HuberLoss final : public LossOp {
 public:
  /// `delta` must be positive and finite.
  explicit HuberLoss(float delta = 1.0f) : delta_(delta) {
    detail::require(delta > 0.0f && std::isfinite(delta), ErrorKind::invalid_argument,
                    "loss::huber: delta must be positive and finite, got " + std::to_string(delta));
  }
  /// The threshold between the squared and the absolute part.
  [[nodiscard]] float delta() const noexcept { return delta_; }
  [[nodiscard]] std::string kind() const override { return "huber"; }
  [[nodiscard]] std::string options() const override { return "delta=" + detail::float_text(delta_); }
  [[nodiscard]] Loss family() const override { return Loss::mean_squared_error; }
  [[nodiscard]] double evaluate(const LossPass& p) const override { return run(thrust::cpp::par, p); }
  [[nodiscard]] detail::BuiltinLoss builtin() const noexcept override { return detail::BuiltinLoss::huber; }
  /// The kernel on `exec`'s system.
  template <class Exec>
  double run(Exec&& exec, const LossPass& p) const {
    return detail::run_loss_rows(exec, p, detail::HuberRow{p.z, p.y, p.grad, p.cols, p.scale, delta_});
  }

 private:
  float delta_;
};

/// Softmax cross-entropy with one weight per class (imbalanced classes: weight rare classes up),
/// row r's loss times weight[y_r]. Family softmax_cross_entropy; the sum is divided by the rows,
/// as scikit-learn's class_weight does.
class WeightedSoftmaxCrossEntropy final : public LossOp {
 public:
  /// One finite weight >= 0 per class, at least one of them > 0.
  explicit WeightedSoftmaxCrossEntropy(std::vector<float> weights) : w_(std::move(weights)) {
    bool positive = false;
    for (std::size_t c = 0; c < w_.size(); ++c) {
      detail::require(std::isfinite(w_[c]) && w_[c] >= 0.0f, ErrorKind::invalid_argument,
                      "loss::weighted_softmax_cross_entropy: the weight of class " + std::to_string(c) + " is " +
                          std::to_string(w_[c]) + ", expected a finite value >= 0");
      positive = positive || w_[c] > 0.0f;
    }
    detail::require(w_.size() >= 2 && positive, ErrorKind::invalid_argument,
                    "loss::weighted_softmax_cross_entropy: needs a weight per class (at least 2), not all 0; got " +
                        std::to_string(w_.size()));
  }
  /// The weight of each class.
  [[nodiscard]] const std::vector<float>& weights() const noexcept { return w_; }
  [[nodiscard]] std::string kind() const override { return "weighted_softmax_cross_entropy"; }
  [[nodiscard]] std::string options() const override {
    std::string s = "weights=";
    for (std::size_t c = 0; c < w_.size(); ++c) {
      if (c) s += ':';
      s += detail::float_text(w_[c]);
    }
    return s;
  }
  [[nodiscard]] Loss family() const override { return Loss::softmax_cross_entropy; }
  void check(std::size_t outputs) const override {
    detail::require(outputs == w_.size(), ErrorKind::invalid_argument,
                    "loss::weighted_softmax_cross_entropy: " + std::to_string(w_.size()) +
                        " class weights for a model of " + std::to_string(outputs) + " outputs (one per class)");
  }
  [[nodiscard]] std::vector<float> constants() const override { return w_; }
  [[nodiscard]] double evaluate(const LossPass& p) const override { return run(thrust::cpp::par, p); }
  [[nodiscard]] detail::BuiltinLoss builtin() const noexcept override {
    return detail::BuiltinLoss::weighted_softmax_cross_entropy;
  }
  /// The kernel on `exec`'s system (the weights read from p.constants).
  template <class Exec>
  double run(Exec&& exec, const LossPass& p) const {
    return detail::run_loss_rows(exec, p, detail::WeightedSoftmaxRow{p.z, p.y, p.grad, p.cols, p.scale, p.constants});
  }

 private:
  std::vector<float> w_;
};

/// Runs a loss of the concept on device `Dev`: the shipped ones on the device's own system, a
/// user's through its host kernel.
template <class Dev>
double loss_evaluate(const LossOp& op, const LossPass& p) {
  switch (op.builtin()) {
    case detail::BuiltinLoss::huber: return static_cast<const HuberLoss&>(op).run(Dev::exec(), p);
    case detail::BuiltinLoss::weighted_softmax_cross_entropy:
      return static_cast<const WeightedSoftmaxCrossEntropy&>(op).run(Dev::exec(), p);
    case detail::BuiltinLoss::none: break;
  }
  return op.evaluate(p);
}

/// A model's loss: one of the enum losses, or a loss of the concept (then `family` is its
/// family). Converts from both: `Loss::softmax_cross_entropy`, `loss::huber(0.5f)`.
struct LossSpec {
  /// The enum loss, or the family of `op`.
  Loss family = Loss::mean_squared_error;
  /// The loss of the concept, or null.
  std::shared_ptr<const LossOp> op{};
  /// An enum loss.
  LossSpec(Loss l = Loss::mean_squared_error) : family(l) {}  // NOLINT: implicit by design
  /// A loss of the concept. Throws Error (ErrorKind::invalid_argument) when it is null.
  LossSpec(std::shared_ptr<const LossOp> o) : op(std::move(o)) {  // NOLINT: implicit by design
    detail::require(op != nullptr, ErrorKind::invalid_argument, "loss::custom: the loss is null");
    family = op->family();
  }
  /// "softmax_cross_entropy" or "huber(delta=1)".
  [[nodiscard]] std::string describe() const { return op ? op->describe() : std::string(to_string(family)); }
};

namespace loss {
/// The Huber loss (see HuberLoss).
inline LossSpec huber(float delta = 1.0f) { return LossSpec(std::make_shared<HuberLoss>(delta)); }
/// Softmax cross-entropy weighted per class (see WeightedSoftmaxCrossEntropy).
inline LossSpec weighted_softmax_cross_entropy(std::vector<float> class_weights) {
  return LossSpec(std::make_shared<WeightedSoftmaxCrossEntropy>(std::move(class_weights)));
}
/// A loss of the user's (a class derived from LossOp).
inline LossSpec custom(std::shared_ptr<const LossOp> op) { return LossSpec(std::move(op)); }
}  // namespace loss

/// Makes a loss kind from the options text its options() wrote.
using LossFactory = std::function<std::shared_ptr<const LossOp>(const std::string& options)>;

namespace detail {
struct LossRegistry {
  std::mutex mutex;
  std::map<std::string, LossFactory, std::less<>> factories;
};
inline LossRegistry& loss_registry() {
  static LossRegistry r;
  return r;
}
inline bool shipped_loss_kind(std::string_view kind) {
  return kind == "huber" || kind == "weighted_softmax_cross_entropy";
}
}  // namespace detail

/// Makes model files with losses of kind `kind` loadable (see register_layer). The shipped kinds
/// cannot be replaced (ErrorKind::invalid_argument).
inline void register_loss(const std::string& kind, LossFactory factory) {
  detail::require(!detail::shipped_loss_kind(kind), ErrorKind::invalid_argument,
                  "register_loss: '" + kind + "' is a shipped loss kind");
  detail::require(!kind.empty() && kind.size() <= 255 && static_cast<bool>(factory), ErrorKind::invalid_argument,
                  "register_loss: a kind needs a name of 1 to 255 bytes and a factory");
  auto& r = detail::loss_registry();
  const std::lock_guard lock(r.mutex);
  r.factories[kind] = std::move(factory);
}

/// Whether a model file can name loss kind `kind`.
inline bool loss_registered(std::string_view kind) {
  if (detail::shipped_loss_kind(kind)) return true;
  auto& r = detail::loss_registry();
  const std::lock_guard lock(r.mutex);
  return r.factories.find(kind) != r.factories.end();
}

/// Rebuilds a loss from a model file's (kind, options); throws Error (ErrorKind::format) for an
/// unknown kind (naming register_loss) or options it cannot read.
inline std::shared_ptr<const LossOp> make_loss(const std::string& kind, const std::string& options) {
  if (kind == "huber") return std::make_shared<HuberLoss>(detail::parse_float(detail::option_value(options, "delta", kind, "loss"), "huber's delta"));
  if (kind == "weighted_softmax_cross_entropy") {
    const std::string list = detail::option_value(options, "weights", kind, "loss");
    std::vector<float> w;
    std::size_t at = 0;
    while (at <= list.size() && w.size() <= (std::size_t{1} << 20)) {
      std::size_t end = list.find(':', at);
      if (end == std::string::npos) end = list.size();
      w.push_back(detail::parse_float(list.substr(at, end - at), "class weight " + std::to_string(w.size())));
      at = end + 1;
    }
    return std::make_shared<WeightedSoftmaxCrossEntropy>(std::move(w));
  }
  LossFactory f;
  {
    auto& r = detail::loss_registry();
    const std::lock_guard lock(r.mutex);
    const auto it = r.factories.find(kind);
    detail::require(it != r.factories.end(), ErrorKind::format,
                    "loss kind '" + kind + "' is not registered: call tessera::register_loss(\"" + kind +
                        "\", factory) before loading this model");
    f = it->second;
  }
  auto op = f(options);
  detail::require(op && op->kind() == kind, ErrorKind::format,
                  "register_loss: the factory of '" + kind + "' made " + (op ? "a '" + op->kind() + "'" : "nothing"));
  return op;
}

}  // namespace tessera
