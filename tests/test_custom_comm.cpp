// A communicator written outside the library: a Reduce choice of the user's own that wraps the
// thread communicator and counts what crosses it, used by the data-parallel engine and by a
// two-stage pipeline without a line of tessera changed - and training exactly as the shipped
// ThreadAllreduce does.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include "tessera/partition.hpp"
#include "tessera/tessera.hpp"

using namespace tessera;

namespace {

struct Traffic {
  std::atomic<std::size_t> collectives{0}, collective_bytes{0}, messages{0}, message_bytes{0};
  void reset() {
    collectives = 0;
    collective_bytes = 0;
    messages = 0;
    message_bytes = 0;
  }
};
Traffic traffic;

/// The thread communicator, counting. Everything the engines ask of a communicator, forwarded.
class CountingComm {
 public:
  static constexpr bool shared_memory = comm::ThreadComm::shared_memory;
  explicit CountingComm(comm::ThreadComm inner) : c_(inner) {}

  std::size_t rank() const { return c_.rank(); }
  std::size_t size() const { return c_.size(); }
  std::size_t local_rank() const { return c_.local_rank(); }
  std::size_t local_size() const { return c_.local_size(); }
  void barrier(const char* what = "") { c_.barrier(what); }
  void local_barrier(const char* what = "") { c_.local_barrier(what); }
  void check(const char* what = "") const { c_.check(what); }

  void all_reduce(const float* in, float* out, std::size_t n, const char* what = "", float scale = 1.0f) {
    count(n * sizeof(float));
    c_.all_reduce(in, out, n, what, scale);
  }
  void all_reduce(double* p, std::size_t n, const char* what = "") {
    count(n * sizeof(double));
    c_.all_reduce(p, n, what);
  }
  detail::Range reduce_scatter(const float* in, float* out, std::size_t n, const char* what = "") {
    count(n * sizeof(float));
    return c_.reduce_scatter(in, out, n, what);
  }
  void all_gather(float* p, std::size_t n, const char* what = "") {
    count(n * sizeof(float));
    c_.all_gather(p, n, what);
  }
  void broadcast(float* p, std::size_t n, std::size_t root, const char* what = "") {
    count(n * sizeof(float));
    c_.broadcast(p, n, root, what);
  }
  void start_all_reduce(const float* in, float* out, std::size_t lo, std::size_t hi, const char* what = "") {
    count((hi - lo) * sizeof(float));
    c_.start_all_reduce(in, out, lo, hi, what);
  }
  void progress() { c_.progress(); }
  void finish(const char* what = "") { c_.finish(what); }

  std::vector<float> buffer(std::size_t n) { return c_.buffer(n); }
  void recycle(std::vector<float>&& v) { c_.recycle(std::move(v)); }
  void send(std::size_t peer, int tag, std::vector<float>&& data, const char* what = "") {
    ++traffic.messages;
    traffic.message_bytes += data.size() * sizeof(float);
    c_.send(peer, tag, std::move(data), what);
  }
  std::vector<float> recv(std::size_t peer, int tag, std::size_t count, const char* what = "") {
    return c_.recv(peer, tag, count, what);
  }
  CountingComm split(std::size_t color, std::size_t key) { return CountingComm(c_.split(color, key)); }

 private:
  static void count(std::size_t bytes) {
    ++traffic.collectives;
    traffic.collective_bytes += bytes;
  }
  comm::ThreadComm c_;
};
static_assert(comm::Communicator<CountingComm>);

/// The group of a fit: the threads of this process, each with a counting handle.
class CountingGroup : public comm::LocalGroup {
 public:
  using comm::LocalGroup::LocalGroup;
  CountingComm lane(std::size_t w) { return CountingComm(comm::LocalGroup::lane(w)); }
};
static_assert(comm::Group<CountingGroup>);

/// The Reduce choice: a name, what it spans, and the factory of its group.
struct CountingAllreduce {
  static constexpr const char* name = "CountingAllreduce";
  static constexpr bool across_processes = false;
  static constexpr bool gpu = false;
  template <class Device, bool OnePerProcess>
  static std::unique_ptr<CountingGroup> make_group(const detail::GroupRequest& q) {
    return std::make_unique<CountingGroup>(q.workers);
  }
};
static_assert(ReduceChoice<CountingAllreduce>);

data::Dataset blobs(std::size_t n, std::size_t d, std::size_t k) {
  Matrix x(n, d);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t c = i % k;
    y[i] = float(c);
    for (std::size_t j = 0; j < d; ++j) x(i, j) = rng::normal(8, rng::Stream::user, i * d + j, 0) + (j == c ? 3.0f : 0.0f);
  }
  return {std::move(x), std::move(y)};
}

template <class... Ps>
std::vector<float> fit(const data::Dataset& d, const TrainerOptions& o) {
  Model m = models::mlp({d.cols(), 12, 8, 3}, act::relu, loss::softmax_cross_entropy, {.seed = 3});
  Trainer<Ps...>(o, optim::adam(1e-2)).fit(m, d);
  return {m.parameters().begin(), m.parameters().end()};
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("a communicator of the user's own trains data-parallel, exactly like ThreadAllreduce", "[comm][custom]") {
  const data::Dataset d = blobs(300, 6, 3);
  const TrainerOptions o{.batch_size = 10, .epochs = 2, .seed = 1, .workers = 2, .progress = Progress::never};
  traffic.reset();
  const auto counted = fit<DataSplit<Random>, Reduce<CountingAllreduce>>(d, o);
  const auto shipped = fit<DataSplit<Random>>(d, o);
  CHECK(same_bits(counted, shipped));
  // every step sums the gradient: 15 steps x 2 epochs x 2 workers, a gradient of 4 bytes per parameter
  const std::size_t p = counted.size(), steps = 2 * 15;
  CHECK(traffic.collectives >= steps * 2);
  CHECK(traffic.collective_bytes >= steps * 2 * p * sizeof(float));
  CHECK(traffic.messages == 0);
}

TEST_CASE("a communicator of the user's own runs a two-stage pipeline, exactly like ThreadAllreduce", "[comm][custom]") {
  const data::Dataset d = blobs(240, 6, 3);
  const TrainerOptions o{.batch_size = 16, .epochs = 2, .seed = 1, .workers = 2, .micro_batches = 4,
                         .progress = Progress::never};
  traffic.reset();
  const auto counted = fit<Partition<Layerwise>, Reduce<CountingAllreduce>>(d, o);
  const auto shipped = fit<Partition<Layerwise>>(d, o);
  CHECK(same_bits(counted, shipped));
  // activations forward and gradients backward: two messages per micro-batch per step
  const std::size_t steps = 2 * 15;
  CHECK(traffic.messages == steps * 4 * 2);
  CHECK(traffic.message_bytes > 0);
}
