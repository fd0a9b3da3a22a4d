// The library's sum over ranks (mpi::Communicator::all_reduce: a ring of non-blocking messages
// that can time out and hear of a failed rank) against raw MPI_Allreduce on the same buffer, for
// buffers of 4 KiB to 256 MiB. Each timed iteration starts after a barrier and counts the slowest
// rank's time. Only rank 0 prints.
//
//   mpirun -n 2 bench_mpi_allreduce --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include <tessera/mpi.hpp>

#include "run_on_ranks.hpp"

namespace {

tessera::mpi::Communicator* world = nullptr;

void BM_sum(benchmark::State& state, std::size_t bytes, bool library) {
  const std::size_t n = bytes / sizeof(float);
  std::vector<float> buf(n, 0.0f);
  for (auto _ : state) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = std::chrono::steady_clock::now();
    if (library)
      world->all_reduce(buf.data(), n, "benchmark");
    else
      MPI_Allreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    state.SetIterationTime(t);
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
  state.counters["ranks"] = world->size();
}

}  // namespace

int main(int argc, char** argv) {
  tessera::mpi::Environment env(&argc, &argv);
  auto w = tessera::mpi::Communicator::world();
  world = &w;
  for (std::size_t bytes = 4096; bytes <= (std::size_t{256} << 20); bytes *= 4) {
    // the same fixed iteration count on every rank: each iteration is one collective
    const auto iterations = static_cast<benchmark::IterationCount>(std::clamp<std::size_t>((std::size_t{1} << 30) / bytes, 5, 2000));
    const std::string size = bytes >= (1u << 20) ? std::to_string(bytes >> 20) + "MiB" : std::to_string(bytes >> 10) + "KiB";
    for (bool library : {false, true})
      benchmark::RegisterBenchmark((std::string(library ? "BM_tessera_all_reduce/" : "BM_MPI_Allreduce/") + size).c_str(),
                                   [bytes, library](benchmark::State& s) { BM_sum(s, bytes, library); })
          ->Iterations(iterations)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
  }
  return tessera::bench::run_on_ranks(argc, argv, w.rank());
}
