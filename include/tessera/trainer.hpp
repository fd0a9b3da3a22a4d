// tessera/trainer.hpp - Trainer<Policies...>: the one place where the policy families meet.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "tessera/data/dataset.hpp"
#include "tessera/eval/metrics.hpp"
#include "tessera/model/model.hpp"
#include "tessera/optim/update.hpp"
#include "tessera/policies.hpp"
#include "tessera/split/order.hpp"
#include "tessera/train/history.hpp"
#include "tessera/train/progress.hpp"

namespace tessera {

struct TrainerOptions {
  std::size_t batch_size = 32;  ///< samples per step (the last batch of an epoch may be smaller)
  std::size_t epochs = 10;
  std::uint64_t seed = 0;       ///< keys every shuffle of the run
  Progress progress = Progress::automatic;
};

/// Loss and the metrics that apply to the model's loss (NaN where they do not).
struct Evaluation {
  double loss = NAN;
  double accuracy = NAN;  ///< classification
  double log_loss = NAN;  ///< classification
  double mse = NAN;       ///< regression
  double r2 = NAN;        ///< regression
};

template <class... Ps>
class Trainer {
 public:
  using policies = PolicySet<Ps...>;
  using device = typename policies::device;

  Trainer(TrainerOptions options, optim::Optimizer optimizer) : opt_(options), optimizer_(optimizer) {
    detail::require(options.batch_size > 0, ErrorKind::invalid_argument, "Trainer: batch_size must be at least 1, got 0");
    detail::require(options.epochs > 0, ErrorKind::invalid_argument, "Trainer: epochs must be at least 1, got 0");
  }

  [[nodiscard]] const TrainerOptions& options() const noexcept { return opt_; }
  [[nodiscard]] const optim::Optimizer& optimizer() const noexcept { return optimizer_; }

  /// Trains `model` on `train`; the model's parameters change only if the whole fit succeeds.
  History fit(Model& model, const data::Dataset& train) { return fit_impl(model, train, nullptr); }

  /// Same, and evaluates on `validation` after every epoch. Each callback may define
  /// `on_epoch(const EpochRecord&)`, returning void or bool (false stops the fit early).
  template <class... Callbacks>
  History fit(Model& model, const data::Dataset& train, const data::Dataset& validation, Callbacks&&... cbs) {
    return fit_impl(model, train, &validation, cbs...);
  }

  [[nodiscard]] Evaluation evaluate(const Model& model, const data::Dataset& d) const {
    check_data(model, d, "Trainer::evaluate");
    Evaluation e;
    e.loss = model.loss_value(d.x(), d.targets);
    if (is_classification(model.loss())) {
      e.accuracy = metrics::accuracy(model, d);
      e.log_loss = metrics::log_loss(model, d);
    } else {
      const Matrix p = model.predict(d.x());
      e.mse = metrics::mse(p.values(), d.targets);
      e.r2 = metrics::r2(p.values(), d.targets);
    }
    return e;
  }

  [[nodiscard]] Matrix predict(const Model& model, MatrixView x) const { return model.predict(x); }

