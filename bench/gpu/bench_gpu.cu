// GPU benchmarks, reported against limits measured in the same run on the same device:
//   least_squares  the fused least-squares gradient (N = 1e7, D = 64, float32) as a fraction of the
//                  measured device-to-device copy bandwidth (target: at least 80%);
//   mlp_step       one training step (forward, backward, SGD update) of an MLP 784-1024-1024-10 on a
//                  batch of 4096, to compare with bench/gpu/torch_mlp_step_cuda.py (target: no slower);
//   nccl           the Reduce<NcclAllreduce> path's gradient sum (buckets on the engine's group)
//                  against one raw ncclAllReduce of the same buffer, one rank.
// Usage: bench_gpu [least_squares|mlp_step|nccl]... (default: all). Without a GPU it says so and
// exits 77.
#include <tessera/tessera.hpp>
#if defined(TESSERA_BENCH_NCCL)
#include <tessera/nccl.hpp>
#else
#include <tessera/cuda.hpp>
#endif

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace tessera;

namespace {

float* raw(Cuda::vector<float>& v) { return thrust::raw_pointer_cast(v.data()); }

/// Median milliseconds of `reps` runs of f on the current context's stream, after `warm` runs.
template <class F>
double time_ms(F&& f, int reps = 20, int warm = 3) {
  detail::CudaContext& c = detail::cuda_context();
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int i = 0; i < warm; ++i) f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(a, c.stream());
    f();
    cudaEventRecord(b, c.stream());
    cudaEventSynchronize(b);
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void fill_random(Cuda::vector<float>& v, std::uint64_t seed) {
  std::vector<float> h(v.size());
  for (std::size_t i = 0; i < h.size(); ++i) h[i] = rng::normal(seed, rng::Stream::user, i, 0);
  Cuda::upload(h.data(), raw(v), h.size());
}

void least_squares() {
  const std::size_t n = 10'000'000, d = 64;
  Cuda::vector<float> x(n * d), copy(n * d), y(n);
  fill_random(x, 1);
  fill_random(y, 2);
  const Model m = models::linear_regression(d, {.seed = 3});
  Cuda::vector<float> p(m.parameter_count()), g(m.parameter_count());
  Cuda::upload(m.parameters().data(), raw(p), p.size());
  Network<Cuda> net(m.architecture(), n);
  const double bytes = double(n) * double(d + 1) * sizeof(float);  // X and y, read once
  const double ls = time_ms([&] { net.forward_backward(raw(p), raw(x), raw(y), n, raw(g), 1.0f / float(n)); });
  const auto s = detail::cuda_context().stream();
  const double cp = time_ms([&] {
    cudaMemcpyAsync(raw(copy), raw(x), n * d * sizeof(float), cudaMemcpyDeviceToDevice, s);
  });
  const double ls_bw = bytes / ls * 1e-6, copy_bw = 2.0 * double(n * d * sizeof(float)) / cp * 1e-6;  // GB/s
  std::printf("least_squares N=%zu D=%zu: %.3f ms, %.0f GB/s read; device-to-device copy %.0f GB/s (read + write); "
              "fraction %.2f\n", n, d, ls, ls_bw, copy_bw, ls_bw / copy_bw);
}

void mlp_step() {
  const std::size_t batch = 4096;
  const Model m = models::mlp({784, 1024, 1024, 10}, act::relu, loss::softmax_cross_entropy, {.seed = 1});
  Cuda::vector<float> p(m.parameter_count()), g(m.parameter_count()), x(batch * 784), y(batch);
  Cuda::upload(m.parameters().data(), raw(p), p.size());
  fill_random(x, 4);
  std::vector<float> labels(batch);
  for (std::size_t i = 0; i < batch; ++i) labels[i] = float(i % 10);
  Cuda::upload(labels.data(), raw(y), batch);
  Network<Cuda> net(m.architecture(), batch);
  optim::State<Cuda> sgd(optim::sgd(0.01), m.parameter_count());
  const double fb = time_ms([&] { net.forward_backward(raw(p), raw(x), raw(y), batch, raw(g), 1.0f / float(batch)); });
  const double step = time_ms([&] {
    net.forward_backward(raw(p), raw(x), raw(y), batch, raw(g), 1.0f / float(batch));
    sgd.step(raw(p), raw(g), 0.01);
  });
  const double flops = 6.0 * double(batch) * double(784 * 1024 + 1024 * 1024 + 1024 * 10);
  std::printf("mlp_step 784-1024-1024-10 batch %zu: forward_backward %.3f ms, step with SGD %.3f ms (%.1f TFLOP/s "
              "in GEMMs' terms)\n", batch, fb, step, flops / step * 1e-9);
}

#if defined(TESSERA_BENCH_NCCL)
void nccl_overhead() {
  auto group = detail::nccl_group_in_process(1);
  const Model m = models::mlp({784, 1024, 1024, 10}, act::relu, loss::softmax_cross_entropy);
  Cuda::vector<float> g(m.parameter_count());
  fill_random(g, 5);
  const auto s = detail::cuda_context().stream();
  const ncclComm_t comm = group->communicator(0).get();
  comm::NcclLane lane = group->lane(0);
  const double raw_ms = time_ms(
      [&] { ncclAllReduce(raw(g), raw(g), g.size(), ncclFloat32, ncclSum, comm, s); }, 50, 5);
  for (std::size_t bucket_bytes : {std::size_t{1} << 20, std::size_t{4} << 20, std::size_t{1} << 30}) {
    const auto buckets = detail::plan_gradient_buckets(m.architecture(), bucket_bytes / sizeof(float));
    const double path = time_ms(
        [&] {
          for (const auto& b : buckets) lane.start_all_reduce(raw(g), raw(g), b.lo, b.hi, "benchmark");
          lane.finish();
        },
        50, 5);
    std::printf("nccl one rank, %zu floats: raw ncclAllReduce %.3f ms; tessera path in %zu bucket(s) of >= %zu bytes "
                "%.3f ms (overhead %+.1f%%)\n", g.size(), raw_ms, buckets.size(), bucket_bytes, path,
                100.0 * (path / raw_ms - 1.0));
  }
}
#endif

}  // namespace

int main(int argc, char** argv) {
  if (detail::cuda_device_count() == 0) {
    std::printf("bench_gpu: no CUDA device (cudaGetDeviceCount reports none); nothing measured\n");
    return 77;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("device 0: %s, %d SMs, %.0f GiB\n", prop.name, prop.multiProcessorCount,
              double(prop.totalGlobalMem) / double(1 << 30));
  auto wanted = [&](const char* name) {
    if (argc < 2) return true;
    for (int i = 1; i < argc; ++i)
      if (std::strcmp(argv[i], name) == 0) return true;
    return false;
  };
  if (wanted("least_squares")) least_squares();
  if (wanted("mlp_step")) mlp_step();
#if defined(TESSERA_BENCH_NCCL)
  if (wanted("nccl")) nccl_overhead();
#endif
}
