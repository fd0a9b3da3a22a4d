// This machine's limits, the yardsticks docs/performance.md reads the other benchmarks against:
//   - OpenBLAS sgemm GFLOP/s (row-major, as tessera calls it) for square sizes and for every matrix
//     product of one training step of the 784-1024-1024-10 MLP at batch 256, one by one and as the
//     whole sequence of one step (the ceiling for bench_mlp_step);
//   - memory bandwidth: a read-only sum over 256 MiB of floats (the size of the 10^6 x 64
//     least-squares X) and a copy of 256 MiB, on 1 and 2 OpenMP threads.
//
//   bench_machine_limits --benchmark_counters_tabular=true
//
// The argument `threads` is the OpenBLAS / OpenMP thread count. Rates are per wall-clock second
// (every benchmark uses real time). Bytes: the sum counts the bytes read; the copy counts read +
// written (STREAM's convention: 2 x 256 MiB per copy).
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

namespace {

constexpr std::size_t kStreamBytes = std::size_t{256} << 20;  // 256 MiB
constexpr std::size_t kStreamFloats = kStreamBytes / sizeof(float);

struct FreeDeleter {
  void operator()(void* p) const noexcept { std::free(p); }
};
using Buffer = std::unique_ptr<float, FreeDeleter>;

/// 64-byte aligned floats, first touched by the OpenMP threads that will read them.
Buffer aligned_floats(std::size_t n, float value) {
  auto* p = static_cast<float*>(std::aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64));
  if (p == nullptr) throw std::bad_alloc();
  const auto sn = static_cast<std::int64_t>(n);
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < sn; ++i) p[i] = value + static_cast<float>(i % 7);
  return Buffer(p);
}

void set_threads(benchmark::State& state) {
  const int t = static_cast<int>(state.range(0));
  omp_set_num_threads(t);
  openblas_set_num_threads(t);
}

// ---------------------------------------------------------------------------------- sgemm

/// Row-major C (m x n) = op(A) op(B), k the inner size, as tessera's detail::blas::gemm calls it.
void sgemm(benchmark::State& state, int m, int n, int k, bool ta, bool tb) {
  set_threads(state);
  std::vector<float> a(static_cast<std::size_t>(m) * k), b(static_cast<std::size_t>(k) * n),
      c(static_cast<std::size_t>(m) * n, 0.0f);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i % 13) * 0.01f;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i % 11) * 0.01f;
  const int lda = ta ? m : k, ldb = tb ? k : n;
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f,
                a.data(), lda, b.data(), ldb, 0.0f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * m * n * k * static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsRate);
  state.SetLabel(std::to_string(m) + "x" + std::to_string(k) + (ta ? "^T" : "") + " * " + std::to_string(k) + "x" +
                 std::to_string(n) + (tb ? "^T" : "") + ", " + openblas_get_corename());
}

/// Every matrix product of one forward + backward pass of the MLP `sizes` at batch `b`, in the
/// order Network<Cpu>::forward_backward issues them (forward x W; backward in^T d and, for all
/// layers but the first, d W^T; the bias gradients, matrix-vector products, are left out). The
/// best a training step can do on this BLAS: its GFLOP/s is the ceiling for the step.
void sgemm_mlp_step(benchmark::State& state, std::vector<int> sizes, int b) {
  set_threads(state);
  const std::size_t layers = sizes.size() - 1;
  std::vector<std::vector<float>> w(layers), act(layers + 1), dw(layers);
  int widest = 0;
  for (int s : sizes) widest = s > widest ? s : widest;
  std::vector<float> d0(static_cast<std::size_t>(b) * widest, 0.01f), d1(d0.size(), 0.01f);
  act[0].assign(static_cast<std::size_t>(b) * sizes[0], 0.1f);
  for (std::size_t l = 0; l < layers; ++l) {
    w[l].assign(static_cast<std::size_t>(sizes[l]) * sizes[l + 1], 0.01f);
    dw[l].assign(w[l].size(), 0.0f);
    act[l + 1].assign(static_cast<std::size_t>(b) * sizes[l + 1], 0.0f);
  }
  double flops = 0.0;
  for (std::size_t l = 0; l < layers; ++l) flops += (l == 0 ? 4.0 : 6.0) * b * sizes[l] * sizes[l + 1];
  for (auto _ : state) {
    for (std::size_t l = 0; l < layers; ++l)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, sizes[l + 1], sizes[l], 1.0f, act[l].data(), sizes[l],
                  w[l].data(), sizes[l + 1], 0.0f, act[l + 1].data(), sizes[l + 1]);
    float* d = d0.data();
    float* dp = d1.data();
    for (std::size_t l = layers; l-- > 0;) {
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, sizes[l], sizes[l + 1], b, 1.0f, act[l].data(), sizes[l], d,
                  sizes[l + 1], 0.0f, dw[l].data(), sizes[l + 1]);
      if (l > 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, sizes[l], sizes[l + 1], 1.0f, d, sizes[l + 1],
                    w[l].data(), sizes[l + 1], 0.0f, dp, sizes[l]);
        std::swap(d, dp);
      }
    }
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9 * static_cast<double>(state.iterations()),
                                                 benchmark::Counter::kIsRate);
}

