// Device<Cuda> and Reduce<NcclAllreduce> against the CPU: every model and loss through Network,
// the fused least-squares kernel, training through Trainer (same parameters to a tolerance, same
// digits accuracy), Load<Prefetch>, no device allocation in steady state, NCCL one-rank
// communicators and gradient buckets. Needs a GPU: without one, main() says so and returns 77
// (ctest: skipped).
//
// Tolerances: the GPU sums in another order than the CPU (cuBLAS tiles, a warp per row for least
// squares, tree reductions), so single-precision results differ by rounding: gradients and losses
// are compared with relative error 1e-4 of the largest entry, trained parameters with 2e-3 after
// several epochs (rounding grows through the updates), accuracies within 1%.
//
// Data files (data/digits.csv) are read from the source tree compiled in as TESSERA_SOURCE_DIR; the
// environment variable TESSERA_SOURCE_DIR, when set and not empty, overrides it, so that a prebuilt
// test_cuda can run against a checkout at another path.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <tessera/tessera.hpp>
#if defined(TESSERA_TEST_NCCL)
#include <tessera/nccl.hpp>
#else
#include <tessera/cuda.hpp>
#endif

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../model_data.hpp"

using namespace tessera;
using tessera::test::targets_for;

int main(int argc, char** argv) {
  const int devices = detail::cuda_device_count();
  if (devices == 0) {
    std::printf("test_cuda: no CUDA device (cudaGetDeviceCount reports none); the GPU tests are skipped\n");
    return 77;
  }
  cudaDeviceProp p{};
  cudaGetDeviceProperties(&p, 0);
  std::printf("test_cuda: %d CUDA device(s); device 0: %s\n", devices, p.name);
  return Catch::Session().run(argc, argv);
}

namespace {

Matrix random_matrix(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  Matrix x(rows, cols);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = rng::normal(seed, rng::Stream::user, i, 0);
  return x;
}
/// Largest |a - b| over the largest |b| (1 when b is all zero).
double relative_error(std::span<const float> a, std::span<const float> b) {
  REQUIRE(a.size() == b.size());
  double diff = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::fabs(double(b[i])));
  }
  return diff / (scale > 0.0 ? scale : 1.0);
}

std::vector<float> to_host(Cuda::vector<float>& v) {
  std::vector<float> h(v.size());
  Cuda::download(thrust::raw_pointer_cast(v.data()), h.data(), v.size());
  return h;
}
Cuda::vector<float> to_device(std::span<const float> h) {
  Cuda::vector<float> v(h.size());
  Cuda::upload(h.data(), thrust::raw_pointer_cast(v.data()), h.size());
  return v;
}

struct Pass {
  std::vector<float> out, grad;
  double loss = 0.0;
};

/// Forward and backward pass of `m` on (x, y) with device Dev.
template <class Dev>
Pass run_pass(const Model& m, const Matrix& x, const std::vector<float>& y, float wd) {
  const Architecture& a = m.architecture();
  const std::size_t rows = x.rows();
  Pass r;
  if constexpr (std::same_as<Dev, Cpu>) {
    Network<Cpu> net(a, rows);
    std::vector<float> g(m.parameter_count());
    r.loss = net.forward_backward(m.parameters().data(), x.data(), y.data(), rows, g.data(), 0.5f, wd);
    r.grad = g;
    const float* o = net.forward(m.parameters().data(), x.data(), rows);
    r.out.assign(o, o + rows * a.output_dim());
  } else {
    Network<Cuda> net(a, rows);
    auto p = to_device(m.parameters());
    auto xd = to_device(std::span<const float>(x.data(), x.size()));
    auto yd = to_device(y);
    Cuda::vector<float> g(m.parameter_count());
    const float* pp = thrust::raw_pointer_cast(p.data());
    r.loss = net.forward_backward(pp, thrust::raw_pointer_cast(xd.data()), thrust::raw_pointer_cast(yd.data()), rows,
                                  thrust::raw_pointer_cast(g.data()), 0.5f, wd);
    r.grad = to_host(g);
    const float* o = net.forward(pp, thrust::raw_pointer_cast(xd.data()), rows);
    r.out.resize(rows * a.output_dim());
    Cuda::download(o, r.out.data(), r.out.size());
  }
  return r;
}

