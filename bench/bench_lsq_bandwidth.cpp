// The fused least-squares gradient X^T (X w + b - y) against the memory it must read, for
// X = 10^6 x 64 float32 (256 MB) of random data:
//   - BM_read_sum_X: a plain read of the same X, the bound for any method (and
//     BM_read_sum_X_prefetch, the same with software prefetch into L2);
//   - BM_fused: tessera::detail::least_squares_gradient(Cpu::exec(), ...), one pass over X;
//   - BM_two_pass_sgemv: r = X w + b - y, g = X^T r with two cblas_sgemv calls (what NumPy and
//     PyTorch do), two passes over X;
//   - BM_network_forward_backward: Network<Cpu>::forward_backward of models::linear_regression(64),
//     which takes the fused path.
// "GB/s" counts the bytes of X once (256 MB per gradient) per wall-clock second, whatever the
// method reads; the argument `threads` is the OpenMP and OpenBLAS thread count. The fused and
// two-pass results are compared once before timing (printed on stderr).
//
//   bench_lsq_bandwidth --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <tessera/core/rng.hpp>
#include <tessera/detail/least_squares.hpp>
#include <tessera/device/cpu.hpp>
#include <tessera/model/models.hpp>
#include <tessera/model/network.hpp>

using namespace tessera;

namespace {

constexpr std::size_t kRows = 1'000'000, kCols = 64;
constexpr double kXBytes = static_cast<double>(kRows * kCols * sizeof(float));

struct Data {
  std::vector<float> x, y, w;
  float bias = 0.25f;
  Data() : x(kRows * kCols), y(kRows), w(kCols) {
    const auto nx = static_cast<std::int64_t>(x.size());
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < nx; ++i) x[i] = rng::normal(7, rng::Stream::user, static_cast<std::uint64_t>(i), 0);
    for (std::size_t j = 0; j < kCols; ++j) w[j] = 0.1f * rng::normal(7, rng::Stream::user, j, 1);
    const auto ny = static_cast<std::int64_t>(kRows);
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < ny; ++r) y[r] = rng::normal(7, rng::Stream::user, static_cast<std::uint64_t>(r), 2);
  }
};

const Data& data() {
  static const Data d;
  return d;
}

void set_threads(benchmark::State& state) {
  const int t = static_cast<int>(state.range(0));
  omp_set_num_threads(t);
  openblas_set_num_threads(t);
}

void rates(benchmark::State& state) {
  const double it = static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(kXBytes * it));
  state.counters["GB/s"] = benchmark::Counter(kXBytes * 1e-9 * it, benchmark::Counter::kIsRate);
}

/// Two-pass BLAS gradient: out[0..d) = scale X^T r, out[d] = scale sum(r), returns sum(r^2).
float two_pass(const Data& D, float scale, std::vector<float>& r, std::vector<float>& out) {
  const auto n = static_cast<std::int64_t>(kRows);
  const float* y = D.y.data();
  float* rr = r.data();
  const float b = D.bias;
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) rr[i] = b - y[i];
  cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(kRows), static_cast<int>(kCols), 1.0f, D.x.data(),
              static_cast<int>(kCols), D.w.data(), 1, 1.0f, rr, 1);  // r = X w + b - y
  cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(kRows), static_cast<int>(kCols), scale, D.x.data(),
              static_cast<int>(kCols), rr, 1, 0.0f, out.data(), 1);  // g = scale X^T r
  float gb = 0.0f, loss = 0.0f;
#pragma omp parallel for simd schedule(static) reduction(+ : gb, loss)
  for (std::int64_t i = 0; i < n; ++i) {
    gb += rr[i];
    loss += rr[i] * rr[i];
  }
  out[kCols] = scale * gb;
  return loss;
}

/// The fused and the two-pass gradients agree (once, before timing).
void check_agreement() {
  static bool done = false;
  if (done) return;
  done = true;
  const Data& D = data();
  std::vector<float> scratch(detail::least_squares_scratch(kRows, kCols)), fused(kCols + 2), r(kRows),
      ref(kCols + 1);
  const float scale = 2.0f / static_cast<float>(kRows);
  detail::least_squares_gradient(Cpu::exec(), D.x.data(), D.w.data(), D.bias, D.y.data(), kRows, kCols, scale,
                                 scratch.data(), fused.data());
  const float loss = two_pass(D, scale, r, ref);
  double err = 0.0, norm = 0.0;
  for (std::size_t j = 0; j <= kCols; ++j) {
    err = std::max(err, static_cast<double>(std::fabs(fused[j] - ref[j])));
    norm = std::max(norm, static_cast<double>(std::fabs(ref[j])));
  }
  std::fprintf(stderr, "fused vs two-pass: max |diff| %.3g (max |g| %.3g), loss %.7g vs %.7g%s\n", err, norm,
               static_cast<double>(fused[kCols + 1]), static_cast<double>(loss),
               err > 1e-3 * norm + 1e-6 ? "  WARNING: they disagree" : "");
}

