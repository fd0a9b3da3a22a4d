// The memory check before a fit's first step: the readers of /proc and cgroup files take garbage
// as "unknown", the estimate is within a factor 2 of what each engine reports holding, and a fit
// that cannot fit fails before its first step with the numbers needed and available.
#include <tessera/partition.hpp>
#include <tessera/tessera.hpp>

#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "partition_support.hpp"
#include "support.hpp"

using namespace tessera;
using tessera::test::ErrorWith;
using tessera::test::make_data;

namespace {

/// Sets an environment variable for the scope of a test.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) ::setenv(name_.c_str(), old_.c_str(), 1);
    else ::unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_, old_;
  bool had_ = false;
};

std::uint64_t reported_bytes(const std::vector<WorkerMemory>& mem) {
  std::uint64_t b = 0;
  for (const WorkerMemory& w : mem) b += w.bytes();
  return b;
}

/// Trains one epoch (so that every row buffer has been used), then compares the estimate with what
/// the engine reports holding; prints the ratio.
template <class E>
double ratio_after_epoch(E& engine, const Architecture& arch, const detail::FitLayout& f, const data::Dataset& d,
                         const char* what) {
  std::vector<std::size_t> order(d.rows());
  std::iota(order.rbegin(), order.rend(), std::size_t{0});  // reversed: the rows are gathered
  {
    detail::SingleThreadedBlas one_blas_thread;
    (void)engine.epoch(d, order, 0, detail::Range{0, SIZE_MAX}, {}, [](std::size_t, double) {});
  }
  const std::uint64_t actual = reported_bytes(engine.memory());
  const FitMemory est = detail::estimate_fit_memory(arch, f);
  const double r = static_cast<double>(est.bytes()) / static_cast<double>(actual);
  std::printf("estimate / engine memory(): %-44s %9.1f KiB / %9.1f KiB = %.2f\n", what,
              static_cast<double>(est.bytes()) / 1024.0, static_cast<double>(actual) / 1024.0, r);
  return r;
}

detail::FitLayout layout(detail::FitPartition p, std::size_t lanes, std::size_t batch, std::size_t micro,
                         std::size_t state_buffers, std::size_t rows) {
  detail::FitLayout f;
  f.partition = p;
  f.lanes = lanes;
  f.batch = batch;
  f.micro_batches = micro;
  f.state_buffers = state_buffers;
  f.rows = rows;
  return f;
}

const Model& wide_model() {
  static const Model m = models::mlp({32, 256, 256, 128, 10}, act::relu, loss::softmax_cross_entropy);
  return m;
}

}  // namespace

TEST_CASE("meminfo, cgroup and byte-count texts parse, and garbage is unknown", "[memory][parse]") {
  using detail::parse_meminfo_available;
  CHECK(parse_meminfo_available("MemTotal:       32000000 kB\nMemFree:  1000 kB\nMemAvailable:   24188204 kB\n") ==
        24188204ull * 1024);
  CHECK(parse_meminfo_available("MemAvailable: 1 kB") == 1024u);
  for (const char* bad : {"", "MemAvailable:", "MemAvailable: kB", "MemAvailable: 12", "MemAvailable: 12 MB",
                          "MemAvailable: -5 kB", "MemAvailable: 99999999999999999999999 kB",
                          "MemAvailable: 18446744073709551615 kB", "XMemAvailable: 12 kB", "\x01\xff garbage",
                          "MemAvailable: 12 kB trailing"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_meminfo_available(bad).has_value());
  }
  // a later well-formed line is found past a look-alike
  CHECK(parse_meminfo_available("NotMemAvailable: 5 kB\nMemAvailable: 7 kB\n") == 7u * 1024);

  using detail::parse_cgroup_bytes;
  CHECK(parse_cgroup_bytes("8589934592\n") == 8589934592ull);
  CHECK_FALSE(parse_cgroup_bytes("max\n").has_value());
  CHECK_FALSE(parse_cgroup_bytes("9223372036854771712\n").has_value());  // v1: no limit
  for (const char* bad : {"", "\n", "12x", "-1", "1 2", "0x10", "184467440737095516150"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_cgroup_bytes(bad).has_value());
  }

  using detail::parse_byte_count;
  CHECK(parse_byte_count("1048576") == 1048576u);
  CHECK(parse_byte_count("512M") == 512ull << 20);
  CHECK(parse_byte_count(" 2 GiB ") == 2ull << 30);
  CHECK(parse_byte_count("3k") == 3072u);
  CHECK(parse_byte_count("1T") == 1ull << 40);
  CHECK(parse_byte_count("10B") == 10u);
  for (const char* bad : {"", "G", "1.5G", "12Q", "-3", "1GG", "99999999999999999999T", "20000000T"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_byte_count(bad).has_value());
  }

  using detail::parse_cgroup_path;
  CHECK(parse_cgroup_path("0::/user.slice/app.scope\n", true) == std::string("/user.slice/app.scope"));
  CHECK(parse_cgroup_path("4:memory:/process_api/abc\n0::/\n", false) == std::string("/process_api/abc"));
  CHECK(parse_cgroup_path("5:cpu,memory:/x\n", false) == std::string("/x"));
  CHECK_FALSE(parse_cgroup_path("4:memory:/x\n", true).has_value());
  CHECK_FALSE(parse_cgroup_path("0::relative\n", true).has_value());
  CHECK_FALSE(parse_cgroup_path("0::/../../etc\n", true).has_value());
  CHECK_FALSE(parse_cgroup_path("garbage without colons", true).has_value());
  CHECK_FALSE(parse_cgroup_path("", false).has_value());

  CHECK(detail::format_bytes(100) == "100 bytes");
  CHECK(detail::format_bytes(1536) == "1.5 KiB");
  CHECK(detail::format_bytes(37ull << 30) == "37.0 GiB");
}

