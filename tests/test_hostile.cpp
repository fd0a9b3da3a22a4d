// Hostile and careless input: crafted files that once read or wrote out of bounds, allocated what
// a header asked for, or ended in something other than a tessera::Error; options that once gave
// std::length_error; fits that once returned normally with non-finite parameters. One test per
// defect, each written to fail on the code before its fix (see docs/reliability.md).
#include <catch2/catch.hpp>

#include "support.hpp"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <new>
#include <string>
#include <vector>

#if defined(__unix__)
#include <unistd.h>
#endif

#include "tessera/partition.hpp"
#include "tessera/tessera.hpp"

using namespace tessera;
using test::ErrorWith;
using test::TempDir;
namespace fs = std::filesystem;

// ---- the largest single allocation while a reader runs -----------------------------------------

namespace {
std::atomic<bool> tracking{false};
std::atomic<std::size_t> largest{0};
}  // namespace

// Under AddressSanitizer the allocator is the sanitizer's own (which has its own limits): the
// sizes are then not tracked and the assertions on them hold trivially; the plain build checks them.
#if !defined(__SANITIZE_ADDRESS__)
// the replacement pair allocates with malloc and frees with free: matched, whatever GCC infers
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  if (tracking.load(std::memory_order_relaxed) && n > largest.load(std::memory_order_relaxed)) largest.store(n);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#endif

namespace {
/// Runs f and returns the largest single allocation it made (bytes).
template <class F>
std::size_t largest_allocation(F&& f) {
  largest.store(0);
  tracking.store(true);
  try {
    f();
  } catch (...) {
    tracking.store(false);
    throw;
  }
  tracking.store(false);
  return largest.load();
}

void write_bytes(const std::string& p, const std::vector<unsigned char>& b) {
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
std::vector<unsigned char> read_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
template <class T>
void put(std::vector<unsigned char>& b, T v) {
  const auto* p = reinterpret_cast<const unsigned char*>(&v);
  b.insert(b.end(), p, p + sizeof v);
}
std::uint64_t fnv(const std::vector<unsigned char>& b, std::uint64_t h) {
  for (unsigned char c : b) h = (h ^ c) * 1099511628211ull;
  return h;
}
constexpr std::uint64_t fnv_standard = 14695981039346656037ull, fnv_model_v1 = 1469598103934665603ull;

/// A model file of one version as save() lays it out, with a correct checksum for that version.
std::vector<unsigned char> model_file(std::uint32_t version, std::uint64_t input, std::vector<std::uint64_t> widths,
                                      std::uint64_t stored_count, std::size_t values, std::uint32_t loss = 0) {
  std::vector<unsigned char> b = {'T', 'S', 'R', 'M', 'O', 'D', 'L', '1'};
  put(b, version);
  put(b, input);
  put(b, std::uint64_t{widths.size()});
  for (std::uint64_t w : widths) {
    put(b, w);
    put(b, std::uint32_t{0});  // identity
  }
  put(b, loss);
  put(b, 0.0f);
  put(b, stored_count);
  for (std::size_t i = 0; i < values; ++i) put(b, 0.25f);
  put(b, fnv(b, version == 1 ? fnv_model_v1 : fnv_standard));
  return b;
}

data::Dataset line(std::size_t n) {  // y = 10 x: a residual of about -10 at w = 0
  Matrix x(n, 1);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    x(i, 0) = 1.0f;
    y[i] = 10.0f;
  }
  return {std::move(x), std::move(y)};
}
}  // namespace

// ---- 1. CSV: a first line that is also the last, and CR-only line ends ---------------------------

TEST_CASE("defect 1: a CSV whose only line has no line end is read in bounds", "[hostile][csv]") {
  TempDir dir;
  // exactly sized files: a read past the text's end runs off the heap buffer
  CHECK_THROWS_MATCHES(data::read_csv(dir.write("h.csv", "a,b")), Error, ErrorWith(ErrorKind::parse, "no data rows"));
  const data::Dataset one = data::read_csv(dir.write("one.csv", "1,2"), {.header = false});
  CHECK(one.rows() == 1);
  CHECK(one.targets[0] == 2.0f);
}

