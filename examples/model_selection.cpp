// Model selection on the digits with task parallelism on the threads of one process: a grid of
// softmax regression and an MLP over learning rate and weight decay, cross-validated with 5
// stratified folds (12 points x 5 folds = 60 independent trainings, run `--slots` at a time with
// `--threads-per-task` cores each), the best point refit on all the training rows and tested, and
// an ensemble of three seeds of the best candidate (docs/model_selection.md).
//
//   model_selection [path/to/digits.csv] [--slots N] [--threads-per-task N] [--epochs N] [--folds K]
//
// Defaults: 2 slots x 1 thread, 15 epochs, 5 folds. Every task trains in deterministic mode, so
// the table is the same bits for any --slots and --threads-per-task (and under
// examples/mpi/model_selection_mpi with any --ranks-per-task).
#include "model_selection_common.hpp"

int main(int argc, char** argv) try {
  model_selection::Settings s;
  tessera::tasks::PoolOptions pool{.slots = 2, .threads_per_task = 1};
  for (int i = 1; i < argc; ++i) {
    if (model_selection::parse_common(i, argc, argv, s)) continue;
    if (!std::strcmp(argv[i], "--slots") && i + 1 < argc) {
      pool.slots = model_selection::count_of("--slots", argv[++i], 1);
    } else if (!std::strcmp(argv[i], "--threads-per-task") && i + 1 < argc) {
      pool.threads_per_task = model_selection::count_of("--threads-per-task", argv[++i], 1);
    } else {
      std::fprintf(stderr,
                   "usage: %s [digits.csv] [--slots N] [--threads-per-task N] [--epochs N] [--folds K]\n", argv[0]);
      return 2;
    }
  }
  const std::string where = model_selection::count_noun(pool.slots, "slot") + " x " +
                            model_selection::count_noun(pool.threads_per_task, "thread") + " per task";
  model_selection::run<tessera::Trainer<tessera::DataSplit<tessera::Random>>>(s, tessera::tasks::OnThreads{pool}, where,
                                                                              true);
  return 0;
} catch (const tessera::Error& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
