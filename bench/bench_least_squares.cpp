// The least-squares gradient X^T (X w + b - y) on 10^6 x 64 float32: tessera's fused kernel (reads
// X once), the two-pass BLAS formulation that NumPy and PyTorch use (sgemv for the residual, sgemv
// for X^T r: reads X twice), and the fused path as the trainer runs it (Network, linear model).
#include <benchmark/benchmark.h>

#include <tessera/tessera.hpp>

using namespace tessera;

namespace {

constexpr std::size_t n = 1000000, d = 64;

struct Data {
  std::vector<float> x = std::vector<float>(n * d), y = std::vector<float>(n), w = std::vector<float>(d + 1, 0.01f);
  Data() {
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = rng::uniform(1, rng::Stream::user, i, 0) - 0.5f;
    for (std::size_t i = 0; i < n; ++i) y[i] = rng::uniform(2, rng::Stream::user, i, 0);
  }
};
const Data& data() {
  static const Data d_;
  return d_;
}

void report(benchmark::State& state) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n * d * sizeof(float)));  // X's bytes, once
}

void BM_fused_least_squares_gradient(benchmark::State& state) {
  const Data& D = data();
  std::vector<float> scratch(detail::least_squares_scratch(n, d)), out(d + 2);
  for (auto _ : state) {
    detail::least_squares_gradient(Cpu::exec(), D.x.data(), D.w.data(), D.w.data() + d, D.y.data(), n, d, 2.0f / n,
                                   scratch.data(), out.data());
    benchmark::DoNotOptimize(out.data());
  }
  report(state);
}

void BM_two_pass_blas(benchmark::State& state) {
  const Data& D = data();
  std::vector<float> r(n), g(d);
  for (auto _ : state) {
    std::copy(D.y.begin(), D.y.end(), r.begin());
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n, d, 1.0f, D.x.data(), d, D.w.data(), 1, -1.0f, r.data(), 1);  // Xw - y
    cblas_sgemv(CblasRowMajor, CblasTrans, n, d, 2.0f / n, D.x.data(), d, r.data(), 1, 0.0f, g.data(), 1);   // X^T r
    benchmark::DoNotOptimize(g.data());
  }
  report(state);
}

void BM_network_linear_regression(benchmark::State& state) {
  const Data& D = data();
  const Model m = models::linear_regression(d);
  Network<Cpu> net(m.architecture(), n);
  std::vector<float> grads(d + 1);
  for (auto _ : state) {
    benchmark::DoNotOptimize(net.forward_backward(D.w.data(), D.x.data(), D.y.data(), n, grads.data(), 1.0f / n));
  }
  report(state);
}

}  // namespace

BENCHMARK(BM_fused_least_squares_gradient)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_two_pass_blas)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_network_linear_regression)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