TEST_CASE("defect 1: CR-only line ends are line ends", "[hostile][csv]") {
  TempDir dir;
  const data::Dataset d = data::read_csv(dir.write("cr.csv", "a,b\r1,2\r3,4"));
  REQUIRE(d.rows() == 2);
  CHECK(d.features(1, 0) == 3.0f);
  CHECK(d.targets[1] == 4.0f);
  const data::Dataset mixed = data::read_csv(dir.write("mixed.csv", "a,b\r\n1,2\n\r3,4\r\r5,6"));
  CHECK(mixed.rows() == 3);
}

// ---- 2 and 3. model files: wrapped counts, tiny files asking for gigabytes -----------------------

TEST_CASE("defect 2: a layer whose parameter count wraps around 2^64 is refused before any write", "[hostile][model]") {
  TempDir dir;
  // in * out + out = out * (in + 1) = 1 mod 2^64 for out = 3: a one-parameter file for a layer
  // whose weights alone would be 2^64 - 2 floats
  const std::uint64_t inverse_of_3 = 0xAAAAAAAAAAAAAAABull;
  const std::string p = dir.file("wrap.tsm");
  write_bytes(p, model_file(1, inverse_of_3 - 1, {3}, 1, 1));
  CHECK_THROWS_MATCHES(load_model(p), Error, ErrorWith(ErrorKind::format, "more than 2^64"));
  write_bytes(p, model_file(2, inverse_of_3 - 1, {3}, 1, 1));
  CHECK_THROWS_MATCHES(load_model(p), Error, ErrorWith(ErrorKind::format, "more than 2^64"));
}

TEST_CASE("defect 3: a tiny model file allocates nothing its bytes cannot fill", "[hostile][model]") {
  TempDir dir;
  const std::string p = dir.file("tiny.tsm");
  // 2^15 x 2^15 weights (4 GiB) declared in a file of 64 bytes
  const std::uint64_t n = (std::uint64_t{1} << 30) + (std::uint64_t{1} << 15);
  write_bytes(p, model_file(1, std::uint64_t{1} << 15, {std::uint64_t{1} << 15}, n, 0));
  try {
    (void)largest_allocation([&] { (void)load_model(p); });
    FAIL("loaded");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::format);
    CHECK_THAT(e.what(), Catch::Contains("truncated model file"));
  }
  CHECK(largest.load() < 4096);
  // 2^20 layers claimed by a 48-byte file: refused before the layer table is read
  write_bytes(p, model_file(2, 8, {}, 0, 0));
  auto b = read_bytes(p);
  const std::uint64_t layers = (std::uint64_t{1} << 20) - 1;
  std::memcpy(b.data() + 20, &layers, 8);
  write_bytes(p, b);
  try {
    (void)largest_allocation([&] { (void)load_model(p); });
    FAIL("loaded");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::format);
  }
  CHECK(largest.load() < 4096);
}

TEST_CASE("defect 3: loading reads the parameters as they are, nothing drawn first", "[hostile][model]") {
  TempDir dir;
  const Model m = models::mlp({300, 200, 10}, act::relu, loss::softmax_cross_entropy, {.seed = 3});
  save(m, dir.file("m.tsm"));
  // the file's own bytes bound the allocations: at most the parameters, once (no second copy of
  // the file, no initialised architecture thrown away)
  const std::size_t bytes = m.parameter_count() * 4;
  const std::size_t most = largest_allocation([&] { (void)load_model(dir.file("m.tsm")); });
  CHECK(most <= bytes);
}

// ---- 4. unbounded sources ---------------------------------------------------------------------------

