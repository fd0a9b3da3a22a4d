// Model parallelism across ranks: training throughput of one pipeline whose stages are the ranks
// (Partition<LayerwiseWith<Sched>> with Reduce<MpiAllreduce>, activations and gradients sent as
// MPI point-to-point messages), against the number of micro-batches, with the measured bubble
// fraction next to the fill-drain theory (S-1)/(M+S-1); and the column split over the ranks.
//
// Same model as bench_pipeline (threads): eight equal dense layers 256 -> 256 (ReLU; softmax
// cross-entropy), so 1, 2, 4 and 8 stages are balanced exactly. One step is a 512-sample batch,
// forward, backward and Adam update; epochs 2 and 3 of a fit are timed (the first pays for buffers).
// Every rank runs the same fixed iterations; only rank 0 prints. On one rank the "pipeline" is the
// whole model on one worker: the baseline.
//
//   OMP_NUM_THREADS=1 mpirun -n 2 bench_mpi_pipeline --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include <tessera/partition/mpi.hpp>
#include <tessera/tessera.hpp>

#include "../bench_support.hpp"
#include "run_on_ranks.hpp"

using namespace tessera;

namespace {

constexpr std::size_t width = 256, layers = 8, batch = 512, steps = 16;
int ranks = 1;  // of the job, for the counters

Model uniform_model() {
  std::vector<DenseSpec> specs(layers - 1, {width, act::relu});
  specs.push_back({width, act::identity});
  return Model(Architecture(width, specs, Loss::softmax_cross_entropy), {.seed = 1});
}

template <class Trainer>
void train(benchmark::State& state, Trainer trainer) {
  const data::Dataset d = bench::synthetic(batch * steps, width, width);
  Model model = uniform_model();
  double bubble = 0.0;
  for (auto _ : state) {
    const History h = trainer.fit(model, d);
    double seconds = 0.0;
    for (std::size_t e = 1; e < h.epochs.size(); ++e) seconds += h.epochs[e].seconds;
    bubble = h.last().bubble_fraction;
    state.SetIterationTime(seconds);
  }
  const double samples = 2.0 * static_cast<double>(d.rows()) * static_cast<double>(state.iterations());
  state.counters["samples/s"] = benchmark::Counter(samples, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(
      samples * bench::flops_per_sample(std::vector<std::size_t>(layers + 1, width)) * 1e-9, benchmark::Counter::kIsRate);
  state.counters["ranks"] = ranks;
  if (!std::isnan(bubble)) state.counters["bubble"] = bubble;
}

template <class Sched>
void pipeline(benchmark::State& state) {
  const auto M = static_cast<std::size_t>(state.range(0));
  state.counters["theory"] = PipelineStats::theory(static_cast<std::size_t>(ranks), M);
  train(state, Trainer<DataSplit<Uniform>, Partition<LayerwiseWith<Sched>>, Reduce<MpiAllreduce>>(
                   {.batch_size = batch, .epochs = 3, .seed = 1, .micro_batches = M, .progress = Progress::never},
                   optim::adam(1e-3)));
}

void columns(benchmark::State& state) {
  train(state, Trainer<DataSplit<Uniform>, Partition<Columnwise>, Reduce<MpiAllreduce>>(
                   {.batch_size = batch, .epochs = 3, .seed = 1, .progress = Progress::never}, optim::adam(1e-3)));
}

}  // namespace

int main(int argc, char** argv) {
  mpi::Environment env(&argc, &argv);
  const bench::Job job = bench::job();
  ranks = job.ranks;
  for (int m : {1, 2, 4, 8, 16, 32}) {
    benchmark::RegisterBenchmark(("BM_mpi_pipeline_1f1b/M:" + std::to_string(m)).c_str(), pipeline<OneFOneB>)
        ->Arg(m)->Iterations(3)->UseManualTime()->Unit(benchmark::kMillisecond);
  }
  for (int m : {1, 8, 32}) {
    benchmark::RegisterBenchmark(("BM_mpi_pipeline_gpipe/M:" + std::to_string(m)).c_str(), pipeline<GPipe>)
        ->Arg(m)->Iterations(3)->UseManualTime()->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("BM_mpi_columns", columns)->Iterations(3)->UseManualTime()->Unit(benchmark::kMillisecond);
  return tessera::bench::run_on_ranks(argc, argv, job.rank);
}
