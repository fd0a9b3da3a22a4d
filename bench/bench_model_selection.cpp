// Model selection on the task pool: grid searches with 5-fold stratified cross-validation on the
// digits example's training split (data/digits.csv, train_test_split seed 42: 1438 rows, 359 test),
// each fold standardized on its own training rows, Adam, then a refit of the best point tested on
// the 359 test rows. Each grid (bench/model_selection.hpp: softmax and mlp64 of equal costs, uneven
// mixing softmax regression and an MLP 64-256-10) runs sequentially (1 slot of 1 thread) and on 2
// slots of 1 thread (tasks::OnThreads), for the task pool's speedup. Then the 5-fold accuracy of
// one softmax regression with the L2 penalty of scikit-learn's LogisticRegression(C = 1).
//
//   bench_model_selection [digits.csv] [--grids softmax,mlp64,uneven,cv] [--epochs N]
//                         [--export DIR] [--json FILE]
//
// --export writes DIR/train.csv and DIR/test.csv (the split, as examples/digits --export-split) and
// DIR/folds.csv (the fold that tests each training row: data::fold_of_rows with the search's
// KFold), so that bench/sklearn_model_selection.py uses the same rows and the same folds.
// TESSERA_BENCH_TABLE=1 prints every search's table.
#include <tessera/tessera.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "model_selection.hpp"

using namespace tessera;
using bench::model_selection_batch;
using bench::model_selection_folds;
using bench::SearchSummary;

namespace {


void write_folds(const data::Dataset& train, const std::string& path) {
  std::ofstream f(path);
  f << "fold\n";
  for (std::size_t fold : data::fold_of_rows(train, model_selection_folds)) f << fold << '\n';
  if (!f) throw Error(ErrorKind::io, "cannot write " + path);
}

SearchSummary run_grid(const data::Dataset& train, const data::Dataset& test,
                       const std::vector<select::Candidate>& points, const tasks::OnThreads& where) {
  const select::SearchOptions o{.folds = model_selection_folds, .standardize = true,
                                .metric = select::Metric::automatic, .deterministic = false, .refit = true};
  return SearchSummary(select::search<Trainer<>>(train, points, o, where), test);
}

}  // namespace

