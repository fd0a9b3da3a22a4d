// tessera/tasks/mpi.hpp - the task pool over MPI ranks and groups of ranks (CMake component mpi).
//
// The ranks of MPI_COMM_WORLD form groups of `ranks_per_task` consecutive ranks (4 ranks as 2
// groups of 2: MPI_Comm_split). Each group runs one task at a time on all its ranks: a Trainer
// with Reduce<MpiAllreduce> inside the task trains data-parallel over the group's ranks, since the
// pool puts an mpi::Scope with a fresh communicator of the group around every task. The group's
// first rank takes the next task index from a counter on world rank 0 (an MPI atomic
// fetch-and-add, so a free group never waits for a busy one: dynamic balancing), and tells its
// group. At the end every rank holds every task's outcome, in task order.
//
// Failures stay inside the task: the task's communicator contains them (a rank that fails tells
// only its group, whose ranks throw at their next wait), the task's outcome records the error,
// and the group goes on with the next task on a new communicator. A rank that dies ends the job as
// before; a task that runs long only makes the others wait at the end (that wait has no time
// limit, but still ends on a failure or a rank leaving the program).
#pragma once

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/mpi.hpp"
#include "tessera/tasks/pool.hpp"

namespace tessera::tasks {

/// How the ranks share the tasks.
struct RankOptions {
  /// Ranks that train each task together (a group); the world size must be a multiple of it.
  std::size_t ranks_per_task = 1;
  /// Cores each rank uses for its task; 0: this machine's hardware threads / the ranks on it.
  std::size_t threads_per_rank = 0;
};

namespace detail_mpi_pool {

/// The counter the groups take task indices from: one 64-bit integer on world rank 0.
class Counter {
 public:
  explicit Counter(MPI_Comm world) {
    std::int64_t* base = nullptr;
    int rank = 0;
    MPI_Comm_rank(world, &rank);
    const MPI_Aint bytes = rank == 0 ? static_cast<MPI_Aint>(sizeof(std::int64_t)) : 0;
    if (MPI_Win_allocate(bytes, sizeof(std::int64_t), MPI_INFO_NULL, world, &base, &win_) != MPI_SUCCESS)
      throw Error(ErrorKind::runtime, "tasks::run_on_ranks: MPI_Win_allocate failed");
    MPI_Win_set_errhandler(win_, MPI_ERRORS_RETURN);
    if (rank == 0) {
      MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, win_);
      *base = 0;
      MPI_Win_unlock(0, win_);
    }
  }
  ~Counter() {
    if (!mpi::job_failed()) MPI_Win_free(&win_);
  }
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;
  /// The next index (atomically, from any rank).
  std::int64_t next() {
    const std::int64_t one = 1;
    std::int64_t got = 0;
    if (MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, win_) != MPI_SUCCESS ||
        MPI_Fetch_and_op(&one, &got, MPI_INT64_T, 0, 0, MPI_SUM, win_) != MPI_SUCCESS || MPI_Win_unlock(0, win_) != MPI_SUCCESS)
      throw Error(ErrorKind::runtime, "tasks::run_on_ranks: the task counter on rank 0 (MPI_Fetch_and_op) failed");
    return got;
  }

 private:
  MPI_Win win_ = MPI_WIN_NULL;
};

}  // namespace detail_mpi_pool

/// Runs tasks 0 .. count-1 (task(Context) -> R) over the ranks of MPI_COMM_WORLD, in groups of
/// `ranks_per_task` ranks, and returns every outcome, in task order, on every rank. Every rank
/// calls it with the same count and options. Context::slot is the group, Context::ranks its size,
/// Context::threads the cores of each of its ranks. A task that throws on any rank of its group
/// records that error (the group's first rank reports it); the other tasks run on.
template <class F, class R = result_of<F>>
  requires Transferable<R>
