// The launch paths that only a GPU takes, run on the CPU. A device whose execution policy carries
// `tessera_fine_grained` (the CUDA device's does) makes the shared detail kernels launch one
// element per parallel item instead of chunks of 4096, and bias + activation and its derivative
// one element per item instead of one row per item (detail/launch.hpp, detail/activation_kernels.hpp).
// Here a CPU device with such a policy runs those very branches through Thrust's OpenMP system.
// Each element is computed by the same arithmetic in both layouts, so every output, loss,
// gradient and update must equal the CPU's bit for bit. What stays GPU-only (cuBLAS, the warp
// least-squares kernel, streams) is tested by gpu:test_cuda.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "tessera/tessera.hpp"

#include "model_data.hpp"

using namespace tessera;
using tessera::test::targets_for;

namespace {

/// Thrust's OpenMP policy, marked fine-grained as the CUDA device's policy is.
struct FineGrainedExec : std::remove_cvref_t<decltype(thrust::omp::par)> {
  static constexpr bool tessera_fine_grained = true;
};
/// The CPU device with that policy: CBLAS products, host memory, GPU launch layout.
struct FineGrainedCpu : Cpu {
  static FineGrainedExec exec() noexcept { return {}; }
};

static_assert(detail::fine_grained<FineGrainedExec> && detail::fine_grained<decltype(FineGrainedCpu::exec())>);
static_assert(!detail::fine_grained<decltype(Cpu::exec())> && !detail::fine_grained<decltype(detail::CpuWorker::exec())>);

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<float> normal_values(std::size_t n, std::uint64_t seed, float scale = 1.0f) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = scale * rng::normal(seed, rng::Stream::user, i, 0);
  return v;
}

/// Every parameter drawn at random: fresh models have zero biases, which would hide a bias read
/// from the wrong column.
void randomise(Model& m, std::uint64_t seed) {
  const auto p = normal_values(m.parameter_count(), seed, 0.3f);
  std::copy(p.begin(), p.end(), m.parameters().begin());
}

struct Pass {
  std::vector<float> out, grad, grad_accumulated;
  double loss = 0.0;
};

template <class Dev>
Pass run_pass(const Model& m, const std::vector<float>& x, const std::vector<float>& y, std::size_t rows, float wd) {
  const Architecture& a = m.architecture();
  Network<Dev> net(a, rows);
  Pass r;
  r.grad.assign(m.parameter_count(), 0.0f);
  r.loss = net.forward_backward(m.parameters().data(), x.data(), y.data(), rows, r.grad.data(), 0.5f, wd, false,
                                [](std::size_t) {});
  r.grad_accumulated = r.grad;  // a second pass added onto the first (gradient accumulation)
  net.forward_backward(m.parameters().data(), x.data(), y.data(), rows, r.grad_accumulated.data(), 0.25f, wd, true,
                       [](std::size_t) {});
  const float* o = net.forward(m.parameters().data(), x.data(), rows);
  r.out.assign(o, o + rows * a.output_dim());
  return r;
}

/// The fine-grained pass against the CPU's: loss, outputs, gradient and accumulated gradient, bits.
void check_same(const Pass& fine, const Pass& cpu) {
  CHECK(fine.loss == cpu.loss);
  CHECK(same_bits(fine.out, cpu.out));
  CHECK(same_bits(fine.grad, cpu.grad));
  CHECK(same_bits(fine.grad_accumulated, cpu.grad_accumulated));
}

}  // namespace

TEST_CASE("the GPU's launch layout gives the CPU's outputs, loss and gradient bit for bit", "[fine_grained]") {
  const Activation act = GENERATE(act::identity, act::relu, act::tanh, act::sigmoid);
  const Loss l = GENERATE(loss::mse, loss::binary_cross_entropy, loss::softmax_cross_entropy);
  const float wd = GENERATE(0.0f, 0.05f);
  // 4099 rows: one more than a chunk of 4096, so the chunked layout has a partial last chunk
  const std::size_t rows = GENERATE(std::size_t{1}, std::size_t{37}, std::size_t{4099});
  CAPTURE(to_string(act), to_string(l), wd, rows);
  Model m = models::mlp({13, 33, 17, 5}, act, l, {.seed = 7});
  randomise(m, 8);
  const auto x = normal_values(rows * 13, 3);
  const auto y = targets_for(m.architecture(), rows, 4);

  const Pass cpu = run_pass<Cpu>(m, x, y, rows, wd);
  check_same(run_pass<FineGrainedCpu>(m, x, y, rows, wd), cpu);
  // and the pass did something: a gradient that is all zero would compare equal too
  CHECK(std::any_of(cpu.grad.begin(), cpu.grad.end(), [](float g) { return g != 0.0f; }));
}

TEST_CASE("the GPU's launch layout gives the CPU's linear and logistic regression bit for bit", "[fine_grained]") {
  const std::size_t rows = GENERATE(std::size_t{5}, std::size_t{5000});
  const float wd = GENERATE(0.0f, 0.1f);
  CAPTURE(rows, wd);
  for (Model m : {models::linear_regression(6, {.seed = 2, .weight_decay = wd}),
                  models::logistic_regression(6, {.seed = 2, .weight_decay = wd}),
                  models::softmax_regression(6, 4, {.seed = 2, .weight_decay = wd})}) {
    randomise(m, 5);
    CAPTURE(m.architecture().describe());
    const auto x = normal_values(rows * 6, 1);
    const auto y = targets_for(m.architecture(), rows, 6);
    check_same(run_pass<FineGrainedCpu>(m, x, y, rows, wd), run_pass<Cpu>(m, x, y, rows, wd));
  }
}

TEST_CASE("the GPU's launch layout gives the CPU's optimizer updates bit for bit", "[fine_grained]") {
  const optim::Optimizer o = GENERATE(optim::sgd(0.1), optim::momentum(0.05, 0.9), optim::nesterov(0.05, 0.9),
                               optim::adam(1e-2), optim::adamw(1e-2, 0.01));
  const std::size_t n = GENERATE(std::size_t{1}, std::size_t{4097}, std::size_t{20000});
  CAPTURE(o.describe(), n);
  auto w_cpu = normal_values(n, 11);
  auto w_fine = w_cpu;
  optim::State<Cpu> s_cpu(o, n);
  optim::State<FineGrainedCpu> s_fine(o, n);
  for (std::uint64_t step = 0; step < 3; ++step) {
    const auto g = normal_values(n, 20 + step, 0.3f);
    s_cpu.step(w_cpu.data(), g.data(), o.learning_rate);
    s_fine.step(w_fine.data(), g.data(), o.learning_rate);
  }
  CHECK(same_bits(w_fine, w_cpu));
  CHECK(!same_bits(w_cpu, normal_values(n, 11)));  // the updates moved the weights
}
