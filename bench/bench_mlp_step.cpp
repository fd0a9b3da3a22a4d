// One training step of an MLP on one worker (all cores): Network<Cpu>::forward_backward, then
// optim::State<Cpu>::step with optim::sgd, as the trainer runs them, for
//   models::mlp({784, 1024, 1024, 10}, act::relu, loss::softmax_cross_entropy) at batch 256 and
//   models::mlp({64, 128, 128, 10}, ...) at batch 64;
// with the step's parts timed alone (forward_backward, the SGD update) and the step's matrix
// products alone (the same cblas_sgemm calls with nothing in between: the ceiling).
//
// Counters: samples/s; GFLOP/s counting the flops executed (forward 2, weight gradient 2, input
// gradient 2 per multiply-add, no input gradient for the first layer: 4 B in out for the first
// layer, 6 B in out for the others); GFLOP/s_6 with 6 B in out for every layer (the nominal
// count); of_gemms = GFLOP/s / the GFLOP/s of the step's sgemm calls alone, of_sgemm1024 =
// GFLOP/s / square-1024 sgemm, both measured at start-up on the same thread count.
//
//   bench_mlp_step --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include <tessera/core/rng.hpp>
#include <tessera/device/cpu.hpp>
#include <tessera/model/models.hpp>
#include <tessera/model/network.hpp>
#include <tessera/optim/update.hpp>

using namespace tessera;

namespace {

using Sizes = std::vector<std::size_t>;

void set_threads(int t) {
  omp_set_num_threads(t);
  openblas_set_num_threads(t);
}

double flops_executed(const Sizes& s, std::size_t b) {
  double f = 0.0;
  for (std::size_t l = 1; l < s.size(); ++l) f += (l == 1 ? 4.0 : 6.0) * static_cast<double>(b * s[l - 1] * s[l]);
  return f;
}
double flops_nominal(const Sizes& s, std::size_t b) {
  double f = 0.0;
  for (std::size_t l = 1; l < s.size(); ++l) f += 6.0 * static_cast<double>(b * s[l - 1] * s[l]);
  return f;
}

template <class F>
double median_seconds(F&& f, int reps) {
  std::vector<double> t;
  f();  // warm-up
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
  return t[static_cast<std::size_t>(reps / 2)];
}

/// The step's cblas_sgemm calls alone, in Network's order, for `sizes` at batch `b`.
struct GemmOnly {
  Sizes s;
  int b;
  std::vector<std::vector<float>> w, act, dw;
  std::vector<float> d0, d1;
  GemmOnly(Sizes sizes, std::size_t batch) : s(std::move(sizes)), b(static_cast<int>(batch)) {
    const std::size_t layers = s.size() - 1;
    w.resize(layers);
    dw.resize(layers);
    act.resize(layers + 1);
    const std::size_t widest = *std::max_element(s.begin(), s.end());
    d0.assign(batch * widest, 0.01f);
    d1.assign(batch * widest, 0.01f);
    act[0].assign(batch * s[0], 0.1f);
    for (std::size_t l = 0; l < layers; ++l) {
      w[l].assign(s[l] * s[l + 1], 0.01f);
      dw[l].assign(w[l].size(), 0.0f);
      act[l + 1].assign(batch * s[l + 1], 0.0f);
    }
  }
  void operator()() {
    const std::size_t layers = s.size() - 1;
    auto I = [](std::size_t v) { return static_cast<int>(v); };
    for (std::size_t l = 0; l < layers; ++l)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, I(s[l + 1]), I(s[l]), 1.0f, act[l].data(), I(s[l]),
                  w[l].data(), I(s[l + 1]), 0.0f, act[l + 1].data(), I(s[l + 1]));
    float* d = d0.data();
    float* dp = d1.data();
    for (std::size_t l = layers; l-- > 0;) {
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, I(s[l]), I(s[l + 1]), b, 1.0f, act[l].data(), I(s[l]), d,
                  I(s[l + 1]), 0.0f, dw[l].data(), I(s[l + 1]));
      if (l > 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, I(s[l]), I(s[l + 1]), 1.0f, d, I(s[l + 1]),
                    w[l].data(), I(s[l + 1]), 0.0f, dp, I(s[l]));
        std::swap(d, dp);
      }
    }
  }
};

/// GFLOP/s of the step's sgemm calls alone, and of square-1024 sgemm, on `threads` threads.
std::pair<double, double> ceilings(const Sizes& s, std::size_t batch, int threads) {
  static std::map<std::pair<Sizes, int>, std::pair<double, double>> cache;
  const auto key = std::make_pair(s, threads);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  set_threads(threads);
  GemmOnly g(s, batch);
  const double gemms = flops_executed(s, batch) * 1e-9 / median_seconds(g, s[1] >= 1024 ? 21 : 2001);
  std::vector<float> a(1024 * 1024, 0.01f), bb(1024 * 1024, 0.02f), c(1024 * 1024);
  const double sq = 2.0 * 1024 * 1024 * 1024 * 1e-9 / median_seconds([&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1024, 1024, 1024, 1.0f, a.data(), 1024, bb.data(), 1024,
                0.0f, c.data(), 1024);
  }, 9);
  return cache[key] = {gemms, sq};
}