TEST_CASE("defect 4: devices and folders are refused with a tessera::Error", "[hostile][model][csv]") {
  TempDir dir;
#if defined(__unix__)
  if (fs::exists("/dev/zero")) {
    CHECK_THROWS_MATCHES(load_model("/dev/zero"), Error, ErrorWith(ErrorKind::io, "not a regular file"));
    CHECK_THROWS_MATCHES(data::read_csv("/dev/zero"), Error, ErrorWith(ErrorKind::io, "not a regular file"));
    CHECK_THROWS_MATCHES(data::read_binary("/dev/zero"), Error, ErrorWith(ErrorKind::io, "not a regular file"));
  }
#endif
  CHECK_THROWS_MATCHES(load_model(dir.path.string()), Error, ErrorWith(ErrorKind::io, "cannot open for reading"));
  Model target = models::linear_regression(2);
  CHECK_THROWS_MATCHES(load_parameters(target, dir.path.string()), Error, ErrorWith(ErrorKind::io, "cannot open"));
}

// ---- 5. CSV buffers sized by a product of counts --------------------------------------------------

TEST_CASE("defect 5: a CSV's buffers are sized by its bytes, not by lines x header columns", "[hostile][csv]") {
  TempDir dir;
  std::string text;
  for (int c = 0; c < 20000; ++c) text += (c ? ",c" : "c") + std::to_string(c);
  text += std::string(1000000, '\n');  // a million blank lines: the old estimate, times 20000 columns
  const std::string p = dir.write("wide.csv", text);
  std::size_t most = 0;
  try {
    most = largest_allocation([&] { (void)data::read_csv(p); });
    FAIL("read");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::parse);
    most = largest.load();
  }
  CHECK(most <= 4 * text.size());
}

// ---- 6. the smaller ones ----------------------------------------------------------------------------

TEST_CASE("defect 6: a raw float32 column count that overflows is a format error, not SIGFPE", "[hostile][binary]") {
  TempDir dir;
  const std::string p = dir.write("raw.f32", std::string(64, '\0'));
  CHECK_THROWS_MATCHES(data::read_raw_float32(p, std::size_t{1} << 62), Error,
                       ErrorWith(ErrorKind::format, "is not a whole, non-zero number of rows"));
}

TEST_CASE("defect 6: huge, negative and NaN class labels are an Error naming the row", "[hostile][data]") {
  for (float bad : {1e30f, -1.0f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), 2.5f}) {
    data::Dataset d(Matrix(3, 1, 0.0f), {0.0f, bad, 1.0f});
    CHECK_THROWS_MATCHES(d.num_classes(), Error, ErrorWith(ErrorKind::invalid_argument, "row 1 has label"));
  }
  data::Dataset ok(Matrix(2, 1, 0.0f), {0.0f, 4.0f});
  CHECK(ok.num_classes() == 5);
}

TEST_CASE("defect 6: a column with a denormal spread standardises to finite values", "[hostile][data]") {
  Matrix x(4, 2);
  const float tiny = std::numeric_limits<float>::denorm_min();
  for (std::size_t r = 0; r < 4; ++r) {
    x(r, 0) = static_cast<float>(r);
    x(r, 1) = r % 2 ? tiny : 0.0f;
  }
  const data::Standardizer s(x);
  Matrix y = x;
  s.transform_in_place(y);
  for (float v : y.values()) CHECK(std::isfinite(v));
}

TEST_CASE("defect 6: a save whose rename fails leaves no temporary file", "[hostile][model]") {
  TempDir dir;
  const std::string target = dir.file("taken");
  fs::create_directories(fs::path(target) / "inside");  // a folder (not empty) where the file should go
  CHECK_THROWS_MATCHES(save(models::linear_regression(3), target), Error, ErrorWith(ErrorKind::io, "cannot move"));
  CHECK_FALSE(fs::exists(target + ".tmp"));
  data::Dataset d(Matrix(2, 1, 1.0f), {0.0f, 1.0f});
  CHECK_THROWS_MATCHES(data::write_binary(d, target), Error, ErrorWith(ErrorKind::io, "cannot move"));
  CHECK_FALSE(fs::exists(target + ".tmp"));
}

TEST_CASE("defect 6: a TSRD header with 0 rows and 2^62 columns is refused", "[hostile][binary]") {
  TempDir dir;
  std::vector<unsigned char> b = {'T', 'S', 'R', 'D', 'A', 'T', 'A', '1'};
  put(b, std::uint64_t{0});
  put(b, std::uint64_t{1} << 62);
  put(b, std::uint64_t{1});
  put(b, fnv(b, fnv_standard));
  const std::string p = dir.file("wide.tsrd");
  write_bytes(p, b);
  CHECK_THROWS_MATCHES(data::read_binary(p), Error, ErrorWith(ErrorKind::format, "implausible header"));
}

