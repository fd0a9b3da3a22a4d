// The thread all-reduce of a gradient buffer between 2 workers, against a plain memory copy of the
// same bytes (the target: within 2x). 1.86 M floats is the gradient of the MLP 784-1024-1024-10.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstring>
#include <vector>

#include <tessera/comm/thread_comm.hpp>
#include <tessera/engine/lanes.hpp>

using namespace tessera;

namespace {

/// Manual timing: rounds of the collective inside one team run, timed by worker 0.
void BM_thread_allreduce_bytes(benchmark::State& state) {
  const auto count = static_cast<std::size_t>(state.range(0));
  const std::size_t workers = static_cast<std::size_t>(state.range(1));
  comm::LocalGroup group(workers);
  std::vector<comm::ThreadComm> lanes;
  for (std::size_t w = 0; w < workers; ++w) lanes.push_back(group.lane(w));
  std::vector<std::vector<float>> buf(workers, std::vector<float>(count, 1.0f));
  for (auto _ : state) {
    double seconds = 0.0;
    detail::run_lanes(
        workers,
        [&](std::size_t w) {
          lanes[w].barrier();  // every thread started: the timing covers the collective alone
          const auto t0 = std::chrono::steady_clock::now();
          lanes[w].all_reduce(buf[w].data(), buf[w].data(), count, "bench", 0.5f);
          if (w == 0) seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        },
        [&] { group.abort(); });
    state.SetIterationTime(seconds);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * count * sizeof(float)));
}

void BM_memcpy(benchmark::State& state) {
  const auto count = static_cast<std::size_t>(state.range(0));
  std::vector<float> a(count, 1.0f), b(count, 0.0f);
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), count * sizeof(float));
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * count * sizeof(float)));
}

}  // namespace

BENCHMARK(BM_thread_allreduce_bytes)->Args({1863690, 2})->Args({1 << 20, 2})->Args({1 << 24, 2})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_memcpy)->Arg(1863690)->Arg(1 << 20)->Arg(1 << 24)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
