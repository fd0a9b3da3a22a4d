// The cost of a checkpoint of the large MLP (784-1024-1024-10, Adam: 1.86 M parameters and two
// moment buffers, 22.4 MB): writing one (atomically: temporary file, fsync, rename) and reading one
// back, in seconds per GB; and, inside a fit on 2 workers, the time a checkpoint takes (gathering
// the state from the workers, writing, syncing) as a fraction of a 60,000-row epoch's time, both
// measured in the same run, against the same bytes written and read as plainly as the machine
// allows (BM_raw_write, BM_raw_read).
//
//   bench_checkpoint --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <unistd.h>

#include <tessera/tessera.hpp>

#include "bench_support.hpp"

using namespace tessera;
using tessera::bench::synthetic;

namespace {

const std::vector<std::size_t> large = {784, 1024, 1024, 10};

std::string scratch() {
  const auto p = std::filesystem::temp_directory_path() / "tessera_bench_checkpoint";
  std::filesystem::create_directories(p);
  return p.string();
}

Checkpoint large_checkpoint() {
  Checkpoint c;
  c.model = models::mlp(large, act::relu, loss::softmax_cross_entropy, {.seed = 1});
  c.moments.assign(2, std::vector<float>(c.model.parameter_count(), 0.5f));
  c.steps_per_epoch = 1;
  return c;
}

double file_bytes(const std::string& f) { return static_cast<double>(std::filesystem::file_size(f)); }

void BM_save_checkpoint(benchmark::State& state) {
  const Checkpoint c = large_checkpoint();
  const std::string f = scratch() + "/save.tsrckpt";
  for (auto _ : state) save_checkpoint(c, f);
  const double bytes = file_bytes(f) * static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["MB"] = file_bytes(f) * 1e-6;
  state.counters["s_per_GB"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_load_checkpoint(benchmark::State& state) {
  const std::string f = scratch() + "/load.tsrckpt";
  save_checkpoint(large_checkpoint(), f);
  for (auto _ : state) benchmark::DoNotOptimize(load_checkpoint(f));
  const double bytes = file_bytes(f) * static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["s_per_GB"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

/// The same bytes written as the machine allows (one fwrite, fsync, rename) and read back (one
/// fread): the limit the two benchmarks above are measured against.
void BM_raw_write(benchmark::State& state) {
  const std::string f = scratch() + "/raw.bin", tmp = f + ".tmp";
  save_checkpoint(large_checkpoint(), f);
  const auto n = static_cast<std::size_t>(file_bytes(f));
  std::vector<char> bytes(n, 1);
  for (auto _ : state) {
    std::FILE* out = std::fopen(tmp.c_str(), "wb");
    std::fwrite(bytes.data(), 1, n, out);
    std::fflush(out);
    ::fsync(fileno(out));
    std::fclose(out);
    std::filesystem::rename(tmp, f);
  }
  const double total = static_cast<double>(n) * static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(total));
  state.counters["s_per_GB"] = benchmark::Counter(total * 1e-9, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_raw_read(benchmark::State& state) {
  const std::string f = scratch() + "/raw.bin";
  save_checkpoint(large_checkpoint(), f);
  const auto n = static_cast<std::size_t>(file_bytes(f));
  std::vector<char> bytes(n);
  for (auto _ : state) {
    std::FILE* in = std::fopen(f.c_str(), "rb");
    benchmark::DoNotOptimize(std::fread(bytes.data(), 1, n, in));
    std::fclose(in);
  }
  const double total = static_cast<double>(n) * static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(total));
  state.counters["s_per_GB"] = benchmark::Counter(total * 1e-9, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

/// CheckpointEvery, timed.
struct Timed {
  CheckpointEvery inner;
  double seconds = 0.0;
  std::size_t count = 0;
  [[nodiscard]] std::size_t step_interval() const noexcept { return inner.step_interval(); }
  void on_step_boundary(const StepPoint& p, const std::function<const Checkpoint&()>& take) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::size_t before = inner.written().size();
    inner.on_step_boundary(p, take);
    if (inner.written().size() > before) {
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++count;
    }
  }
};

void BM_checkpoint_in_fit(benchmark::State& state) {
  const std::size_t batch = 256, steps = 8;
  const data::Dataset d = synthetic(2 * batch * steps, large.front(), large.back());
  Model model = models::mlp(large, act::relu, loss::softmax_cross_entropy, {.seed = 1});
  Trainer<> t({.batch_size = batch, .epochs = 2, .seed = 1, .workers = 2, .progress = Progress::never}, optim::adam(1e-3));
  double train_seconds = 0.0, checkpoint_seconds = 0.0;
  std::size_t checkpoints = 0;
  for (auto _ : state) {
    Timed timed{CheckpointEvery(scratch() + "/fit", steps / 2, 0.0, 1)};
    const History h = t.fit(model, d, timed);
    // epoch 2 is steady state; its time holds two checkpoints
    train_seconds += h.epochs[1].seconds;
    checkpoint_seconds += timed.seconds;
    checkpoints += timed.count;
    state.SetIterationTime(h.epochs[1].seconds);
  }
  const double per_checkpoint = checkpoint_seconds / static_cast<double>(checkpoints);
  // a 60,000-row epoch at the training rate measured here (epoch 2 less its two checkpoints)
  const double train_only = train_seconds - 2.0 * per_checkpoint * static_cast<double>(state.iterations());
  const double epoch_60k = train_only / static_cast<double>(state.iterations()) * 60000.0 / static_cast<double>(d.rows());
  state.counters["checkpoint_s"] = per_checkpoint;
  state.counters["epoch60k_s"] = epoch_60k;
  state.counters["fraction_of_epoch"] = per_checkpoint / epoch_60k;
}

}  // namespace

BENCHMARK(BM_save_checkpoint)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_load_checkpoint)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_raw_write)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_raw_read)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_checkpoint_in_fit)->Unit(benchmark::kMillisecond)->UseManualTime()->Iterations(3);
BENCHMARK_MAIN();