data::Dataset regression_data(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  Matrix x = random_matrix(rows, cols, seed);
  std::vector<float> y(rows);
  for (std::size_t i = 0; i < rows; ++i) {
    float s = 0.5f;
    for (std::size_t j = 0; j < cols; ++j) s += x.data()[i * cols + j] * float(j % 5) * 0.1f;
    y[i] = s + 0.05f * rng::normal(seed, rng::Stream::user, i, 3);
  }
  return data::Dataset(std::move(x), std::move(y));
}

/// The source tree holding data/: $TESSERA_SOURCE_DIR when set and not empty, else the one compiled in.
std::string source_dir() {
  const char* env = std::getenv("TESSERA_SOURCE_DIR");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(TESSERA_SOURCE_DIR);
}

data::Dataset digits() {
  return data::read_csv(source_dir() + "/data/digits.csv", {.label = data::last_column});
}

}  // namespace

TEST_CASE("Network<Cuda> gives the CPU's outputs, loss and gradient for every activation and loss", "[cuda]") {
  const Activation a = GENERATE(act::identity, act::relu, act::tanh, act::sigmoid);
  const Loss l = GENERATE(loss::mse, loss::binary_cross_entropy, loss::softmax_cross_entropy);
  const float wd = GENERATE(0.0f, 0.05f);
  CAPTURE(to_string(a), to_string(l), wd);
  const Model m = models::mlp({13, 33, 17, 5}, a, l, {.seed = 7});
  const Matrix x = random_matrix(301, 13, 3);
  const auto y = targets_for(m.architecture(), 301, 4);
  const Pass cpu = run_pass<Cpu>(m, x, y, wd), gpu = run_pass<Cuda>(m, x, y, wd);
  CHECK(relative_error(gpu.out, cpu.out) < 1e-4);
  CHECK(relative_error(gpu.grad, cpu.grad) < 1e-4);
  CHECK(std::fabs(gpu.loss - cpu.loss) <= 1e-4 * std::fabs(cpu.loss));
  CHECK(cpu.loss > 0.0);
}

TEST_CASE("Network<Cuda> gives the CPU's results for the ready models", "[cuda]") {
  const std::size_t rows = GENERATE(std::size_t{1}, std::size_t{37}, std::size_t{5000});
  const Model linear = models::linear_regression(64, {.seed = 1});
  const Model logistic = models::logistic_regression(9, {.seed = 2});
  const Model softmax = models::softmax_regression(20, 7, {.seed = 3});
  for (const Model* m : {&linear, &logistic, &softmax}) {
    CAPTURE(rows, m->architecture().describe());
    const Matrix x = random_matrix(rows, m->input_dim(), 5);
    const auto y = targets_for(m->architecture(), rows, 6);
    const Pass cpu = run_pass<Cpu>(*m, x, y, 0.01f), gpu = run_pass<Cuda>(*m, x, y, 0.01f);
    CHECK(relative_error(gpu.out, cpu.out) < 1e-4);
    CHECK(relative_error(gpu.grad, cpu.grad) < 1e-4);
    CHECK(std::fabs(gpu.loss - cpu.loss) <= 1e-4 * std::fabs(cpu.loss));
  }
}

TEST_CASE("the GPU least-squares kernel equals the CPU's for many rows, any width", "[cuda][least_squares]") {
  const std::size_t d = GENERATE(std::size_t{1}, std::size_t{13}, std::size_t{64}, std::size_t{100},
                                 detail::cuda_least_squares_max_d + 1);  // the last: the portable functor on the GPU
  const std::size_t n = 200003;
  CAPTURE(d);
  const Model m = models::linear_regression(d, {.seed = 9});
  REQUIRE(m.architecture().is_linear_least_squares());
  const Matrix x = random_matrix(n, d, 11);
  const auto y = targets_for(m.architecture(), n, 12);
  const Pass cpu = run_pass<Cpu>(m, x, y, 0.0f), gpu = run_pass<Cuda>(m, x, y, 0.0f);
  CHECK(relative_error(gpu.grad, cpu.grad) < 1e-4);
  CHECK(std::fabs(gpu.loss - cpu.loss) <= 1e-4 * std::fabs(cpu.loss));
}