TEST_CASE("this machine's available memory is read, or unknown", "[memory][host]") {
  const AvailableMemory a = detail::available_memory();
  if (a.bytes) {
    CHECK(*a.bytes > 0);
    CHECK_FALSE(a.source.empty());
  }
  {
    ScopedEnv limit("TESSERA_MEMORY_LIMIT", "64M");
    const AvailableMemory b = detail::available_memory();
    CHECK(b.bytes == 64ull << 20);
    CHECK(b.source == "TESSERA_MEMORY_LIMIT=64M");
  }
  {
    ScopedEnv off("TESSERA_MEMORY_LIMIT", "off");
    CHECK_FALSE(detail::available_memory().bytes.has_value());
  }
  ScopedEnv bad("TESSERA_MEMORY_LIMIT", "lots");
  CHECK_THROWS_MATCHES(detail::available_memory(), Error,
                       ErrorWith(ErrorKind::invalid_argument, "TESSERA_MEMORY_LIMIT = \"lots\" is not a byte count"));
}

TEST_CASE("the estimate is within 2x of what Partition<Replicate> holds", "[memory][estimate]") {
  const Model& m = wide_model();
  const Architecture& a = m.architecture();
  const data::Dataset d = make_data(256, 32, 10, Loss::softmax_cross_entropy, 3);
  const auto check = [&]<class Sync>(Sync, std::size_t lanes, std::size_t micro, std::size_t shards, const char* what) {
    comm::LocalGroup group(lanes);
    detail::EngineConfig cfg;
    cfg.batch = 32;
    cfg.micro_batches = micro;
    cfg.shards = shards;
    detail::ReplicateEngine<detail::CpuWorker, comm::LocalGroup, Sync> e(group, a, 0.0f, optim::adam(), m.parameters(), cfg);
    detail::FitLayout f = layout(detail::FitPartition::replicate, lanes, cfg.batch, micro, 2, d.rows());
    f.scope = Sync::scope;
    f.shards = shards;
    const double r = ratio_after_epoch(e, a, f, d, what);
    CHECK(r >= 0.5);
    CHECK(r <= 2.0);
  };
  check(EveryStep{}, 1, 1, 0, "Replicate, EveryStep, 1 worker");
  check(EveryStep{}, 4, 1, 0, "Replicate, EveryStep, 4 workers");
  check(EveryStep{}, 4, 4, 0, "Replicate, EveryStep, 4 workers, 4 micro");
  check(Sharded{}, 4, 1, 0, "Replicate, Sharded, 4 workers");
  check(Periodic<2>{}, 4, 1, 0, "Replicate, Periodic<2>, 4 workers");
  check(EveryStep{}, 2, 1, 8, "Replicate, EveryStep, 2 workers, 8 shards");
  // activations weigh most: a narrow model on a large batch
  const Model narrow = models::mlp({32, 64, 64, 10}, act::relu, loss::softmax_cross_entropy);
  const data::Dataset big = make_data(4096, 32, 10, Loss::softmax_cross_entropy, 4);
  for (std::size_t lanes : {1u, 4u}) {
    comm::LocalGroup group(lanes);
    detail::EngineConfig cfg;
    cfg.batch = 1024;
    cfg.prefetch = true;
    detail::ReplicateEngine<detail::CpuWorker, comm::LocalGroup, EveryStep> e(group, narrow.architecture(), 0.0f,
                                                                                optim::momentum(0.1), narrow.parameters(),
                                                                                cfg);
    detail::FitLayout f = layout(detail::FitPartition::replicate, lanes, cfg.batch, 1, 1, big.rows());
    f.prefetch = true;
    const std::string what = "Replicate, batch 1024, " + std::to_string(lanes) + " worker(s), Prefetch";
    const double r = ratio_after_epoch(e, narrow.architecture(), f, big, what.c_str());
    CHECK(r >= 0.5);
    CHECK(r <= 2.0);
  }
  comm::LocalGroup two(2);
  detail::LayerwiseEngine<detail::CpuWorker, comm::LocalGroup> pipe(
      two, narrow.architecture(), 0.0f, optim::adam(), narrow.parameters(),
      {.stages = 2, .micro_batches = 4, .schedule = Schedule::gpipe}, 1, 1024);
  detail::FitLayout f = layout(detail::FitPartition::layerwise, 2, 1024, 4, 2, big.rows());
  f.stages = 2;
  f.schedule = Schedule::gpipe;
  const double r = ratio_after_epoch(pipe, narrow.architecture(), f, big, "Layerwise, batch 1024, 2 stages, GPipe");
  CHECK(r >= 0.5);
  CHECK(r <= 2.0);
}

