// This machine's limits, the yardsticks of docs/performance.md: OpenBLAS sgemm GFLOP/s on all
// cores and on one, and memory bandwidth (a read-only sum and a copy of 256 MiB).
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <cstring>
#include <vector>

namespace {

void sgemm(benchmark::State& state, int threads) {
  const auto m = static_cast<int>(state.range(0)), k = static_cast<int>(state.range(1)), n = static_cast<int>(state.range(2));
  std::vector<float> a(static_cast<std::size_t>(m) * k, 0.5f), b(static_cast<std::size_t>(k) * n, 0.25f),
      c(static_cast<std::size_t>(m) * n);
#if defined(OPENBLAS_VERSION)
  const int previous = openblas_get_num_threads();
  if (threads > 0) openblas_set_num_threads(threads);
#else
  const int previous = omp_get_max_threads();  // another CBLAS: its OpenMP count, if it has one
  if (threads > 0) omp_set_num_threads(threads);
#endif
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
#if defined(OPENBLAS_VERSION)
  openblas_set_num_threads(previous);
#else
  omp_set_num_threads(previous);
#endif
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * m * n * k * static_cast<double>(state.iterations()) * 1e-9, benchmark::Counter::kIsRate);
}
void BM_sgemm_all_cores(benchmark::State& s) { sgemm(s, 0); }
void BM_sgemm_one_core(benchmark::State& s) { sgemm(s, 1); }

constexpr std::size_t big = std::size_t{64} << 20;  // 64 Mi floats = 256 MiB

void BM_read_bandwidth(benchmark::State& state) {
  std::vector<float> x(big, 1.0f);
  for (auto _ : state) {
    float total = 0.0f;
#pragma omp parallel reduction(+ : total)
    {
      // each thread sums its contiguous part into 64 independent accumulators (4 vector registers
      // on AVX-512), so the loop is bound by loads, not by the latency of one add chain
      const std::size_t t = static_cast<std::size_t>(omp_get_thread_num()), nt = static_cast<std::size_t>(omp_get_num_threads());
      const float* p = x.data() + big / nt * t;
      float acc[64] = {};
      for (std::size_t i = 0; i < big / nt; i += 64)
        for (std::size_t j = 0; j < 64; ++j) acc[j] += p[i + j];
      for (float a : acc) total += a;
    }
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * big * sizeof(float)));
  state.counters["threads"] = omp_get_max_threads();
}

void BM_copy_bandwidth(benchmark::State& state) {
  std::vector<float> a(big, 1.0f), b(big, 0.0f);
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), big * sizeof(float));
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
  }
  // bytes copied (read and written once each)
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * big * sizeof(float)));
}

}  // namespace

BENCHMARK(BM_sgemm_all_cores)->Args({1024, 1024, 1024})->Args({2048, 2048, 2048})->Args({512, 784, 1024})->Args({512, 1024, 1024})->UseRealTime();
BENCHMARK(BM_sgemm_one_core)->Args({1024, 1024, 1024})->Args({2048, 2048, 2048})->UseRealTime();
BENCHMARK(BM_read_bandwidth)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_copy_bandwidth)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
