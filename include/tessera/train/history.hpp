// tessera/train/history.hpp - what a fit returns: one record per epoch, writable as CSV or JSON.
#pragma once

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/file.hpp"
#include "tessera/core/writer.hpp"

namespace tessera {

/// One epoch of a fit.
struct EpochRecord {
  std::size_t epoch = 0;                ///< 1-based
  double loss = 0.0;                    ///< mean training loss over the epoch's samples
  double learning_rate = 0.0;           ///< rate at the end of the epoch
  double seconds = 0.0;                 ///< wall time of the epoch
  double compute_seconds = 0.0;         ///< forward, backward and update
  double communication_seconds = 0.0;   ///< gradient or parameter exchange between workers
  /// Training throughput.
  double samples_per_second = 0.0;
  double validation_loss = NAN;         ///< when a validation set was given
  double validation_metric = NAN;       ///< accuracy for classification, R^2 for regression
  double bubble_fraction = NAN;         ///< Partition<Layerwise>: share of worker time spent idle
};

/// What a fit did, epoch by epoch.
struct History {
  /// One record per epoch.
  std::vector<EpochRecord> epochs;
  /// Wall time of the whole fit.
  double total_seconds = 0.0;
  std::size_t samples = 0;  ///< training samples per epoch
  std::size_t workers = 1;  ///< workers of all processes together
  bool interrupted = false; ///< the fit stopped on a signal (StopOnSignal) before its last epoch

  /// True before the first epoch.
  [[nodiscard]] bool empty() const noexcept { return epochs.empty(); }
  /// The last epoch. Throws Error (ErrorKind::invalid_argument) when empty.
  [[nodiscard]] const EpochRecord& last() const {
    detail::require(!epochs.empty(), ErrorKind::invalid_argument, "History::last: no epoch was run");
    return epochs.back();
  }

  /// One header line and one line per epoch.
  [[nodiscard]] std::string to_csv() const {
    std::string s = "epoch,loss,learning_rate,seconds,compute_seconds,communication_seconds,samples_per_second,"
                    "validation_loss,validation_metric,bubble_fraction\n";
    for (const auto& e : epochs) {
      char line[512];
      std::snprintf(line, sizeof line, "%zu,%.9g,%.9g,%.6f,%.6f,%.6f,%.1f,%.9g,%.9g,%.6g\n", e.epoch, e.loss,
                    e.learning_rate, e.seconds, e.compute_seconds, e.communication_seconds, e.samples_per_second,
                    e.validation_loss, e.validation_metric, e.bubble_fraction);
      s += line;
    }
    return s;
  }

  /// The history as a JSON object.
  [[nodiscard]] std::string to_json() const {
    auto num = [](double v) {
      if (!std::isfinite(v)) return std::string("null");
      char b[64];
      std::snprintf(b, sizeof b, "%.9g", v);
      return std::string(b);
    };
    std::string s = "{\"samples\": " + std::to_string(samples) + ", \"workers\": " + std::to_string(workers) +
                    ", \"total_seconds\": " + num(total_seconds) + ", \"interrupted\": " +
                    (interrupted ? "true" : "false") + ", \"epochs\": [";
    for (std::size_t i = 0; i < epochs.size(); ++i) {
      const auto& e = epochs[i];
      s += (i ? ", " : "") + std::string("{\"epoch\": ") + std::to_string(e.epoch) + ", \"loss\": " + num(e.loss) +
           ", \"learning_rate\": " + num(e.learning_rate) + ", \"seconds\": " + num(e.seconds) +
           ", \"compute_seconds\": " + num(e.compute_seconds) + ", \"communication_seconds\": " +
           num(e.communication_seconds) + ", \"samples_per_second\": " + num(e.samples_per_second) +
           ", \"validation_loss\": " + num(e.validation_loss) + ", \"validation_metric\": " +
           num(e.validation_metric) + ", \"bubble_fraction\": " + num(e.bubble_fraction) + "}";
    }
    return s + "]}\n";
  }

  /// Writes the history to `path`, atomically. Under mpi::Environment writing is collective, as
  /// for save(): every rank calls it, rank 0 writes, every rank returns once the file is in place.
  void write_csv(const std::string& path) const { write(path, to_csv()); }
  /// Same as write_csv(), in JSON.
  void write_json(const std::string& path) const { write(path, to_json()); }

 private:
  static void write(const std::string& path, const std::string& text) {
    detail::run_file_write([&] {
      detail::AtomicFile f(path);
      f.write(text.data(), text.size());
      f.commit();
    });
  }
};

}  // namespace tessera
