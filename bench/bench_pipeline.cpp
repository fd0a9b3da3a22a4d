// Model parallelism on worker threads: pipeline throughput against the number of micro-batches,
// the measured bubble fraction against the fill-drain theory (S-1)/(M+S-1), memory per worker
// against the number of stages, and the column split.
//
// The model has eight equal dense layers (256 -> 256, ReLU; softmax cross-entropy), so S = 1, 2,
// 4, 8 stages are balanced exactly and the theory applies. One iteration is one forward and
// backward pass of a 512-sample batch (Pipeline::loss_and_gradient; the optimizer update, the
// same for every split, is left out).
//
//   bench_pipeline --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <tessera/partition.hpp>
#include <tessera/tessera.hpp>

#include <algorithm>

#include "bench_support.hpp"

using namespace tessera;

namespace {

constexpr std::size_t width = 256, layers = 8, batch = 512;

Model uniform_model() {
  std::vector<DenseSpec> specs(layers - 1, {width, act::relu});
  specs.push_back({width, act::identity});
  return Model(Architecture(width, specs, Loss::softmax_cross_entropy), {.seed = 1});
}

data::Dataset synthetic(std::size_t n) { return bench::synthetic(n, width, width); }

double flops_per_sample() { return bench::flops_per_sample(std::vector<std::size_t>(layers + 1, width)); }

void report_memory(benchmark::State& state, const std::vector<WorkerMemory>& mem) {
  std::size_t most = 0, acts = 0;
  for (const auto& w : mem) {
    most = std::max(most, w.parameters);
    acts = std::max(acts, w.activations);
  }
  state.counters["params/worker"] = static_cast<double>(most);
  state.counters["act_floats/worker"] = static_cast<double>(acts);
}

/// Args: stages, micro-batches, schedule (0 GPipe, 1 1F1B).
void BM_pipeline(benchmark::State& state) {
  const auto S = static_cast<std::size_t>(state.range(0));
  const auto M = static_cast<std::size_t>(state.range(1));
  const Schedule sch = state.range(2) ? Schedule::one_f_one_b : Schedule::gpipe;
  const Model m = uniform_model();
  const data::Dataset d = synthetic(batch);
  Pipeline p(m, {.stages = S, .micro_batches = M, .schedule = sch});
  std::vector<float> grad;
  p.loss_and_gradient(d.x(), d.targets, grad);  // warm-up: buffers, pages
  p.reset_stats();
  for (auto _ : state) benchmark::DoNotOptimize(p.loss_and_gradient(d.x(), d.targets, grad));
  const double samples = static_cast<double>(batch) * static_cast<double>(state.iterations());
  state.counters["samples/s"] = benchmark::Counter(samples, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(samples * flops_per_sample() * 1e-9, benchmark::Counter::kIsRate);
  state.counters["bubble"] = p.stats().bubble_fraction();
  state.counters["theory"] = PipelineStats::theory(S, M);
  report_memory(state, p.memory());
  state.SetLabel(to_string(sch));
}
BENCHMARK(BM_pipeline)
    ->ArgsProduct({{1, 2, 4}, {1, 2, 4, 8, 16, 32}, {0, 1}})
    ->ArgNames({"S", "M", "1f1b"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

/// Parameters, gradients and Adam state per worker against the number of stages (no timing).
void BM_memory_per_stage(benchmark::State& state) {
  const auto S = static_cast<std::size_t>(state.range(0));
  const Model m = uniform_model();
  comm::LocalGroup group(S);
  detail::LayerwiseEngine<detail::CpuWorker, comm::LocalGroup> e(group, m.architecture(), 0.0f, optim::adam(),
                                                                  m.parameters(), {.stages = S, .micro_batches = 8}, 1,
                                                                  batch);
  for (auto _ : state) benchmark::DoNotOptimize(e.memory());
  std::size_t most = 0, acts = 0;
  for (const auto& w : e.memory()) {
    most = std::max(most, w.model_floats());
    acts = std::max(acts, w.activations);
  }
  state.counters["model_floats/worker"] = static_cast<double>(most);
  state.counters["share_of_whole"] = static_cast<double>(most) / (4.0 * static_cast<double>(m.parameter_count()));
  state.counters["act_floats/worker"] = static_cast<double>(acts);
}
BENCHMARK(BM_memory_per_stage)->Arg(1)->Arg(2)->Arg(4)->Arg(8)->ArgName("S")->Iterations(1);

/// Column split of the same model over T workers (one all-reduce per direction per layer pair).
void BM_columnwise(benchmark::State& state) {
  const auto T = static_cast<std::size_t>(state.range(0));
  const Model m = uniform_model();
  const data::Dataset d = synthetic(batch);
  ColumnSplit c(m, T);
  std::vector<float> grad;
  c.loss_and_gradient(d.x(), d.targets, grad);
  for (auto _ : state) benchmark::DoNotOptimize(c.loss_and_gradient(d.x(), d.targets, grad));
  const double samples = static_cast<double>(batch) * static_cast<double>(state.iterations());
  state.counters["samples/s"] = benchmark::Counter(samples, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(samples * flops_per_sample() * 1e-9, benchmark::Counter::kIsRate);
  report_memory(state, c.memory());
}
BENCHMARK(BM_columnwise)->Arg(1)->Arg(2)->ArgName("T")->UseRealTime()->Unit(benchmark::kMillisecond);

/// Pipelines x replicas: 2 stages x R replicas, 8 micro-batches per replica.
void BM_hybrid(benchmark::State& state) {
  const auto R = static_cast<std::size_t>(state.range(0));
  const Model m = uniform_model();
  const data::Dataset d = synthetic(batch);
  Pipeline p(m, {.stages = 2, .micro_batches = 8, .replicas = R});
  std::vector<float> grad;
  p.loss_and_gradient(d.x(), d.targets, grad);
  p.reset_stats();
  for (auto _ : state) benchmark::DoNotOptimize(p.loss_and_gradient(d.x(), d.targets, grad));
  const double samples = static_cast<double>(batch) * static_cast<double>(state.iterations());
  state.counters["samples/s"] = benchmark::Counter(samples, benchmark::Counter::kIsRate);
  state.counters["bubble"] = p.stats().bubble_fraction();
}
BENCHMARK(BM_hybrid)->Arg(1)->Arg(2)->ArgName("R")->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
