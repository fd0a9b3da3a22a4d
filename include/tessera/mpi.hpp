// tessera/mpi.hpp - tessera across processes with Open MPI: Reduce<MpiAllreduce>. Needs the CMake
// component `mpi` (find_package(tessera CONFIG COMPONENTS mpi), target tessera::mpi); the default
// headers never include <mpi.h>.
//
// Data parallelism runs worker threads in every process (comm/two_level.hpp); the partitioned
// engines (tessera/partition.hpp) run one worker per process. Both are the engines of one process,
// on a communicator over MPI_COMM_WORLD.
#pragma once

#include <memory>
#include <string>

#include "tessera/comm/mpi_comm.hpp"
#include "tessera/comm/mpi_lane.hpp"
#include "tessera/data/binary.hpp"
#include "tessera/model/model.hpp"
#include "tessera/trainer.hpp"

namespace tessera::mpi {

/// What every rank must agree on before training together: the architecture, the parameter
/// count and the weight decay.
inline std::string signature(const Model& m) {
  return m.architecture().describe() + " | " + std::to_string(m.parameter_count()) + " parameters | weight_decay " +
         std::to_string(m.weight_decay());
}

/// This rank's shard of a TSRD file (data::read_binary_shard with index = rank and count = size of
/// MPI_COMM_WORLD): each rank reads and holds only about 1/size of the rows.
inline data::Dataset read_binary_shard(const std::string& path) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return data::read_binary_shard(path, static_cast<std::size_t>(rank), static_cast<std::size_t>(size));
}

}  // namespace tessera::mpi

namespace tessera::detail {

/// Reduce<MpiAllreduce>: every process of MPI_COMM_WORLD trains; data parallelism with worker
/// threads in each, the partitions with one worker per process.
template <>
struct GroupFor<MpiAllreduce, Cpu> {
  static constexpr bool available = true;
  template <bool OnePerProcess>
  static auto make(const GroupRequest& q) {
    if constexpr (OnePerProcess) return std::make_unique<comm::MpiGroup>();
    else return std::make_unique<comm::MpiThreadsGroup>(q.workers);
  }
};

/// Trainer::evaluate on per-rank shards: the per-row tables summed over the ranks of the fit's
/// communicator (MPI_COMM_WORLD, or an mpi::Scope's).
template <>
struct ProcessSum<MpiAllreduce> {
  /// Every rank checks that it holds its own shard of one split over the ranks of the fit, and
  /// the ranks agree on the whole data set's rows and the table's width: a problem anywhere stops
  /// every rank, naming it.
  static void check(const data::Dataset& d, std::size_t width) {
    int main = 0;
    MPI_Is_thread_main(&main);
    require(main != 0, ErrorKind::invalid_argument,
            "Trainer::evaluate: shards are evaluated across MPI ranks, on the thread that initialised MPI; this "
            "is another thread (a slot of tasks::run?)");
    const auto c = mpi::current();
    const auto size = static_cast<std::size_t>(c->size()), rank = static_cast<std::size_t>(c->rank());
    std::string problem;
    if (d.shard.count != size) {
      problem = "the data set is split into " + std::to_string(d.shard.count) + " shards for " + std::to_string(size) +
                " ranks";
    } else if (d.shard.index != rank) {
      problem = "rank " + std::to_string(rank) + " holds shard " + std::to_string(d.shard.index);
    } else {
      const auto [lo, hi] = data::shard_rows(d.shard.total_rows, d.shard.index, d.shard.count);
      if (d.shard.first_row != lo || d.rows() != hi - lo)
        problem = "shard " + std::to_string(d.shard.index) + " holds rows [" + std::to_string(d.shard.first_row) + ", " +
                  std::to_string(d.shard.first_row + d.rows()) + ") of " + std::to_string(d.shard.total_rows) +
                  ", data::shard_rows gives [" + std::to_string(lo) + ", " + std::to_string(hi) + ")";
    }
    c->agree("evaluation on shards",
             problem.empty() ? std::to_string(d.shard.total_rows) + " rows | " + std::to_string(width) + " values per row"
                             : "this rank cannot evaluate: " + problem);
    require(problem.empty(), ErrorKind::invalid_argument, "Trainer::evaluate: " + problem);
  }
  /// The per-row tables added over the ranks.
  static void sum(double* p, std::size_t n) { mpi::current()->all_reduce(p, n, "evaluation rows"); }
};

}  // namespace tessera::detail
