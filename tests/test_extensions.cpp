// A device and a Partition choice written outside the library (docs/extending.md): a CPU device
// of the user's own that counts its matrix products, and a Partition choice whose engine wraps
// the shipped data-parallel one; Trainer drives both without a line of tessera changed.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "tessera/tessera.hpp"

using namespace tessera;

namespace {

std::atomic<std::size_t> gemms{0}, gemvs{0};

/// The CPU, sequential inside each worker (as the shipped worker device is), counting its
/// matrix products.
struct CountingCpu {
  template <class T>
  using vector = std::vector<T>;
  static constexpr const char* name = "CountingCpu";
  static constexpr bool host_memory = true;
  static auto exec() noexcept { return thrust::cpp::par; }
  static void download(const float* src, float* dst, std::size_t n) { std::copy(src, src + n, dst); }
  static void upload(const float* src, float* dst, std::size_t n) { std::copy(src, src + n, dst); }
  static void synchronize() noexcept {}
  template <class Check>
  static void wait(Check&&) noexcept {}
  struct Lane {
    explicit Lane(int = 0) noexcept {}
    struct Bound {};
    Bound bind() noexcept { return {}; }
  };
  static void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                   std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
    ++gemms;
    Cpu::gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  static void gemv(bool t, std::size_t m, std::size_t n, float alpha, const float* a, std::size_t lda, const float* x,
                   float beta, float* y) {
    ++gemvs;
    Cpu::gemv(t, m, n, alpha, a, lda, x, beta, y);
  }
};
static_assert(DeviceType<CountingCpu>);

/// An engine of the user's: the shipped data-parallel engine, counting the epochs it trains.
std::atomic<std::size_t> epochs_trained{0};

template <class Inner>
class CountingEngine {
 public:
  explicit CountingEngine(std::unique_ptr<Inner> inner) : inner_(std::move(inner)) {}
  std::size_t steps_per_epoch(std::size_t n) const { return inner_->steps_per_epoch(n); }
  template <class OnStep>
  detail::EpochResult epoch(const data::Dataset& d, const std::vector<std::size_t>& order, std::size_t e,
                            detail::Range span, const detail::EpochResult& so_far, OnStep&& on_step) {
    if (span.lo == 0) ++epochs_trained;
    return inner_->epoch(d, order, e, span, so_far, on_step);
  }
  std::vector<float> parameters() { return inner_->parameters(); }
  TrainingState state() { return inner_->state(); }
  void restore(const TrainingState& t) { inner_->restore(t); }
  std::size_t workers() const { return inner_->workers(); }
  std::vector<WorkerMemory> memory() { return inner_->memory(); }

 private:
  std::unique_ptr<Inner> inner_;
};

struct CountingReplicate {
  static constexpr const char* name = "CountingReplicate";
  static constexpr bool replicates = true;
  template <class Dev, class Sync, class Group>
  static auto make_engine(Group& g, const Model& m, std::span<const float> init, const optim::Optimizer& o,
                          detail::EngineConfig cfg) {
    using Inner = detail::ReplicateEngine<Dev, Group, Sync>;
    return std::make_unique<CountingEngine<Inner>>(
        std::make_unique<Inner>(g, m.architecture(), m.weight_decay(), o, init, std::move(cfg)));
  }
};
static_assert(PartitionChoice<CountingReplicate>);

data::Dataset blobs(std::size_t n, std::size_t d, std::size_t k) {
  Matrix x(n, d);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t c = i % k;
    y[i] = float(c);
    for (std::size_t j = 0; j < d; ++j) x(i, j) = rng::normal(5, rng::Stream::user, i * d + j, 0) + (j == c ? 3.0f : 0.0f);
  }
  return {std::move(x), std::move(y)};
}

template <class... Ps>
std::vector<float> fit(const data::Dataset& d, const TrainerOptions& o, History* h = nullptr) {
  Model m = models::mlp({d.cols(), 12, 8, 3}, act::relu, loss::softmax_cross_entropy, {.seed = 3});
  History got = Trainer<Ps...>(o, optim::adam(1e-2)).fit(m, d);
  if (h) *h = got;
  return {m.parameters().begin(), m.parameters().end()};
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("a device of the user's own trains every worker count, exactly like the CPU's workers", "[device][custom]") {
  const data::Dataset d = blobs(300, 6, 3);
  const detail::SingleThreadedBlas one_blas_thread;  // both runs: the same products to the bit
  for (std::size_t workers : {2, 3}) {
    const TrainerOptions o{.batch_size = 10, .epochs = 2, .seed = 1, .workers = workers, .progress = Progress::never};
    gemms = 0;
    gemvs = 0;
    const auto mine = fit<DataSplit<Random>, Device<CountingCpu>>(d, o);
    const auto shipped = fit<DataSplit<Random>>(d, o);
    CHECK(same_bits(mine, shipped));
    // every step: per worker, 3 forward products and 3 + 2 backward ones (weights; inputs but the first)
    const std::size_t steps = 2 * (300 / (10 * workers));
    CHECK(gemms.load() == steps * workers * (3 + 3 + 2));
    CHECK(gemvs.load() == steps * workers * 3);  // one bias gradient per layer
  }
}

TEST_CASE("a device of the user's own runs in deterministic mode with the shipped bits", "[device][custom]") {
  const data::Dataset d = blobs(240, 5, 3);
  TrainerOptions o{.batch_size = 12, .epochs = 2, .seed = 4, .workers = 2, .deterministic = true,
                   .progress = Progress::never};
  const detail::SingleThreadedBlas one_blas_thread;
  const auto mine = fit<Device<CountingCpu>>(d, o);
  o.workers = 1;
  o.batch_size = 24;  // the same global batch
  CHECK(same_bits(mine, fit<>(d, o)));
}

TEST_CASE("a Partition choice of the user's own builds the engine Trainer drives", "[partition][custom]") {
  const data::Dataset d = blobs(300, 6, 3);
  const TrainerOptions o{.batch_size = 10, .epochs = 3, .seed = 1, .workers = 2, .progress = Progress::never};
  epochs_trained = 0;
  History h;
  const auto mine = fit<Partition<CountingReplicate>, Sync<Sharded>>(d, o, &h);
  CHECK(epochs_trained.load() == 3);
  CHECK(h.epochs.size() == 3);
  CHECK(same_bits(mine, fit<Sync<Sharded>>(d, o)));
}
