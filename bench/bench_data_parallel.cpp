// Data-parallel training throughput on worker threads: samples/s of training epochs in steady
// state (SGD, Uniform split, no validation) for the two MLPs of the data-parallel benchmarks, with 1 and 2
// workers, and the cost of the deterministic mode.
//
//   bench_data_parallel --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <tessera/tessera.hpp>

#include "bench_support.hpp"

using namespace tessera;
using tessera::bench::flops_per_sample;
using tessera::bench::synthetic;

namespace {

void train(benchmark::State& state, const std::vector<std::size_t>& sizes, std::size_t batch, std::size_t steps,
           bool deterministic) {
  const auto workers = static_cast<std::size_t>(state.range(0));
  // the same data set for 1 and 2 workers: `steps` global steps of 2 workers x batch
  const data::Dataset d = synthetic(2 * batch * steps, sizes.front(), sizes.back());
  Model model = models::mlp(sizes, act::relu, loss::softmax_cross_entropy, {.seed = 1});
  // steady state, like the PyTorch peer (which times steps after a warm-up): each iteration is a
  // fit of 3 epochs, of which epochs 2 and 3 are timed (the first pays for buffers and threads)
  Trainer<> t({.batch_size = batch, .epochs = 3, .seed = 1, .workers = workers, .deterministic = deterministic,
               .progress = Progress::never},
              optim::sgd(1e-3));
  double compute = 0.0, comm = 0.0;
  for (auto _ : state) {
    const History h = t.fit(model, d);
    double seconds = 0.0;
    for (std::size_t e = 1; e < h.epochs.size(); ++e) {
      seconds += h.epochs[e].seconds;
      compute += h.epochs[e].compute_seconds;
      comm += h.epochs[e].communication_seconds;
    }
    state.SetIterationTime(seconds);
  }
  const double samples = 2.0 * static_cast<double>(d.rows()) * static_cast<double>(state.iterations());
  state.SetItemsProcessed(static_cast<int64_t>(samples));
  state.counters["samples/s"] = benchmark::Counter(samples, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(samples * flops_per_sample(sizes) * 1e-9, benchmark::Counter::kIsRate);
  state.counters["comm_share"] = comm / (compute + comm);
}

void BM_mlp_784_1024_1024_10_batch256(benchmark::State& s) { train(s, {784, 1024, 1024, 10}, 256, 8, false); }
void BM_mlp_64_128_128_10_batch64(benchmark::State& s) { train(s, {64, 128, 128, 10}, 64, 200, false); }
void BM_mlp_784_1024_1024_10_batch256_deterministic(benchmark::State& s) { train(s, {784, 1024, 1024, 10}, 256, 8, true); }
void BM_mlp_64_128_128_10_batch64_deterministic(benchmark::State& s) { train(s, {64, 128, 128, 10}, 64, 200, true); }

}  // namespace

BENCHMARK(BM_mlp_784_1024_1024_10_batch256)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_mlp_64_128_128_10_batch64)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_mlp_784_1024_1024_10_batch256_deterministic)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_mlp_64_128_128_10_batch64_deterministic)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK_MAIN();