void BM_sgemm_square(benchmark::State& s) {
  const auto n = static_cast<int>(s.range(1));
  sgemm(s, n, n, n, false, false);
}
// the products of one step of models::mlp({784, 1024, 1024, 10}) at batch 256
void BM_sgemm_fwd_256x784x1024(benchmark::State& s) { sgemm(s, 256, 1024, 784, false, false); }
void BM_sgemm_fwd_256x1024x1024(benchmark::State& s) { sgemm(s, 256, 1024, 1024, false, false); }
void BM_sgemm_fwd_256x1024x10(benchmark::State& s) { sgemm(s, 256, 10, 1024, false, false); }
void BM_sgemm_dW_784x256x1024(benchmark::State& s) { sgemm(s, 784, 1024, 256, true, false); }
void BM_sgemm_dW_1024x256x1024(benchmark::State& s) { sgemm(s, 1024, 1024, 256, true, false); }
void BM_sgemm_dX_256x1024x1024(benchmark::State& s) { sgemm(s, 256, 1024, 1024, false, true); }
void BM_sgemm_step_784_1024_1024_10_b256(benchmark::State& s) { sgemm_mlp_step(s, {784, 1024, 1024, 10}, 256); }
void BM_sgemm_step_64_128_128_10_b64(benchmark::State& s) { sgemm_mlp_step(s, {64, 128, 128, 10}, 64); }

// ------------------------------------------------------------------------------ bandwidth

/// Read-only sum over 256 MiB of floats: 64 independent float accumulators per thread (four
/// 512-bit registers), so the add latency never limits the stream.
void BM_read_sum_256MiB(benchmark::State& state) {
  set_threads(state);
  static const Buffer buf = aligned_floats(kStreamFloats, 1.0f);
  const float* p = buf.get();
  constexpr std::int64_t lanes = 64;
  const auto blocks = static_cast<std::int64_t>(kStreamFloats) / lanes;
  for (auto _ : state) {
    float total = 0.0f;
#pragma omp parallel reduction(+ : total)
    {
      float acc[lanes] = {};
#pragma omp for schedule(static)
      for (std::int64_t blk = 0; blk < blocks; ++blk) {
        const float* q = p + blk * lanes;
        for (std::int64_t j = 0; j < lanes; ++j) acc[j] += q[j];
      }
      for (std::int64_t j = 0; j < lanes; ++j) total += acc[j];
    }
    benchmark::DoNotOptimize(total);
  }
  const double bytes = static_cast<double>(kStreamBytes) * static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsRate);
}

/// memcpy of 256 MiB; with 2 threads each copies one half. Bytes = read + written.
void BM_copy_256MiB(benchmark::State& state) {
  set_threads(state);
  static const Buffer src = aligned_floats(kStreamFloats, 1.0f);
  static const Buffer dst = aligned_floats(kStreamFloats, 0.0f);
  const char* s = reinterpret_cast<const char*>(src.get());
  char* d = reinterpret_cast<char*>(dst.get());
  for (auto _ : state) {
#pragma omp parallel
    {
      const auto t = static_cast<std::size_t>(omp_get_thread_num());
      const auto nt = static_cast<std::size_t>(omp_get_num_threads());
      const std::size_t part = kStreamBytes / nt;
      std::memcpy(d + t * part, s + t * part, t + 1 == nt ? kStreamBytes - t * part : part);
    }
    benchmark::DoNotOptimize(d);
    benchmark::ClobberMemory();
  }
  const double bytes = 2.0 * static_cast<double>(kStreamBytes) * static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsRate);
}

}  // namespace

#define TESSERA_BENCH_THREADS(fn, unit) \
  BENCHMARK(fn)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::unit)
BENCHMARK(BM_sgemm_square)
    ->ArgNames({"threads", "n"})
    ->Args({1, 1024})
    ->Args({2, 1024})
    ->Args({2, 2048})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
TESSERA_BENCH_THREADS(BM_sgemm_fwd_256x784x1024, kMillisecond);
TESSERA_BENCH_THREADS(BM_sgemm_fwd_256x1024x1024, kMillisecond);
TESSERA_BENCH_THREADS(BM_sgemm_fwd_256x1024x10, kMillisecond);
TESSERA_BENCH_THREADS(BM_sgemm_dW_784x256x1024, kMillisecond);
TESSERA_BENCH_THREADS(BM_sgemm_dW_1024x256x1024, kMillisecond);
TESSERA_BENCH_THREADS(BM_sgemm_dX_256x1024x1024, kMillisecond);
TESSERA_BENCH_THREADS(BM_sgemm_step_784_1024_1024_10_b256, kMillisecond);
TESSERA_BENCH_THREADS(BM_sgemm_step_64_128_128_10_b64, kMicrosecond);
TESSERA_BENCH_THREADS(BM_read_sum_256MiB, kMillisecond);
TESSERA_BENCH_THREADS(BM_copy_256MiB, kMillisecond);
BENCHMARK_MAIN();
