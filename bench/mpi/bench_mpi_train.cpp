// Training throughput across ranks (Reduce<MpiAllreduce>, one worker thread per rank): samples/s of
// steady-state epochs for the MLP 784-1024-1024-10 (batch 256 per rank) and 64-128-128-10 (batch 64
// per rank), with the gradient sum overlapping the backward pass (buckets) and after it (off).
// Only rank 0 prints; every rank runs the same fixed number of iterations.
//
//   OMP_NUM_THREADS=1 mpirun -n 2 bench_mpi_train --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include <tessera/mpi.hpp>
#include <tessera/tessera.hpp>

#include "../bench_support.hpp"
#include "run_on_ranks.hpp"

using namespace tessera;
using tessera::bench::flops_per_sample;
using tessera::bench::synthetic;

namespace {

int ranks = 1;  // of the job, for the counters

void train(benchmark::State& state, const std::vector<std::size_t>& sizes, std::size_t batch, std::size_t steps,
           bool overlap) {
  const auto r = static_cast<std::size_t>(ranks);
  const data::Dataset d = synthetic(r * batch * steps, sizes.front(), sizes.back());  // `steps` steps per epoch
  Model model = models::mlp(sizes, act::relu, loss::softmax_cross_entropy, {.seed = 1});
  Trainer<Reduce<MpiAllreduce>> t({.batch_size = batch, .epochs = 3, .seed = 1, .workers = 1,
                                   .progress = Progress::never, .overlap = overlap},
                                  optim::sgd(1e-3));
  double compute = 0.0, comm = 0.0;
  for (auto _ : state) {
    const History h = t.fit(model, d);  // epochs 2 and 3 timed: the first pays for buffers
    double seconds = 0.0;
    for (std::size_t e = 1; e < h.epochs.size(); ++e) {
      seconds += h.epochs[e].seconds;
      compute += h.epochs[e].compute_seconds;
      comm += h.epochs[e].communication_seconds;
    }
    state.SetIterationTime(seconds);
  }
  const double samples = 2.0 * static_cast<double>(d.rows()) * static_cast<double>(state.iterations());
  state.counters["samples/s"] = benchmark::Counter(samples, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(samples * flops_per_sample(sizes) * 1e-9, benchmark::Counter::kIsRate);
  state.counters["comm_share"] = comm / (compute + comm);
  state.counters["ranks"] = ranks;
}

}  // namespace

int main(int argc, char** argv) {
  mpi::Environment env(&argc, &argv);
  const bench::Job job = bench::job();
  ranks = job.ranks;
  for (bool overlap : {true, false}) {
    const std::string tag = overlap ? "/overlap" : "/no_overlap";
    benchmark::RegisterBenchmark(("BM_mpi_mlp_784_1024_1024_10_batch256" + tag).c_str(),
                                 [overlap](benchmark::State& s) { train(s, {784, 1024, 1024, 10}, 256, 8, overlap); })
        ->Iterations(3)->UseManualTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("BM_mpi_mlp_64_128_128_10_batch64" + tag).c_str(),
                                 [overlap](benchmark::State& s) { train(s, {64, 128, 128, 10}, 64, 200, overlap); })
        ->Iterations(3)->UseManualTime()->Unit(benchmark::kMillisecond);
  }
  return tessera::bench::run_on_ranks(argc, argv, job.rank);
}
