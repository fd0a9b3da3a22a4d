// Model selection with its tasks over MPI ranks: the grids of bench_model_selection
// (bench/model_selection.hpp: 12 points x 5 stratified folds of the digits training split, Adam,
// batch 32, refit of the best point tested on the 359 test rows) through select::search with
// tasks::OnRanks, one rank per core's share (threads_per_rank 1):
//   ranks    ranks_per_task 1, Trainer<>: every rank trains whole tasks (with 1 rank: sequential)
//   groups   ranks_per_task 2, Trainer<Reduce<MpiAllreduce>>: groups of 2 ranks each train a task
//            data-parallel (16 rows per rank and step); the refit spans every rank
// Only rank 0 prints. The 1-rank sequential baseline is the same program under mpirun -np 1.
//
//   mpirun -np 4 bench_mpi_tasks [digits.csv] [--grids softmax,mlp64,uneven] [--modes ranks,groups]
//                                [--epochs N] [--json FILE]
#include <tessera/mpi.hpp>
#include <tessera/tasks/mpi.hpp>
#include <tessera/tessera.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "../model_selection.hpp"

using namespace tessera;
using bench::SearchSummary;

int main(int argc, char** argv) {
  mpi::Environment env(&argc, &argv);
  const mpi::Communicator world = mpi::Communicator::world();
  const bool root = world.rank() == 0;
  try {
    std::string path = std::string(TESSERA_DATA_DIR) + "/digits.csv", json_path, grids = "softmax,mlp64,uneven",
                modes = "ranks,groups";
    std::size_t epochs = 30;
    for (int i = 1; i < argc; ++i) {
      if (!std::strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
      else if (!std::strcmp(argv[i], "--grids") && i + 1 < argc) grids = argv[++i];
      else if (!std::strcmp(argv[i], "--modes") && i + 1 < argc) modes = argv[++i];
      else if (!std::strcmp(argv[i], "--epochs") && i + 1 < argc) epochs = std::strtoul(argv[++i], nullptr, 10);
      else if (argv[i][0] == '-') {
        if (root)
          std::fprintf(stderr, "usage: %s [digits.csv] [--grids softmax,mlp64,uneven] [--modes ranks,groups] "
                               "[--epochs N] [--json FILE]\n", argv[0]);
        return 2;
      } else path = argv[i];
    }
    const auto size = static_cast<std::size_t>(world.size());
    const auto [train, test] = bench::digits_split(path);
    const select::SearchOptions o{.folds = bench::model_selection_folds, .standardize = true, .refit = true};
    if (root)
      std::printf("digits: train %zu, test %zu; %zu ranks; 5 stratified folds; Adam, batch %zu, %zu epochs\n\n"
                  "%-8s %-7s %6s %6s %10s  %-8s %-8s %s\n",
                  train.rows(), test.rows(), size, bench::model_selection_batch, epochs, "grid", "mode", "groups",
                  "tasks", "seconds", "best cv", "test acc", "best point");
    std::string json = "{\"ranks\": " + std::to_string(size) + ", \"epochs\": " + std::to_string(epochs) + ", \"runs\": [";
    bool first = true;
    for (const bench::GridSpec& g : bench::model_selection_grids(epochs)) {
      if (!bench::listed(grids, g.name)) continue;
      const std::vector<select::Candidate> points = g.grid.points();
      for (const std::string mode : {"ranks", "groups"}) {
        if (!bench::listed(modes, mode)) continue;
        const std::size_t per_task = mode == "ranks" ? 1 : 2;
        if (size % per_task) continue;
        const tasks::OnRanks where{{.ranks_per_task = per_task, .threads_per_rank = 1}};
        world.barrier("the start of a search");
        const SearchSummary s =
            per_task == 1 ? SearchSummary(select::search<Trainer<>>(train, points, o, where), test)
                          : SearchSummary(select::search<Trainer<Reduce<MpiAllreduce>>>(train, points, o, where), test);
        if (root) {
          std::printf("%-8s %-7s %6zu %6zu %10.3f  %.4f   %.4f   %s\n", g.name.c_str(), mode.c_str(), size / per_task,
                      points.size() * o.folds.k, s.seconds, s.best_cv, s.test_accuracy, s.best.c_str());
          if (s.failed) std::printf("         %zu points failed, e.g. %s\n", s.failed, s.first_error.c_str());
        }
        json += std::string(first ? "" : ", ") + "{\"grid\": \"" + g.name + "\", \"mode\": \"" + mode +
                "\", \"ranks_per_task\": " + std::to_string(per_task) + ", \"result\": " + s.json() + "}";
        first = false;
      }
    }
    json += "]}\n";
    if (root && !json_path.empty()) {
      std::ofstream f(json_path);
      f << json;
      if (!f) throw Error(ErrorKind::io, "cannot write " + json_path);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_mpi_tasks (rank %d): %s\n", world.rank(), e.what());
    return 1;
  }
}
