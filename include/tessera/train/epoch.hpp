// tessera/train/epoch.hpp - the end of a training epoch, the same for every engine (data-parallel
// threads and ranks, partitions, GPUs): the epoch's record, validation on the parameters reached,
// the progress line, the history and the user's callbacks.
#pragma once

#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <string>

#include "tessera/data/dataset.hpp"
#include "tessera/model/model.hpp"
#include "tessera/train/history.hpp"
#include "tessera/train/progress.hpp"

namespace tessera::detail {

/// The record of epoch `epoch` (0-based) over `n` samples from an engine's result `r` (loss sum,
/// learning rate, compute and communication seconds), which took `seconds`.
template <class Result>
EpochRecord epoch_record(const Result& r, std::size_t epoch, std::size_t n, const Architecture& arch, double seconds) {
  EpochRecord rec;
  rec.epoch = epoch + 1;
  rec.loss = r.loss_sum / loss_normaliser(arch.loss, n, arch.output_dim());
  rec.learning_rate = r.learning_rate;
  rec.seconds = seconds;
  rec.compute_seconds = r.compute_seconds;
  rec.communication_seconds = r.communication_seconds;
  rec.samples_per_second = static_cast<double>(n) / seconds;
  return rec;
}

/// Throws that the fit diverged at `epoch` (1-based): as a CollectiveError when every rank reaches
/// the same verdict at the same point (`collective`), so that none is told of another's failure.
[[noreturn]] inline void diverged(const std::string& what, std::size_t epoch, bool collective) {
  const std::string msg = "Trainer::fit: " + what + " in epoch " + std::to_string(epoch) +
                          "; the model is left unchanged. Lower the learning rate or standardise the features";
  if (collective) throw CollectiveError(ErrorKind::runtime, msg);
  throw Error(ErrorKind::runtime, msg);
}

/// Closes an epoch: checks that the parameters reached, `parameters()`, are finite (a last update
/// can overflow after the last loss was checked), evaluates `validation` (if any) with
/// `evaluate(model)` on a copy of `model` holding them (a non-finite validation loss is a
/// divergence too), shows the epoch on the progress line, appends the record to `h` and calls
/// every callback's `on_epoch(rec)`. Returns false when a callback asks to stop. `collective`:
/// every rank holds the same parameters, so every rank throws the same divergence at once.
template <class Evaluate, class Parameters, class... Callbacks>
bool close_epoch(EpochRecord& rec, const Model& model, const data::Dataset* validation, Evaluate&& evaluate,
                 Parameters&& parameters, ProgressLine& progress, History& h, bool collective, Callbacks&... cbs) {
  const auto p = parameters();
  for (std::size_t i = 0; i < p.size(); ++i)
    if (!std::isfinite(p[i]))
      diverged("the parameters became non-finite (parameter " + std::to_string(i) + " is " + std::to_string(p[i]) + ")",
               rec.epoch, collective);
  if (validation) {
    Model snapshot = model;
    std::copy(p.begin(), p.end(), snapshot.parameters().begin());
    const auto e = evaluate(snapshot, *validation);
    rec.validation_loss = e.loss;
    rec.validation_metric = is_classification(model.loss()) ? e.accuracy : e.r2;
    if (!std::isfinite(e.loss)) diverged("the validation loss became " + std::to_string(e.loss), rec.epoch, collective);
  }
  progress.epoch_end(rec.epoch - 1, rec.loss, rec.samples_per_second);
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
  return go_on;
}

}  // namespace tessera::detail
