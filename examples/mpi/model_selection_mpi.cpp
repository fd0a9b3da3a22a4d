// examples/model_selection.cpp across MPI ranks: the same grid, folds, refit and ensemble, with
// the tasks on groups of `--ranks-per-task` consecutive ranks. Each group trains one task at a
// time, data-parallel over its ranks (Reduce<MpiAllreduce> on the group's communicator), and
// takes the next task as soon as it is free; every rank ends with every result, and rank 0
// prints them (docs/model_selection.md).
//
//   mpirun -np 4 model_selection_mpi [path/to/digits.csv] [--ranks-per-task N] [--epochs N] [--folds K]
//
// Every task trains in deterministic mode, so the output is the same bits as
// examples/model_selection's with the same --epochs and --folds (only the times change).
#include <tessera/tasks/mpi.hpp>

#include "../model_selection_common.hpp"

int main(int argc, char** argv) {
  tessera::mpi::Environment env(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  try {
    model_selection::Settings s;
    tessera::tasks::RankOptions options{.ranks_per_task = 2};
    for (int i = 1; i < argc; ++i) {
      if (model_selection::parse_common(i, argc, argv, s)) continue;
      if (!std::strcmp(argv[i], "--ranks-per-task") && i + 1 < argc) {
        options.ranks_per_task = model_selection::count_of("--ranks-per-task", argv[++i], 1);
      } else {
        if (rank == 0)
          std::fprintf(stderr, "usage: mpirun -np N %s [digits.csv] [--ranks-per-task N] [--epochs N] [--folds K]\n",
                       argv[0]);
        return 2;
      }
    }
    const auto world = static_cast<std::size_t>(ranks), g = options.ranks_per_task;
    if (world % g)  // tasks::run_on_ranks refuses it too, but before the header is printed
      throw tessera::Error(tessera::ErrorKind::invalid_argument,
                           "--ranks-per-task " + std::to_string(g) + " does not divide the " + std::to_string(world) +
                               " ranks into equal groups");
    const std::string where = model_selection::count_noun(world, "rank") + " as " +
                              model_selection::count_noun(world / g, "group") + " of " + std::to_string(g);
    model_selection::run<tessera::Trainer<tessera::DataSplit<tessera::Random>, tessera::Reduce<tessera::MpiAllreduce>>>(
        s, tessera::tasks::OnRanks{options}, where, rank == 0);
  } catch (const std::exception& e) {  // the same refusal on every rank: rank 0 says it
    if (rank == 0) std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