TEST_CASE("defect 6: a stratified split that would leave a part empty is an error", "[hostile][data]") {
  data::Dataset d(Matrix(3, 1, 0.0f), {0.0f, 1.0f, 2.0f});  // one row per class
  CHECK_THROWS_MATCHES(data::train_test_split(d, {.test_fraction = 0.5, .seed = 1, .stratify = true}), Error,
                       ErrorWith(ErrorKind::invalid_argument, "leaves the training set empty"));
}

// ---- 7. one checksum: the standard FNV-1a basis, version-1 files still read ------------------------

TEST_CASE("defect 7: model files are closed by the standard FNV-1a, and version 1 files still load", "[hostile][model]") {
  TempDir dir;
  const Model m = models::mlp({3, 4, 2}, act::tanh, loss::softmax_cross_entropy, {.seed = 5});
  std::vector<unsigned char> b;  // the version-3 layout, from which version 1 differs least
  detail::write_model(
      m, [&](const void* p, std::size_t n) { b.insert(b.end(), (const unsigned char*)p, (const unsigned char*)p + n); },
      3);
  std::uint64_t stored = 0;
  std::memcpy(&stored, b.data() + b.size() - 8, 8);
  CHECK(stored == fnv(std::vector<unsigned char>(b.begin(), b.end() - 8), fnv_standard));
  // the same model as a version-1 file (no input transform section: the last 4 bytes before the
  // checksum, kind 0, go), closed with that version's basis
  auto v1 = std::vector<unsigned char>(b.begin(), b.end() - 12);
  v1[8] = 1;
  put(v1, fnv(v1, fnv_model_v1));
  write_bytes(dir.file("v1.tsm"), v1);
  const Model back = load_model(dir.file("v1.tsm"));
  CHECK(std::memcmp(back.parameters().data(), m.parameters().data(), m.parameter_count() * 4) == 0);
  // a version-1 file checked with the standard basis would be "corrupted": the two are told apart
  auto wrong = std::vector<unsigned char>(v1.begin(), v1.end() - 8);
  put(wrong, fnv(wrong, fnv_standard));
  write_bytes(dir.file("wrong.tsm"), wrong);
  CHECK_THROWS_MATCHES(load_model(dir.file("wrong.tsm")), Error, ErrorWith(ErrorKind::format, "checksum mismatch"));
}

// ---- 8. no "success" with non-finite parameters ----------------------------------------------------

namespace {
/// One step per epoch whose loss is finite but whose update overflows float32.
template <class... Ps>
void overflowing_last_update(TrainerOptions o, bool with_validation) {
  const data::Dataset d = line(8);
  Model m = models::linear_regression(1, {.seed = 1});
  const std::vector<float> before(m.parameters().begin(), m.parameters().end());
  Trainer<Ps...> t(o, optim::sgd(3e38));
  try {
    if (with_validation) t.fit(m, d, d);
    else t.fit(m, d);
    FAIL("the fit returned normally");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::runtime);
    CHECK_THAT(e.what(), Catch::Contains("non-finite") && Catch::Contains("the model is left unchanged"));
  }
  CHECK(std::equal(before.begin(), before.end(), m.parameters().begin()));
}
}  // namespace

TEST_CASE("defect 8: a fit whose last update overflows throws on every engine", "[hostile][training]") {
  const TrainerOptions one{.batch_size = 8, .epochs = 1, .workers = 1, .progress = Progress::never};
  const TrainerOptions two{.batch_size = 4, .epochs = 1, .workers = 2, .progress = Progress::never};
  for (bool v : {false, true}) {
    overflowing_last_update<>(one, v);
    overflowing_last_update<>(two, v);
    overflowing_last_update<Sync<Periodic<1>>>(two, v);
    overflowing_last_update<>(TrainerOptions{.batch_size = 4, .epochs = 1, .workers = 2, .deterministic = true,
                                             .progress = Progress::never},
                              v);
    overflowing_last_update<Load<Prefetch>>(two, v);
  }
}