TEST_CASE("Trainer<Device<Cuda>> trains to the CPU's parameters", "[cuda][trainer]") {
  const auto opt = GENERATE(optim::sgd(0.05), optim::momentum(0.02, 0.9), optim::adam(1e-3));
  CAPTURE(opt.describe());
  const data::Dataset d = regression_data(3000, 10, 21);
  Model cpu = models::mlp({10, 32, 1}, act::tanh, loss::mse, {.seed = 5, .weight_decay = 0.001f});
  Model gpu = cpu;
  const TrainerOptions o{.batch_size = 64, .epochs = 4, .seed = 3, .workers = 1, .progress = Progress::never};
  const History hc = Trainer<DataSplit<Random>>(o, opt).fit(cpu, d);
  const History hg = Trainer<DataSplit<Random>, Device<Cuda>>(o, opt).fit(gpu, d);
  CHECK(relative_error(gpu.parameters(), cpu.parameters()) < 2e-3);
  REQUIRE(hg.epochs.size() == 4);
  for (std::size_t e = 0; e < 4; ++e) CHECK(std::fabs(hg.epochs[e].loss - hc.epochs[e].loss) <= 1e-3 * hc.epochs[e].loss);
  CHECK(hg.epochs.back().loss < hg.epochs.front().loss);
  CHECK(hg.workers == 1);
}

TEST_CASE("the digits example reaches the CPU's accuracy on the GPU", "[cuda][digits]") {
  const data::Dataset all = digits();
  auto [train, test] = data::train_test_split(all, {.test_fraction = 0.2, .seed = 42});
  data::Standardizer scaler(train.x());
  train = scaler.transform(train);
  test = scaler.transform(test);
  Model cpu = models::mlp({64, 128, 10}, act::relu, loss::softmax_cross_entropy, {.seed = 42});
  Model gpu = cpu;
  const TrainerOptions o{.batch_size = 8, .epochs = 20, .seed = 42, .workers = 1, .progress = Progress::never};
  Trainer<DataSplit<Random>>(o, optim::adam(1e-2)).fit(cpu, train);
  Trainer<DataSplit<Random>, Load<Prefetch>, Device<Cuda>>(o, optim::adam(1e-2)).fit(gpu, train);
  const double acc_cpu = metrics::accuracy(cpu, test), acc_gpu = metrics::accuracy(gpu, test);
  std::printf("digits: test accuracy CPU %.4f, GPU %.4f\n", acc_cpu, acc_gpu);
  CHECK(acc_gpu >= 0.95);
  CHECK(std::fabs(acc_gpu - acc_cpu) <= 0.01);
}

TEST_CASE("Load<Prefetch> on the GPU gives the same bits as Load<Sequential>", "[cuda][prefetch]") {
  const data::Dataset d = regression_data(1000, 6, 8);
  Model a = models::mlp({6, 16, 1}, act::relu, loss::mse, {.seed = 1});
  Model b = a;
  const TrainerOptions o{.batch_size = 50, .epochs = 3, .seed = 2, .progress = Progress::never};
  Trainer<DataSplit<Random>, Device<Cuda>>(o, optim::adam(1e-2)).fit(a, d);
  Trainer<DataSplit<Random>, Load<Prefetch>, Device<Cuda>>(o, optim::adam(1e-2)).fit(b, d);
  CHECK(std::equal(a.parameters().begin(), a.parameters().end(), b.parameters().begin()));
  Model c = models::mlp({6, 16, 1}, act::relu, loss::mse, {.seed = 1});
  CHECK(relative_error(a.parameters(), c.parameters()) > 1e-3);  // it did train
}