std::vector<Outcome<R>> run_on_ranks(std::size_t count, F&& task, RankOptions options = {}) {
  auto world = std::make_shared<mpi::Communicator>(mpi::Communicator::world());
  const auto size = static_cast<std::size_t>(world->size()), rank = static_cast<std::size_t>(world->rank());
  const std::size_t g = options.ranks_per_task;
  tessera::detail::require(g >= 1 && g <= size && size % g == 0, ErrorKind::invalid_argument,
                           "tasks::run_on_ranks: ranks_per_task = " + std::to_string(g) + " does not divide the " +
                               std::to_string(size) + " ranks into equal groups");
  world->agree("task pool", std::to_string(count) + " tasks | " + std::to_string(g) + " ranks per task | " +
                                std::to_string(options.threads_per_rank) + " threads per rank");
  std::size_t threads = options.threads_per_rank;
  if (!threads) {
    const mpi::Communicator node = world->node();
    threads = std::max<std::size_t>(1, tessera::detail::hardware_threads() / static_cast<std::size_t>(node.size()));
  }
  const std::size_t group_index = rank / g;
  const mpi::Communicator group = world->split(static_cast<int>(group_index), static_cast<int>(rank % g));
  std::vector<Outcome<R>> mine;
  try {
    detail_mpi_pool::Counter counter(world->native());
    world->barrier("the task counter");  // set to 0 on rank 0 before any group takes from it
    for (;;) {
      std::int64_t next = group.rank() == 0 ? counter.next() : 0;
      group.broadcast_bytes(&next, sizeof next, 0, "the next task's index");
      if (next < 0 || static_cast<std::size_t>(next) >= count) break;
      // a communicator of its own for every task: a failure kept inside it ends only this task
      auto task_comm = std::make_shared<mpi::Communicator>(group.split(0, group.rank()));
      task_comm->contain_failures();
      Context c;
      c.index = static_cast<std::size_t>(next);
      c.slot = group_index;
      c.threads = threads;
      c.ranks = g;
      Outcome<R> o;
      {
        mpi::Scope scope(task_comm);
        detail_pool::run_one<R>(task, c, o);
      }
      if (g > 1) {
        // a rank whose task threw tells the rest of its group, which may wait for it in the task's
        // collectives; then the group, on its own sound communicator, waits for all its ranks (a
        // task may run long on one rank alone: no time limit) and learns which ranks failed, so
        // that the first rank reports a failure wherever it happened
        if (!o.ok() && !task_comm->broken())
          task_comm->notify_failure("rank " + std::to_string(task_comm->rank()) + ": " + o.error);
        group.barrier_unbounded("the group's ranks finishing their task");
        std::vector<double> failed(g, 0.0);
        failed[static_cast<std::size_t>(group.rank())] = o.ok() ? 0.0 : 1.0;
        group.all_reduce(failed.data(), g, "which ranks' tasks failed");
        const auto first = static_cast<int>(std::find(failed.begin(), failed.end(), 1.0) - failed.begin());
        if (first < static_cast<int>(g)) {
          const std::string why = group.broadcast_text(o.error, first, "a failed task's error");
          if (o.ok()) {
            o.value.reset();
            o.error = "rank " + std::to_string(first) + " of the task's " + std::to_string(g) + " ranks: " + why;
          }
        }
      }
      if (group.rank() == 0) mine.push_back(std::move(o));
    }
    world->barrier_unbounded("the end of the task pool (every group finishing its last task)");
  } catch (const std::exception& e) {
    // outside any task (MPI itself, memory): every rank stops, naming this one, instead of waiting
    world->notify_failure("rank " + std::to_string(rank) + ": tasks::run_on_ranks: " + e.what());
    throw;
  }
  // every group's outcomes to every rank, in task order
  std::vector<Outcome<R>> all(count);
  std::vector<bool> seen(count, false);
  const std::string blob = group.rank() == 0 ? encode_outcomes(mine) : std::string();
  for (std::size_t r = 0; r < size; r += g)
    decode_outcomes<R>(world->broadcast_text(blob, static_cast<int>(r), "task outcomes"), all, seen);
  for (std::size_t i = 0; i < count; ++i)
    if (!seen[i]) all[i].index = i, all[i].error = "tasks::run_on_ranks: no group ran this task";
  return all;
}

/// Runs a search's tasks over the ranks (see run_on_ranks and RankOptions).
struct OnRanks {
  /// How the ranks share the tasks.
  RankOptions ranks{};
  /// run_on_ranks(count, task, ranks).
  template <class F>
  auto run(std::size_t count, F&& task) const {
    return run_on_ranks(count, std::forward<F>(task), ranks);
  }
  /// Cores of each rank for a fit outside the pool.
  [[nodiscard]] std::size_t threads() const {
    if (ranks.threads_per_rank) return ranks.threads_per_rank;
    const mpi::Communicator node = mpi::Communicator::world().node();
    return std::max<std::size_t>(1, tessera::detail::hardware_threads() / static_cast<std::size_t>(node.size()));
  }
  /// Ranks of MPI_COMM_WORLD.
  [[nodiscard]] static std::size_t processes() {
    int n = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    return static_cast<std::size_t>(n);
  }
};

}  // namespace tessera::tasks