TEST_CASE("the estimate is within 2x of what Partition<Layerwise> and <Columnwise> hold", "[memory][estimate]") {
  const Model& m = wide_model();
  const Architecture& a = m.architecture();
  const data::Dataset d = make_data(256, 32, 10, Loss::softmax_cross_entropy, 3);
  for (const Schedule sched : {Schedule::gpipe, Schedule::one_f_one_b}) {
    for (const auto& [S, R] : std::vector<std::pair<std::size_t, std::size_t>>{{2, 1}, {4, 1}, {2, 2}}) {
      comm::LocalGroup group(S * R);
      const PipelineOptions po{.stages = S, .micro_batches = 4, .replicas = R, .schedule = sched};
      detail::LayerwiseEngine<detail::CpuWorker, comm::LocalGroup> e(group, a, 0.0f, optim::adam(), m.parameters(), po, 1,
                                                                      32);
      detail::FitLayout f = layout(detail::FitPartition::layerwise, S * R, 32, 4, 2, d.rows());
      f.stages = S;
      f.replicas = R;
      f.schedule = sched;
      const std::string what = "Layerwise, " + std::to_string(S) + " stages x " + std::to_string(R) + ", " +
                               to_string(sched);
      const double r = ratio_after_epoch(e, a, f, d, what.c_str());
      CHECK(r >= 0.5);
      CHECK(r <= 2.0);
    }
  }
  for (std::size_t T : {2u, 4u}) {
    comm::LocalGroup group(T);
    detail::ColumnEngine<detail::CpuWorker, comm::LocalGroup> e(group, a, 0.0f, m.parameters(), optim::adam(), 32, 2, 1);
    const detail::FitLayout f = layout(detail::FitPartition::columnwise, T, 32, 2, 2, d.rows());
    const std::string what = "Columnwise, " + std::to_string(T) + " workers";
    const double r = ratio_after_epoch(e, a, f, d, what.c_str());
    CHECK(r >= 0.5);
    CHECK(r <= 2.0);
  }
}

TEST_CASE("the estimate grows with the batch, the workers and the optimizer state as the engines do",
          "[memory][estimate]") {
  const Architecture& a = wide_model().architecture();
  const std::uint64_t p = a.parameter_count() * 4;
  detail::FitLayout f = layout(detail::FitPartition::replicate, 8, 64, 1, 2, 1000);
  const FitMemory every = detail::estimate_fit_memory(a, f);
  // Sync<EveryStep> on threads: one replica and one Adam state per process, a slice each
  // (slices rounded up to whole floats)
  CHECK(every.process().parameters - (p + p) < 8 * 4);  // the shared replica, and the set-up copy
  CHECK(every.process().optimizer_state - 2 * p < 8 * 2 * 4);
  f.scope = StateScope::replica;  // local SGD: a replica and a state per worker
  const FitMemory local = detail::estimate_fit_memory(a, f);
  CHECK(local.process().parameters == 8 * p + p);
  CHECK(local.process().optimizer_state == 8 * 2 * p);
  f.scope = StateScope::global_slice;
  f.processes = 4;  // Sync<Sharded> across 4 processes of 8 lanes: 1/32 of the state per worker
  const FitMemory sharded = detail::estimate_fit_memory(a, f);
  CHECK(sharded.largest_worker().optimizer_state <= 2 * (p / 32 + 4));
  f = layout(detail::FitPartition::replicate, 8, 64, 1, 2, 1000);
  f.batch = 128;
  CHECK(detail::estimate_fit_memory(a, f).process().activations == 2 * every.process().activations);
}