TEST_CASE("the GPU engine allocates no device memory after its first step", "[cuda][allocation]") {
  const data::Dataset d = regression_data(2000, 12, 4);
  const Model m = models::mlp({12, 24, 24, 1}, act::sigmoid, loss::mse, {.seed = 2});
  comm::OneGpuGroup one;
  detail::EngineConfig plan;
  plan.batch = 128;
  plan.prefetch = true;
  plan.epochs = 3;
  detail::ReplicateEngine<Cuda, comm::OneGpuGroup, EveryStep> engine(one, m.architecture(), 0.0f, optim::adam(1e-3),
                                                                      m.parameters(), plan);
  const auto no_progress = [](std::size_t, double) {};
  std::size_t free0 = 0, free1 = 0, total = 0;
  engine.epoch(d, {}, 0, detail::Range{0, SIZE_MAX}, {}, no_progress);
  const std::size_t after_first = engine.device_allocations();
  cudaMemGetInfo(&free0, &total);
  engine.epoch(d, {}, 1, detail::Range{0, SIZE_MAX}, {}, no_progress);
  engine.epoch(d, {}, 2, detail::Range{0, SIZE_MAX}, {}, no_progress);
  cudaMemGetInfo(&free1, &total);
  CHECK(engine.device_allocations() == after_first);
  CHECK(free1 == free0);
}

TEST_CASE("Device<Cuda> reports wrong use with tessera::Error", "[cuda][errors]") {
  const data::Dataset d = regression_data(100, 4, 1);
  Model m = models::linear_regression(4);
  const TrainerOptions two{.batch_size = 10, .epochs = 1, .workers = 2, .progress = Progress::never};
  CHECK_THROWS_WITH((Trainer<Device<Cuda>>(two, optim::sgd(0.1)).fit(m, d)),
                    Catch::Contains("Device<Cuda> with Reduce<ThreadAllreduce> trains on one GPU"));
  const TrainerOptions det{.batch_size = 10, .epochs = 1, .deterministic = true, .progress = Progress::never};
  CHECK_THROWS_WITH((Trainer<Device<Cuda>>(det, optim::sgd(0.1)).fit(m, d)),
                    Catch::Contains("deterministic mode is CPU-only"));
  const TrainerOptions one{.batch_size = 10, .epochs = 1, .progress = Progress::never};
  CHECK_THROWS_WITH((Trainer<Device<Cuda>>(one, optim::sgd(1e30)).fit(m, d)),
                    Catch::Contains("the loss became") && Catch::Contains("epoch 1, step"));
  CHECK(m.parameters()[0] == models::linear_regression(4).parameters()[0]);  // left unchanged
  CHECK_THROWS_WITH(detail::cuda_check(cudaErrorInvalidValue, "cudaMemcpyAsync", "a test"),
                    Catch::Contains("CUDA cudaMemcpyAsync failed on device") && Catch::Contains("(a test)"));
}

#if defined(TESSERA_TEST_NCCL)
TEST_CASE("NCCL: a one-rank communicator sums, takes the maximum and broadcasts on a stream", "[nccl]") {
  auto comms = nccl::Communicator::init_all({0});
  REQUIRE(comms.size() == 1);
  CHECK(comms[0].rank() == 0);
  CHECK(comms[0].size() == 1);
  detail::CudaContext ctx(0);
  detail::BindCuda bind(ctx);
  std::vector<float> h(1000);
  for (std::size_t i = 0; i < h.size(); ++i) h[i] = float(i) - 300.5f;
  auto v = to_device(h);
  comms[0].all_reduce(thrust::raw_pointer_cast(v.data()), h.size(), ncclSum, ctx.stream(), "test");
  comms[0].broadcast(thrust::raw_pointer_cast(v.data()), h.size(), 0, ctx.stream(), "test");
  CHECK(to_host(v) == h);
  CHECK_THROWS_WITH(nccl::Communicator::init_all({detail::cuda_device_count()}),
                    Catch::Contains("device " + std::to_string(detail::cuda_device_count()) + " does not exist"));
  CHECK_THROWS_WITH(nccl::check(ncclInvalidArgument, "ncclAllReduce", 1, 2, 1, "gradient bucket"),
                    Catch::Contains("NCCL ncclAllReduce failed on rank 1 of 2 (device 1, gradient bucket)"));
}