struct Setup {
  Model model;
  std::vector<float> x, y, grads;
  Network<Cpu> net;
  optim::State<Cpu> opt;
  Setup(const Sizes& s, std::size_t batch)
      : model(models::mlp(s, act::relu, loss::softmax_cross_entropy, {.seed = 1})),
        x(batch * s.front()),
        y(batch),
        grads(model.parameter_count()),
        net(model.architecture(), batch),
        opt(optim::sgd(1e-3), model.parameter_count()) {
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = rng::normal(1, rng::Stream::user, i, 0);
    for (std::size_t i = 0; i < batch; ++i) y[i] = static_cast<float>(i % s.back());
  }
};

enum class Part { step, forward_backward, sgd_update, gemms_only };

void run(benchmark::State& state, const Sizes& s, std::size_t batch, Part part) {
  const int threads = static_cast<int>(state.range(0));
  const auto [gemm_rate, sq_rate] = ceilings(s, batch, threads);
  set_threads(threads);
  Setup S(s, batch);
  GemmOnly gemms(s, batch);
  float* w = S.model.parameters().data();
  const float scale = 1.0f / static_cast<float>(batch);
  for (auto _ : state) {
    switch (part) {
      case Part::step:
        benchmark::DoNotOptimize(S.net.forward_backward(w, S.x.data(), S.y.data(), batch, S.grads.data(), scale));
        S.opt.step(w, S.grads.data(), 1e-3);
        break;
      case Part::forward_backward:
        benchmark::DoNotOptimize(S.net.forward_backward(w, S.x.data(), S.y.data(), batch, S.grads.data(), scale));
        break;
      case Part::sgd_update: S.opt.step(w, S.grads.data(), 1e-3); break;
      case Part::gemms_only: gemms(); break;
    }
    benchmark::ClobberMemory();
  }
  const double it = static_cast<double>(state.iterations());
  if (part == Part::sgd_update) {
    // w read + written, g read
    state.counters["GB/s"] =
        benchmark::Counter(3.0 * 4.0 * static_cast<double>(S.model.parameter_count()) * it * 1e-9,
                           benchmark::Counter::kIsRate);
    return;
  }
  state.counters["samples/s"] = benchmark::Counter(static_cast<double>(batch) * it, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(flops_executed(s, batch) * it * 1e-9, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s_6"] = benchmark::Counter(flops_nominal(s, batch) * it * 1e-9, benchmark::Counter::kIsRate);
  // rate counters are divided by the time after the run; these two are scaled the same way
  state.counters["of_gemms"] =
      benchmark::Counter(flops_executed(s, batch) * it * 1e-9 / gemm_rate, benchmark::Counter::kIsRate);
  state.counters["of_sgemm1024"] =
      benchmark::Counter(flops_executed(s, batch) * it * 1e-9 / sq_rate, benchmark::Counter::kIsRate);
}

const Sizes kLarge{784, 1024, 1024, 10};
const Sizes kSmall{64, 128, 128, 10};

void BM_step_784_1024_1024_10_b256(benchmark::State& st) { run(st, kLarge, 256, Part::step); }
void BM_fwd_bwd_784_1024_1024_10_b256(benchmark::State& st) { run(st, kLarge, 256, Part::forward_backward); }
void BM_sgd_784_1024_1024_10(benchmark::State& st) { run(st, kLarge, 256, Part::sgd_update); }
void BM_gemms_784_1024_1024_10_b256(benchmark::State& st) { run(st, kLarge, 256, Part::gemms_only); }
void BM_step_64_128_128_10_b64(benchmark::State& st) { run(st, kSmall, 64, Part::step); }
void BM_fwd_bwd_64_128_128_10_b64(benchmark::State& st) { run(st, kSmall, 64, Part::forward_backward); }
void BM_sgd_64_128_128_10(benchmark::State& st) { run(st, kSmall, 64, Part::sgd_update); }
void BM_gemms_64_128_128_10_b64(benchmark::State& st) { run(st, kSmall, 64, Part::gemms_only); }

}  // namespace

#define TESSERA_STEP_BENCH(fn, unit) \
  BENCHMARK(fn)->ArgName("threads")->Arg(2)->Arg(1)->UseRealTime()->Unit(benchmark::unit)
TESSERA_STEP_BENCH(BM_step_784_1024_1024_10_b256, kMillisecond);
TESSERA_STEP_BENCH(BM_fwd_bwd_784_1024_1024_10_b256, kMillisecond);
TESSERA_STEP_BENCH(BM_sgd_784_1024_1024_10, kMillisecond);
TESSERA_STEP_BENCH(BM_gemms_784_1024_1024_10_b256, kMillisecond);
TESSERA_STEP_BENCH(BM_step_64_128_128_10_b64, kMicrosecond);
TESSERA_STEP_BENCH(BM_fwd_bwd_64_128_128_10_b64, kMicrosecond);
TESSERA_STEP_BENCH(BM_sgd_64_128_128_10, kMicrosecond);
TESSERA_STEP_BENCH(BM_gemms_64_128_128_10_b64, kMicrosecond);
BENCHMARK_MAIN();
