// bench/model_selection.hpp - what bench_model_selection and bench_mpi_tasks share: the digits
// training split, its folds, the grids searched and a summary of one search.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <tessera/tessera.hpp>

namespace tessera::bench {

/// The folds of every search (and of the exported folds.csv): 5, stratified, seed 7.
inline constexpr data::KFold model_selection_folds{5, 7, true};
/// Global rows per step of every candidate.
inline constexpr std::size_t model_selection_batch = 32;

/// The digits data and the example's split (test fraction 0.2, seed 42): 1438 and 359 rows.
inline std::pair<data::Dataset, data::Dataset> digits_split(const std::string& path) {
  const data::Dataset digits = data::read_csv(path, {.label = data::last_column, .num_classes = 10});
  return data::train_test_split(digits, {.test_fraction = 0.2, .seed = 42});
}

/// A named grid.
struct GridSpec {
  std::string name;
  select::Grid grid;
};

/// The grids, each of 12 points, Adam, batch 32, `epochs` epochs:
///   softmax  softmax regression, lr {1e-3,3e-3,1e-2,3e-2} x wd {0,1e-4,1e-3}   (equal costs)
///   mlp64    MLP 64-64-10 relu, the same 12 points                             (equal costs)
///   uneven   hidden {{}, {256}} x lr {1e-3,1e-2,3e-2} x wd {0,1e-3}            (uneven costs)
inline std::vector<GridSpec> model_selection_grids(std::size_t epochs) {
  const select::Candidate base{.optimizer = optim::adam(1e-2), .batch_size = model_selection_batch, .epochs = epochs,
                               .seed = 1};
  const std::vector<double> lr4{1e-3, 3e-3, 1e-2, 3e-2};
  const std::vector<float> wd3{0.0f, 1e-4f, 1e-3f};
  std::vector<GridSpec> out;
  out.push_back({"softmax", {.base = base, .hidden = {{}}, .learning_rates = lr4, .weight_decays = wd3}});
  out.push_back({"mlp64", {.base = base, .hidden = {{64}}, .learning_rates = lr4, .weight_decays = wd3}});
  out.push_back({"uneven",
                 {.base = base, .hidden = {{}, {256}}, .learning_rates = {1e-3, 1e-2, 3e-2}, .weight_decays = {0.0f, 1e-3f}}});
  return out;
}

/// Whether `name` is in the comma-separated list `list`.
inline bool listed(const std::string& list, const std::string& name) {
  return ("," + list + ",").find("," + name + ",") != std::string::npos;
}

/// What one search found and how long it took.
struct SearchSummary {
  double seconds = 0.0;
  /// The fold fits' own times summed: a 1-slot search's wall time less this is the refit and the
  /// bookkeeping.
  double task_seconds = 0.0;
  std::string best;
  double best_cv = 0.0, best_std = 0.0, test_accuracy = 0.0;
  std::size_t points = 0, failed = 0;
  std::string first_error;

  SearchSummary() = default;
  /// From a search result; the refit model tested on the raw rows `test`.
  SearchSummary(const select::SearchResult& r, const data::Dataset& test) {
    seconds = r.seconds;
    points = r.points.size();
    for (const auto& p : r.points) {
      task_seconds += p.scores.seconds;
      if (!p.scores.ok() && !failed++) first_error = p.scores.error;
    }
    const select::PointResult& b = r.best_point();
    best = b.candidate.describe();
    best_cv = b.scores.mean;
    best_std = b.scores.stddev;
    test_accuracy = metrics::accuracy(r.model.predict_classes_raw(test.x()), test.targets);
    if (std::getenv("TESSERA_BENCH_TABLE")) std::printf("%s", r.table().c_str());
  }
  /// As a JSON object.
  [[nodiscard]] std::string json() const {
    char b[1024];
    std::snprintf(b, sizeof b,
                  "{\"seconds\": %.6f, \"task_seconds\": %.6f, \"best\": \"%s\", \"best_cv\": %.6f, \"best_std\": %.6f, "
                  "\"test_accuracy\": %.6f, \"points\": %zu, \"failed\": %zu}",
                  seconds, task_seconds, best.c_str(), best_cv, best_std, test_accuracy, points, failed);
    return b;
  }
};

}  // namespace tessera::bench