void BM_read_sum_X(benchmark::State& state) {
  set_threads(state);
  const float* x = data().x.data();
  constexpr std::int64_t lanes = kCols;  // one row per block, 64 independent accumulators
  const auto rows = static_cast<std::int64_t>(kRows);
  for (auto _ : state) {
    float total = 0.0f;
#pragma omp parallel reduction(+ : total)
    {
      float acc[lanes] = {};
#pragma omp for schedule(static)
      for (std::int64_t r = 0; r < rows; ++r) {
        const float* q = x + r * lanes;
        for (std::int64_t j = 0; j < lanes; ++j) acc[j] += q[j];
      }
      for (std::int64_t j = 0; j < lanes; ++j) total += acc[j];
    }
    benchmark::DoNotOptimize(total);
  }
  rates(state);
}

/// The same read with software prefetch into L2 256 rows (64 KiB) ahead: a second yardstick, in
/// case the hardware prefetchers alone do not reach what the memory can deliver.
void BM_read_sum_X_prefetch(benchmark::State& state) {
  set_threads(state);
  const float* x = data().x.data();
  constexpr std::int64_t lanes = kCols, ahead = 256;
  const auto rows = static_cast<std::int64_t>(kRows);
  for (auto _ : state) {
    float total = 0.0f;
#pragma omp parallel reduction(+ : total)
    {
      float acc[lanes] = {};
#pragma omp for schedule(static)
      for (std::int64_t r = 0; r < rows; ++r) {
        const float* q = x + r * lanes;
        if (r + ahead < rows) {
          const char* p = reinterpret_cast<const char*>(q + ahead * lanes);
          for (int off = 0; off < lanes * 4; off += 64) __builtin_prefetch(p + off, 0, 2);
        }
        for (std::int64_t j = 0; j < lanes; ++j) acc[j] += q[j];
      }
      for (std::int64_t j = 0; j < lanes; ++j) total += acc[j];
    }
    benchmark::DoNotOptimize(total);
  }
  rates(state);
}

void BM_fused(benchmark::State& state) {
  check_agreement();
  set_threads(state);
  const Data& D = data();
  std::vector<float> scratch(detail::least_squares_scratch(kRows, kCols)), out(kCols + 2);
  const float scale = 2.0f / static_cast<float>(kRows);
  for (auto _ : state) {
    detail::least_squares_gradient(Cpu::exec(), D.x.data(), D.w.data(), D.bias, D.y.data(), kRows, kCols, scale,
                                   scratch.data(), out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  rates(state);
}

void BM_two_pass_sgemv(benchmark::State& state) {
  set_threads(state);
  const Data& D = data();
  std::vector<float> r(kRows), out(kCols + 1);
  const float scale = 2.0f / static_cast<float>(kRows);
  for (auto _ : state) {
    benchmark::DoNotOptimize(two_pass(D, scale, r, out));
    benchmark::ClobberMemory();
  }
  rates(state);
}

void BM_network_forward_backward(benchmark::State& state) {
  set_threads(state);
  const Data& D = data();
  const Model model = models::linear_regression(kCols, {.seed = 1});
  std::vector<float> params(D.w);
  params.push_back(D.bias);
  std::vector<float> grads(params.size());
  Network<Cpu> net(model.architecture(), kRows);
  const float scale = 1.0f / static_cast<float>(kRows);
  for (auto _ : state) {
    benchmark::DoNotOptimize(net.forward_backward(params.data(), D.x.data(), D.y.data(), kRows, grads.data(), scale));
    benchmark::ClobberMemory();
  }
  rates(state);
}

}  // namespace

BENCHMARK(BM_read_sum_X)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_read_sum_X_prefetch)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fused)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_two_pass_sgemv)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_network_forward_backward)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
