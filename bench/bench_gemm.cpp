// The GEMM backends side by side on the eight products of one training step of the MLP
// 784-1024-1024-10 at batch 256 (three forward products, three weight gradients, two input
// gradients, as model/network.hpp calls Dev::gemm): CBLAS (OpenBLAS) and, when this benchmark was
// built with oneDNN (TESSERA_BENCH_ONEDNN, bench/CMakeLists.txt), dnnl_sgemm - both called directly,
// so one executable compares them whichever backend the build chose for tessera.
//
// Arguments: threads (1 or 2) of the calling thread (omp_set_num_threads; OpenBLAS also
// openblas_set_num_threads). BM_step_*_worker runs the eight products on a new thread that set
// omp_set_num_threads(1), as tessera's data-parallel workers do; its counter cpu/wall is the
// process's CPU time over wall time (1.0: one thread worked).
//
//   build/release/bench/bench_gemm --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
//                                  --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>
#include <sys/resource.h>

#include <chrono>
#include <cstddef>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(TESSERA_BENCH_ONEDNN)
#include <oneapi/dnnl/dnnl.h>
#endif

namespace {

struct Shape {
  const char* name;
  bool ta, tb;
  int m, n, k;
};

// Network::forward_backward for 784-1024-1024-10, rows = 256: out = in W; dW = in^T d; prev = d W^T
constexpr int kBatch = 256;
const std::vector<Shape> kShapes = {
    {"fwd1_256x1024x784", false, false, kBatch, 1024, 784},  {"fwd2_256x1024x1024", false, false, kBatch, 1024, 1024},
    {"fwd3_256x10x1024", false, false, kBatch, 10, 1024},    {"wgrad3_1024x10x256", true, false, 1024, 10, kBatch},
    {"igrad3_256x1024x10", false, true, kBatch, 1024, 10},   {"wgrad2_1024x1024x256", true, false, 1024, 1024, kBatch},
    {"igrad2_256x1024x1024", false, true, kBatch, 1024, 1024}, {"wgrad1_784x1024x256", true, false, 784, 1024, kBatch},
};

enum class Backend { cblas, onednn };

// row-major C = op(A) op(B), packed leading dimensions
void gemm(Backend be, const Shape& s, const float* a, const float* b, float* c) {
  const int lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n, ldc = s.n;
  if (be == Backend::cblas) {
    cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans, s.m, s.n, s.k, 1.0f,
                a, lda, b, ldb, 0.0f, c, ldc);
    return;
  }
#if defined(TESSERA_BENCH_ONEDNN)
  if (dnnl_sgemm(s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.m, s.n, s.k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc) != dnnl_success)
    throw std::runtime_error("dnnl_sgemm failed");
#endif
}

double flops(const Shape& s) { return 2.0 * s.m * s.n * s.k; }

struct Buffers {
  std::vector<float> a, b, c;
  Buffers() : a(1024 * 1024), b(1024 * 1024), c(1024 * 1024) {
    std::mt19937 gen(1);
    std::normal_distribution<float> nd;
    for (auto* v : {&a, &b, &c})
      for (float& x : *v) x = nd(gen);
  }
};
Buffers& buffers() {
  static Buffers b;
  return b;
}

/// The BLAS library's own thread count: OpenBLAS has one per process; another CBLAS follows
/// OpenMP's count or its own configuration.
void set_blas_threads([[maybe_unused]] int threads) {
#if defined(OPENBLAS_VERSION)
  openblas_set_num_threads(threads);
#endif
}

void set_threads(Backend be, int threads) {
  omp_set_num_threads(threads);
  if (be == Backend::cblas) set_blas_threads(threads);
}

double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

void one(benchmark::State& state, Backend be, const Shape& s) {
  set_threads(be, static_cast<int>(state.range(0)));
  Buffers& buf = buffers();
  gemm(be, s, buf.a.data(), buf.b.data(), buf.c.data());  // oneDNN generates its kernels on first use
  for (auto _ : state) {
    gemm(be, s, buf.a.data(), buf.b.data(), buf.c.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops(s) * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void step_on(Backend be, Buffers& buf) {
  for (const Shape& s : kShapes) gemm(be, s, buf.a.data(), buf.b.data(), buf.c.data());
}
double step_flops() {
  double f = 0;
  for (const Shape& s : kShapes) f += flops(s);
  return f;
}

void step(benchmark::State& state, Backend be) {
  set_threads(be, static_cast<int>(state.range(0)));
  Buffers& buf = buffers();
  step_on(be, buf);
  const double cpu0 = process_cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    step_on(be, buf);
    benchmark::ClobberMemory();
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  state.counters["GFLOP/s"] =
      benchmark::Counter(step_flops() * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["cpu/wall"] = (process_cpu_seconds() - cpu0) / wall;
}

// the eight products, 10 steps per iteration, on a fresh thread held to one OpenMP thread; the
// calling thread keeps its own count (2 by default on 2 cores)
void step_worker(benchmark::State& state, Backend be) {
  set_threads(be, 2);
  if (be == Backend::cblas) set_blas_threads(1);  // as detail::SingleThreadedBlas does
  Buffers& buf = buffers();
  double wall = 0, cpu = 0;
  for (auto _ : state) {
    const double cpu0 = process_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    std::thread worker([&] {
      omp_set_num_threads(1);
      for (int r = 0; r < 10; ++r) step_on(be, buf);
    });
    worker.join();
    const double w = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(w);
    wall += w;
    cpu += process_cpu_seconds() - cpu0;
  }
  if (be == Backend::cblas) set_blas_threads(2);
  state.counters["GFLOP/s"] = benchmark::Counter(10 * step_flops() * 1e-9 * static_cast<double>(state.iterations()),
                                                 benchmark::Counter::kIsRate);
  state.counters["cpu/wall"] = cpu / wall;
}

// registered backend after backend for each benchmark, so that a run interleaves them
void register_all() {
  std::vector<std::pair<Backend, std::string>> backends = {{Backend::cblas, "openblas"}};
#if defined(TESSERA_BENCH_ONEDNN)
  backends.emplace_back(Backend::onednn, "onednn");
#endif
  for (const int threads : {1, 2}) {
    for (const auto& [be, name] : backends) {
      benchmark::RegisterBenchmark(("BM_step_" + name).c_str(), [be = be](benchmark::State& s) { step(s, be); })
          ->Arg(threads)->UseRealTime()->Unit(benchmark::kMillisecond);
    }
  }
  for (const auto& [be, name] : backends) {
    benchmark::RegisterBenchmark(("BM_step_" + name + "_worker").c_str(),
                                 [be = be](benchmark::State& s) { step_worker(s, be); })
        ->UseManualTime()->Unit(benchmark::kMillisecond);
  }
  for (const Shape& sh : kShapes) {
    for (const int threads : {1, 2}) {
      for (const auto& [be, name] : backends) {
        benchmark::RegisterBenchmark(("BM_" + std::string(sh.name) + "_" + name).c_str(),
                                     [be = be, &sh](benchmark::State& s) { one(s, be, sh); })
            ->Arg(threads)->UseRealTime()->Unit(benchmark::kMicrosecond);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