TEST_CASE("defect 8: a diverging validation loss is a divergence, with the model unchanged", "[hostile][training]") {
  // finite parameters whose outputs overflow on the validation rows
  const data::Dataset train = line(8);
  Matrix xv(2, 1, 3e38f);
  const data::Dataset valid(std::move(xv), {1.0f, 1.0f});
  Model m = models::linear_regression(1, {.seed = 1});
  const std::vector<float> before(m.parameters().begin(), m.parameters().end());
  Trainer<> t({.batch_size = 8, .epochs = 2, .workers = 1, .progress = Progress::never}, optim::sgd(0.1));
  CHECK_THROWS_WITH(t.fit(m, train, valid), Catch::Contains("the validation loss became") &&
                                                Catch::Contains("the model is left unchanged"));
  CHECK(std::equal(before.begin(), before.end(), m.parameters().begin()));
}

TEST_CASE("defect 8: partitioned fits whose last update overflows throw", "[hostile][training][partition]") {
  const data::Dataset d = [] {
    Matrix x(8, 2, 1.0f);
    return data::Dataset(std::move(x), std::vector<float>(8, 10.0f));
  }();
  for (int kind = 0; kind < 2; ++kind) {
    Model m = models::mlp({2, 4, 1}, act::identity, loss::mse, {.seed = 2});
    const std::vector<float> before(m.parameters().begin(), m.parameters().end());
    const TrainerOptions o{.batch_size = 8, .epochs = 1, .workers = 2, .progress = Progress::never};
    try {
      if (kind == 0) Trainer<Partition<Layerwise>>(o, optim::sgd(3e38)).fit(m, d);
      else Trainer<Partition<Columnwise>>(o, optim::sgd(3e38)).fit(m, d);
      FAIL("the fit returned normally");
    } catch (const Error& e) {
      CHECK_THAT(e.what(), Catch::Contains("non-finite") || Catch::Contains("the loss became"));
    }
    CHECK(std::equal(before.begin(), before.end(), m.parameters().begin()));
  }
}

// ---- 12. options ----------------------------------------------------------------------------------

TEST_CASE("defect 12: workers set from a negative int is an Error with the limit", "[hostile][options]") {
  const int negative = -1;
  TrainerOptions o;
  o.workers = static_cast<std::size_t>(negative);
  CHECK_THROWS_MATCHES(Trainer<>(o, optim::sgd(0.1)), Error,
                       ErrorWith(ErrorKind::invalid_argument, "is above the limit of 4096 worker threads"));
  o.workers = 2;
  o.deterministic = {true, static_cast<std::size_t>(negative)};
  CHECK_THROWS_MATCHES(Trainer<>(o, optim::sgd(0.1)), Error, ErrorWith(ErrorKind::invalid_argument, "deterministic.shards"));
}

#if defined(__unix__)
TEST_CASE("defect 12: a batch larger than the data trains one step per epoch and says so once", "[hostile][options]") {
  const data::Dataset d = line(10);
  TempDir dir;
  const std::string log = dir.file("stderr.txt");
  std::fflush(stderr);
  const int saved = ::dup(2);
  REQUIRE(std::freopen(log.c_str(), "w", stderr));
  for (int i = 0; i < 2; ++i) {
    Model m = models::linear_regression(1, {.seed = 1});
    // the batch from a negative int: no buffer is sized for it, nothing overflows
    Trainer<>({.batch_size = static_cast<std::size_t>(-1), .epochs = 1, .workers = 2, .progress = Progress::never},
              optim::sgd(0.01))
        .fit(m, d);
    CHECK(std::isfinite(m.parameters()[0]));
  }
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::ifstream f(log);
  const std::string text{std::istreambuf_iterator<char>(f), {}};
  const auto first = text.find("is larger than the 10 training rows");
  CHECK(first != std::string::npos);
  CHECK(text.find("is larger than the 10 training rows", first + 1) == std::string::npos);  // once
}
#endif