TEST_CASE("a fit that cannot fit fails before its first step with the memory needed and available",
          "[memory][trainer]") {
  const data::Dataset d = make_data(200, 32, 10, Loss::softmax_cross_entropy, 3);
  Model m = wide_model();
  const std::vector<float> before(m.parameters().begin(), m.parameters().end());
  struct Count {
    std::size_t* seen;
    void on_epoch(const EpochRecord&) const { ++*seen; }
  };
  std::size_t epochs_seen = 0;
  const Count count{&epochs_seen};
  Trainer<DataSplit<Random>> trainer({.batch_size = 32, .epochs = 2, .workers = 4, .progress = Progress::never},
                                     optim::adam(1e-3));
  {
    ScopedEnv limit("TESSERA_MEMORY_LIMIT", "1M");
    CHECK_THROWS_MATCHES(trainer.fit(m, d, d, count), Error,
                         ErrorWith(ErrorKind::resource, "Trainer::fit: the fit needs about "));
    try {
      trainer.fit(m, d, d, count);
    } catch (const Error& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find("of host memory (per worker at most: parameters ") != std::string::npos);
      CHECK(msg.find("; x 4 workers; besides the workers: parameters ") != std::string::npos);
      CHECK(msg.find("1.0 MiB are available (TESSERA_MEMORY_LIMIT=1M); lower ") != std::string::npos);
      CHECK(msg.find("TESSERA_MEMORY_LIMIT=off skips this check") != std::string::npos);
    }
    CHECK(epochs_seen == 0);
    CHECK(std::equal(before.begin(), before.end(), m.parameters().begin()));  // nothing trained
  }
  {
    ScopedEnv off("TESSERA_MEMORY_LIMIT", "off");
    (void)trainer.fit(m, d, d, count);
    CHECK(epochs_seen == 2);
  }
  {
    // a batch far larger than the data is fitted to it before the estimate, as the fit does
    ScopedEnv limit("TESSERA_MEMORY_LIMIT", "64M");
    Trainer<> huge({.batch_size = std::size_t{1} << 40, .epochs = 1, .workers = 2, .progress = Progress::never},
                   optim::sgd(0.1));
    CHECK_NOTHROW(huge.fit(m, d));
  }
  {
    // the partitioned engines are checked too
    ScopedEnv limit("TESSERA_MEMORY_LIMIT", "100K");
    Trainer<Partition<Layerwise>> pipe({.batch_size = 32, .epochs = 1, .workers = 2, .micro_batches = 4,
                                        .progress = Progress::never},
                                       optim::sgd(0.1));
    CHECK_THROWS_MATCHES(pipe.fit(m, d), Error, ErrorWith(ErrorKind::resource, "100.0 KiB are available"));
    Trainer<Partition<Columnwise>> cols({.batch_size = 32, .epochs = 1, .workers = 2, .progress = Progress::never},
                                        optim::sgd(0.1));
    CHECK_THROWS_MATCHES(cols.fit(m, d), Error, ErrorWith(ErrorKind::resource, "100.0 KiB are available"));
  }
}

TEST_CASE("the check names what to lower, and skips what it cannot know", "[memory][check]") {
  const Architecture& a = wide_model().architecture();
  const detail::FitLayout f = layout(detail::FitPartition::replicate, 8, 4096, 1, 2, 100000);
  const FitMemory need = detail::estimate_fit_memory(a, f);
  const AvailableMemory little{std::uint64_t{1} << 20, "MemAvailable 1.0 MiB"};
  CHECK_THROWS_MATCHES(detail::check_fit_memory(need, little, "Trainer::fit", f), Error,
                       ErrorWith(ErrorKind::resource, "lower batch_size (or raise micro_batches), workers"));
  CHECK_NOTHROW(detail::check_fit_memory(need, AvailableMemory{}, "Trainer::fit", f));  // unknown: no check
  CHECK_NOTHROW(detail::check_fit_memory(need, AvailableMemory{need.bytes(), "exact"}, "Trainer::fit", f));
  FitMemory on_gpu = need;
  on_gpu.device = true;  // device buffers: not the host's memory
  CHECK_NOTHROW(detail::check_fit_memory(on_gpu, little, "Trainer::fit", f));
  // a model whose parameters weigh most: fewer workers, a narrower model, or less optimizer state
  detail::FitLayout small_step = f;
  small_step.batch = 1;
  small_step.rows = 10;
  CHECK_THROWS_MATCHES(detail::check_fit_memory(detail::estimate_fit_memory(a, small_step), little, "Trainer::fit",
                                                small_step),
                       Error, ErrorWith(ErrorKind::resource, "lower workers, the model's width, or use Sync<Sharded>"));
}