TEST_CASE("Reduce<NcclAllreduce> on one GPU trains to the same bits as Device<Cuda> alone, any bucketing",
          "[nccl][buckets]") {
  const data::Dataset d = regression_data(1500, 20, 5);
  const Model init = models::mlp({20, 64, 32, 16, 1}, act::tanh, loss::mse, {.seed = 4});
  TrainerOptions o{.batch_size = 100, .epochs = 2, .seed = 1, .workers = 1, .progress = Progress::never};
  Model alone = init;
  Trainer<DataSplit<Random>, Device<Cuda>>(o, optim::adam(1e-2)).fit(alone, d);
  for (const std::size_t bucket : {std::size_t{4}, std::size_t{600}, std::size_t{1} << 20}) {
    for (const bool overlap : {true, false}) {
      CAPTURE(bucket, overlap);
      o.overlap = {overlap, bucket};
      Model m = init;
      const History h = Trainer<DataSplit<Random>, Reduce<NcclAllreduce>, Device<Cuda>>(o, optim::adam(1e-2)).fit(m, d);
      CHECK(h.workers == 1);
      CHECK(std::equal(m.parameters().begin(), m.parameters().end(), alone.parameters().begin()));
    }
  }
  const TrainerOptions too_many{.batch_size = 10, .epochs = 1, .workers = std::size_t(detail::cuda_device_count()) + 1,
                                .progress = Progress::never};
  Model m = init;
  CHECK_THROWS_WITH((Trainer<Reduce<NcclAllreduce>, Device<Cuda>>(too_many, optim::sgd(0.1)).fit(m, d)),
                    Catch::Contains("GPUs (workers), this process sees"));
}

TEST_CASE("Sync<Sharded> on NCCL trains as Sync<EveryStep> does, each GPU keeping its slice of the state",
          "[nccl][sharded]") {
  const data::Dataset d = regression_data(1200, 12, 7);
  const Model init = models::mlp({12, 48, 24, 1}, act::tanh, loss::mse, {.seed = 8});
  const std::size_t gpus = std::min<std::size_t>(2, std::size_t(detail::cuda_device_count()));
  const TrainerOptions o{.batch_size = 40, .epochs = 2, .seed = 2, .workers = gpus, .progress = Progress::never};
  Model every = init, sharded = init;
  Trainer<DataSplit<Random>, Reduce<NcclAllreduce>, Device<Cuda>>(o, optim::adam(1e-2)).fit(every, d);
  Trainer<DataSplit<Random>, Reduce<NcclAllreduce>, Sync<Sharded>, Device<Cuda>>(o, optim::adam(1e-2)).fit(sharded, d);
  CHECK(relative_error(sharded.parameters(), every.parameters()) < 1e-5);
}

TEST_CASE("Reduce<NcclAllreduce> on two GPUs equals one GPU with the doubled batch", "[nccl][multi]") {
  if (detail::cuda_device_count() < 2) {
    WARN("one GPU: the two-GPU equivalence is not run here");
    return;
  }
  const data::Dataset d = regression_data(2000, 16, 6);
  Model one = models::mlp({16, 32, 1}, act::relu, loss::mse, {.seed = 3});
  Model two = one;
  Trainer<Device<Cuda>>({.batch_size = 100, .epochs = 3, .workers = 1, .progress = Progress::never}, optim::sgd(0.05))
      .fit(one, d);
  const History h = Trainer<Reduce<NcclAllreduce>, Device<Cuda>>(
                        {.batch_size = 50, .epochs = 3, .workers = 2, .progress = Progress::never, .overlap = {true, 256}},
                        optim::sgd(0.05))
                        .fit(two, d);
  CHECK(h.workers == 2);
  CHECK(relative_error(two.parameters(), one.parameters()) < 1e-4);
}
#endif