int main(int argc, char** argv) try {
  std::string path = std::string(TESSERA_DATA_DIR) + "/digits.csv", export_dir, json_path,
              which = "softmax,mlp64,uneven,cv";
  std::size_t epochs = 30;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--export") && i + 1 < argc) export_dir = argv[++i];
    else if (!std::strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
    else if (!std::strcmp(argv[i], "--grids") && i + 1 < argc) which = argv[++i];
    else if (!std::strcmp(argv[i], "--epochs") && i + 1 < argc) epochs = std::strtoul(argv[++i], nullptr, 10);
    else if (argv[i][0] == '-') {
      std::fprintf(stderr,
                   "usage: %s [digits.csv] [--grids softmax,mlp64,uneven,cv] [--epochs N] [--export DIR] [--json FILE]\n",
                   argv[0]);
      return 2;
    } else path = argv[i];
  }

  const auto [train, test] = bench::digits_split(path);
  std::printf("digits: train %zu, test %zu (split seed 42); %zu stratified folds (seed %llu), standardized per fold; "
              "Adam, batch %zu, %zu epochs\n",
              train.rows(), test.rows(), model_selection_folds.k,
              static_cast<unsigned long long>(model_selection_folds.seed), model_selection_batch, epochs);
  if (!export_dir.empty()) {
    std::filesystem::create_directories(export_dir);
    data::write_csv(train, export_dir + "/train.csv");
    data::write_csv(test, export_dir + "/test.csv");
    write_folds(train, export_dir + "/folds.csv");
    std::printf("wrote %s/train.csv, test.csv and folds.csv\n", export_dir.c_str());
  }

  // cores = 1 keeps the sequential search's refit on one thread too; the 2-slot search refits on
  // both cores (2 workers).
  const tasks::OnThreads sequential{{.slots = 1, .threads_per_task = 1, .cores = 1}};
  const tasks::OnThreads two_slots{{.slots = 2, .threads_per_task = 1, .cores = 2}};
  std::string json = "{\"epochs\": " + std::to_string(epochs) + ", \"grids\": {";
  bool first = true;
  std::printf("\n%-8s %6s %6s %10s %10s %8s  %-8s %-8s %s\n", "grid", "points", "tasks", "1 slot s", "2 slots s",
              "speedup", "best cv", "test acc", "best point (2 slots; the 1-slot refit's test accuracy in brackets)");
  for (const bench::GridSpec& g : bench::model_selection_grids(epochs)) {
    if (!bench::listed(which, g.name)) continue;
    const std::vector<select::Candidate> points = g.grid.points();
    const SearchSummary seq = run_grid(train, test, points, sequential);
    const SearchSummary par = run_grid(train, test, points, two_slots);
    std::printf("%-8s %6zu %6zu %10.3f %10.3f %7.2fx  %.4f   %.4f   %s (%.4f)%s\n", g.name.c_str(), points.size(),
                points.size() * model_selection_folds.k, seq.seconds, par.seconds, seq.seconds / par.seconds,
                par.best_cv, par.test_accuracy, par.best.c_str(), seq.test_accuracy,
                seq.best == par.best && seq.best_cv == par.best_cv ? "" : "  [the 1-slot search found another best]");
    std::printf("         fold fits %.3f s summed (1 slot), %.3f s (2 slots); 1 slot's refit and bookkeeping %.3f s\n",
                seq.task_seconds, par.task_seconds, seq.seconds - seq.task_seconds);
    if (seq.failed + par.failed)
      std::printf("         %zu points failed, e.g. %s\n", seq.failed + par.failed,
                  (seq.failed ? seq : par).first_error.c_str());
    json += std::string(first ? "" : ", ") + "\"" + g.name + "\": {\"sequential\": " + seq.json() +
            ", \"two_slots\": " + par.json() + "}";
    first = false;
  }
  json += "}";
  if (bench::listed(which, "cv")) {
    // The L2 penalty of LogisticRegression(C = 1): sklearn minimises C * sum(loss) + |W|^2 / 2,
    // that is mean(loss) + |W|^2 / (2 C n) over the n training rows of a fold, and tessera's
    // weight decay wd adds wd |W|^2 / 2 to the mean loss: wd = 1 / (C n).
    const double n_fold = static_cast<double>(train.rows()) * static_cast<double>(model_selection_folds.k - 1) /
                          static_cast<double>(model_selection_folds.k);
    const select::Candidate c{.weight_decay = static_cast<float>(1.0 / n_fold), .optimizer = optim::adam(1e-2),
                              .batch_size = model_selection_batch, .epochs = 100, .seed = 1};
    const select::SearchOptions o{.folds = model_selection_folds, .standardize = true};
    const select::Scores s = select::cross_validate<Trainer<>>(train, c, o, two_slots);
    std::printf("\n5-fold CV, %s: mean accuracy %.4f (std %.4f), fold fits %.3f s summed; folds",
                c.describe().c_str(), s.mean, s.stddev, s.seconds);
    for (double f : s.folds) std::printf(" %.4f", f);
    std::printf("\n");
    char b[256];
    std::snprintf(b, sizeof b, ", \"cv_softmax\": {\"mean\": %.6f, \"std\": %.6f, \"weight_decay\": %.6g}", s.mean,
                  s.stddev, static_cast<double>(c.weight_decay));
    json += b;
  }
  json += "}\n";
  if (!json_path.empty()) {
    std::ofstream f(json_path);
    f << json;
    if (!f) throw Error(ErrorKind::io, "cannot write " + json_path);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_model_selection: %s\n", e.what());
  return 1;
}
