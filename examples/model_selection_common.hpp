// The program shared by examples/model_selection.cpp (tasks on the threads of one process) and
// examples/mpi/model_selection_mpi.cpp (tasks on groups of MPI ranks): the digits split as in
// examples/digits.cpp, a grid of softmax regression and an MLP over learning rate and weight decay
// cross-validated with stratified k folds, the best point refit on the training rows and tested,
// and an ensemble of three seeds of the best candidate.
//
// Every task trains in deterministic mode, so the scores, the best point and the accuracies are
// the same bits however the tasks are spread: 2 slots x 1 thread, 1 slot x 2 threads, or groups
// of 2 ranks (only the times change).
#pragma once

#include <tessera/tessera.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace model_selection {

using namespace tessera;

/// What both programs take from the command line.
struct Settings {
  std::string path = std::string(TESSERA_DATA_DIR) + "/digits.csv";
  std::size_t epochs = 15;  ///< of every fold's fit, the refit and the ensemble's members
  std::size_t folds = 5;
};

/// A count from the command line: a whole number of at least `least`, or an Error naming the flag.
inline std::size_t count_of(const char* flag, const char* text, std::size_t least) {
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (errno || end == text || *end || text[0] == '-' || v < least || v > 1u << 20)
    throw Error(ErrorKind::invalid_argument,
                std::string(flag) + " takes a whole number of at least " + std::to_string(least) + ", got '" + text + "'");
  return static_cast<std::size_t>(v);
}

/// "1 slot", "2 slots".
inline std::string count_noun(std::size_t n, const char* noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

/// Reads the options both programs have (--epochs, --folds, a data path) at argv[i], moving i
/// past a flag's value; false for an argument it does not know.
inline bool parse_common(int& i, int argc, char** argv, Settings& s) {
  const bool has_value = i + 1 < argc;
  if (!std::strcmp(argv[i], "--epochs") && has_value) {
    s.epochs = count_of("--epochs", argv[++i], 1);
  } else if (!std::strcmp(argv[i], "--folds") && has_value) {
    s.folds = count_of("--folds", argv[++i], 2);
  } else if (argv[i][0] != '-') {
    s.path = argv[i];
  } else {
    return false;
  }
  return true;
}

/// The grid: softmax regression and an MLP 64-64-10 (ReLU), each at three learning rates of Adam
/// and two weight decays: 12 points, with a global batch of 32 rows per step.
inline std::vector<select::Candidate> grid(const Settings& s) {
  return select::Grid{
      .base = {.optimizer = optim::adam(1e-2), .batch_size = 32, .epochs = s.epochs, .seed = 42},
      .hidden = {{}, {64}},
      .learning_rates = {3e-3, 1e-2, 3e-2},
      .weight_decays = {0.0f, 1e-3f},
  }
      .points();
}

/// Runs the whole example with the tasks on `runner`; prints (when `print`) the table, the best
/// point, its refit's test accuracy and the ensemble's. `where` describes the runner for the
/// output. TrainerT is the trainer of every task (and of the refit).
template <class TrainerT, class Runner>
void run(const Settings& s, const Runner& runner, const std::string& where, bool print) {
  const data::Dataset digits = data::read_csv(s.path, {.label = data::last_column, .num_classes = 10});
  const auto [train, test] = data::train_test_split(digits, {.test_fraction = 0.2, .seed = 42});
  const std::vector<select::Candidate> points = grid(s);
  if (print) {
    std::printf("digits: %zu samples x %zu features; train %zu, test %zu (seed 42)\n", digits.rows(), digits.cols(),
                train.rows(), test.rows());
    std::printf("grid: %zu points x %zu stratified folds = %zu tasks, %s\n\n", points.size(), s.folds,
                points.size() * s.folds, where.c_str());
  }

  // Each fold standardizes on its own training rows; every task trains in deterministic mode.
  const select::SearchOptions options{.folds = {s.folds, 42, true}, .standardize = true, .deterministic = true};
  const select::SearchResult r = select::search<TrainerT>(train, points, options, runner);
  const select::PointResult& best = r.best_point();  // throws when every point failed
  const double refit_accuracy = metrics::accuracy(r.model.predict_classes_raw(test.x()), test.targets);

  // Three seeds of the best candidate, trained at once on all the training rows, probabilities averaged.
  std::vector<select::Candidate> members(3, best.candidate);
  for (std::size_t i = 0; i < members.size(); ++i) members[i].seed = i + 1;
  const select::Ensemble ensemble = select::train_ensemble<TrainerT>(train, members, options, runner);
  if (!print) return;

  std::printf("%s\n", r.table().c_str());
  std::printf("best: #%zu %s, cross-validated %s %.4f +- %.4f\n", r.best, best.candidate.describe().c_str(),
              select::to_string(r.metric), best.scores.mean, best.scores.stddev);
  std::printf("refit on all %zu training rows: test accuracy %.4f\n", train.rows(), refit_accuracy);
  std::printf("ensemble of %zu seeds (1, 2, 3) of the best candidate:", ensemble.members.size());
  for (const Model& m : ensemble.members)
    std::printf(" %.4f", metrics::accuracy(m.predict_classes_raw(test.x()), test.targets));
  std::printf(" alone; together: test accuracy %.4f\n", ensemble.accuracy(test));
  for (const std::string& e : ensemble.errors) std::printf("  failed: %s\n", e.c_str());
  std::printf("search %.2f s (%.2f s of training in the folds), refit included\n", r.seconds, [&] {
    double t = 0.0;
    for (const select::PointResult& p : r.points) t += p.scores.seconds;
    return t;
  }());
}

}  // namespace model_selection