 private:
  using clock = std::chrono::steady_clock;
  static double seconds(clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

  static void check_data(const Model& model, const data::Dataset& d, const std::string& where) {
    detail::require(!d.empty(), ErrorKind::invalid_argument, where + ": the data set has no rows");
    detail::require(d.cols() == model.input_dim(), ErrorKind::shape,
                    where + ": the model (" + model.architecture().describe() + ") takes " +
                        std::to_string(model.input_dim()) + " features, the data set has " + std::to_string(d.cols()));
    detail::require(d.target_dim == model.architecture().target_dim(), ErrorKind::shape,
                    where + ": the model's loss " + to_string(model.loss()) + " needs " +
                        std::to_string(model.architecture().target_dim()) + " target value(s) per row, the data set has " +
                        std::to_string(d.target_dim));
    if (model.loss() == Loss::softmax_cross_entropy) data::check_class_labels(d, model.output_dim(), where);
    if (model.loss() == Loss::binary_cross_entropy) data::check_class_labels(d, 2, where);
  }

  template <class... Callbacks>
  History fit_impl(Model& model, const data::Dataset& train, const data::Dataset* validation, Callbacks&... cbs) {
    check_data(model, train, "Trainer::fit");
    if (validation) check_data(model, *validation, "Trainer::fit (validation set)");
    static_assert(std::same_as<device, Cpu>, "tessera::Trainer: Device<Cuda> needs #include <tessera/cuda.hpp>");

    const Architecture& arch = model.architecture();
    const std::size_t n = train.rows(), d = train.cols(), t = train.target_dim;
    const std::size_t batch = std::min(opt_.batch_size, n);
    const std::size_t steps = (n + batch - 1) / batch;

    Network<device> net(arch, batch);
    optim::State<device> state(optimizer_, model.parameter_count());
    std::vector<float> params(model.parameters().begin(), model.parameters().end());
    std::vector<float> grads(params.size());
    std::vector<float> xb(batch * d), yb(batch * t);
    detail::ProgressLine progress(opt_.progress, opt_.epochs, steps);

    History h;
    h.samples = n;
    const auto t0 = clock::now();
    for (std::size_t epoch = 0; epoch < opt_.epochs; ++epoch) {
      const auto e0 = clock::now();
      const auto order = detail::epoch_order<typename policies::split>(train, opt_.seed, static_cast<std::uint32_t>(epoch));
      double loss_sum = 0.0, lr = 0.0;
      for (std::size_t s = 0; s < steps; ++s) {
        const std::size_t first = s * batch, rows = std::min(batch, n - first);
        const float* x = train.features.row(first);
        const float* y = train.targets.data() + first * t;
        if (!order.empty()) {  // gather the batch in the epoch's order
          for (std::size_t r = 0; r < rows; ++r) {
            const std::size_t i = order[first + r];
            std::copy(train.features.row(i), train.features.row(i) + d, xb.data() + r * d);
            std::copy(train.targets.data() + i * t, train.targets.data() + (i + 1) * t, yb.data() + r * t);
          }
          x = xb.data();
          y = yb.data();
        }
        const double norm = detail::loss_normaliser(arch.loss, rows, arch.output_dim());
        const double batch_loss = net.forward_backward(params.data(), x, y, rows, grads.data(),
                                                       static_cast<float>(1.0 / norm), model.weight_decay());
        if (!std::isfinite(batch_loss))
          detail::fail(ErrorKind::runtime, "Trainer::fit: the loss became " + std::to_string(batch_loss) + " at epoch " +
                                               std::to_string(epoch + 1) + ", step " + std::to_string(s + 1) +
                                               "; the model is left unchanged. Lower the learning rate (" +
                                               optimizer_.describe() + ") or standardise the features");
        loss_sum += batch_loss;
        const double progress_epochs = static_cast<double>(epoch) + static_cast<double>(s + 1) / static_cast<double>(steps);
        lr = optimizer_.learning_rate * optimizer_.schedule.factor(progress_epochs - 1.0 / static_cast<double>(steps),
                                                                   static_cast<double>(opt_.epochs));
        state.step(params.data(), grads.data(), lr);
        progress.step(epoch, s, loss_sum / detail::loss_normaliser(arch.loss, first + rows, arch.output_dim()));
      }
      EpochRecord rec;
      rec.epoch = epoch + 1;
      rec.loss = loss_sum / detail::loss_normaliser(arch.loss, n, arch.output_dim());
      rec.learning_rate = lr;
      rec.seconds = rec.compute_seconds = seconds(e0, clock::now());
      rec.samples_per_second = static_cast<double>(n) / rec.seconds;
      if (validation) {
        Model snapshot = model;
        std::copy(params.begin(), params.end(), snapshot.parameters().begin());
        const Evaluation e = evaluate(snapshot, *validation);
        rec.validation_loss = e.loss;
        rec.validation_metric = is_classification(arch.loss) ? e.accuracy : e.r2;
      }
      progress.epoch_end(epoch, rec.loss, rec.samples_per_second);
      h.epochs.push_back(rec);
      bool go_on = true;
      (
          [&] {
            if constexpr (requires { { cbs.on_epoch(rec) } -> std::convertible_to<bool>; }) {
              go_on = cbs.on_epoch(rec) && go_on;
            } else if constexpr (requires { cbs.on_epoch(rec); }) {
              cbs.on_epoch(rec);
            }
          }(),
          ...);
      if (!go_on) break;
    }
    h.total_seconds = seconds(t0, clock::now());
    std::copy(params.begin(), params.end(), model.parameters().begin());
    return h;
  }

  TrainerOptions opt_;
  optim::Optimizer optimizer_;
};

}  // namespace tessera
