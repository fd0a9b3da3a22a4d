// bench/mpi/run_on_ranks.hpp - runs the registered benchmarks on every rank of an MPI job (each
// iteration may be a collective, so every rank runs the same fixed iteration counts) and reports
// only on rank 0.
#pragma once

#include <benchmark/benchmark.h>

#include <vector>

#include <tessera/mpi.hpp>

namespace tessera::bench {

/// This process's rank and the job's number of ranks (MPI_COMM_WORLD; MPI initialised).
struct Job {
  int rank = 0, ranks = 1;
};
inline Job job() {
  const auto w = mpi::Communicator::world();
  return {w.rank(), w.size()};
}

inline int run_on_ranks(int& argc, char** argv, int rank) {
  struct Quiet : benchmark::BenchmarkReporter {
    bool ReportContext(const Context&) override { return true; }
    void ReportRuns(const std::vector<Run>&) override {}
  };
  benchmark::Initialize(&argc, argv);
  if (rank == 0) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    Quiet quiet;
    benchmark::RunSpecifiedBenchmarks(&quiet);
  }
  benchmark::Shutdown();
  return 0;
}

}  // namespace tessera::bench
