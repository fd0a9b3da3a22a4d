// One training step (forward, backward, SGD update) of an MLP with one worker on all cores:
// Network<Cpu>::forward_backward then optim::State<Cpu>::step, as Trainer runs them.
#include <benchmark/benchmark.h>

#include <tessera/tessera.hpp>

using namespace tessera;

namespace {

void step(benchmark::State& state, const std::vector<std::size_t>& sizes) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  Model m = models::mlp(sizes, act::relu, loss::softmax_cross_entropy, {.seed = 1});
  Matrix x(batch, sizes.front());
  std::vector<float> y(batch);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = rng::normal(1, rng::Stream::user, i, 0);
  for (std::size_t i = 0; i < batch; ++i) y[i] = static_cast<float>(i % sizes.back());
  Network<Cpu> net(m.architecture(), batch);
  optim::State<Cpu> opt(optim::sgd(1e-3), m.parameter_count());
  std::vector<float> grads(m.parameter_count());
  float* w = m.parameters().data();
  for (auto _ : state) {
    net.forward_backward(w, x.data(), y.data(), batch, grads.data(), 1.0f / static_cast<float>(batch));
    opt.step(w, grads.data(), 1e-3);
  }
  double flops = 0.0;  // forward 2, weight gradient 2, input gradient 2 (not for the first layer)
  for (std::size_t l = 1; l < sizes.size(); ++l) flops += (l == 1 ? 4.0 : 6.0) * static_cast<double>(sizes[l - 1] * sizes[l]);
  const double samples = static_cast<double>(batch * state.iterations());
  state.counters["samples/s"] = benchmark::Counter(samples, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(samples * flops * 1e-9, benchmark::Counter::kIsRate);
}
void BM_step_mlp_784_1024_1024_10(benchmark::State& s) { step(s, {784, 1024, 1024, 10}); }
void BM_step_mlp_64_128_128_10(benchmark::State& s) { step(s, {64, 128, 128, 10}); }

}  // namespace

BENCHMARK(BM_step_mlp_784_1024_1024_10)->Arg(256)->Arg(512)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_step_mlp_64_128_128_10)->Arg(64)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
