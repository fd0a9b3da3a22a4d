// TSRD binary data files and raw float32 files: bitwise round trips, slices, and truncated,
// foreign and corrupted files.
#include <catch2/catch.hpp>

#include "support.hpp"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "tessera/data/binary.hpp"

using namespace tessera;
namespace fs = std::filesystem;

using test::ErrorWith;
using test::IsError;
using test::TempDir;

namespace {

std::vector<unsigned char> bytes_of(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void write_bytes(const std::string& path, const std::vector<unsigned char>& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

/// rows x cols features and rows x tdim targets, with awkward values: -0, subnormals, NaN payloads, inf.
data::Dataset sample(std::size_t rows, std::size_t cols, std::size_t tdim, unsigned seed = 5) {
  std::mt19937 rng(seed);
  std::vector<float> x(rows * cols), y(rows * tdim);
  for (auto* v : {&x, &y})
    for (float& f : *v) {
      const auto bits = static_cast<std::uint32_t>(rng());
      std::memcpy(&f, &bits, 4);  // any bit pattern, NaNs with payloads included
    }
  if (!x.empty()) x[0] = -0.0f;
  if (x.size() > 1) x[1] = std::numeric_limits<float>::denorm_min();
  if (x.size() > 2) x[2] = std::numeric_limits<float>::infinity();
  return data::Dataset(Matrix(rows, cols, std::move(x)), std::move(y), tdim);
}

bool bitwise_equal(const std::vector<float>& a, const float* b, std::size_t n) {
  return a.size() == n && (n == 0 || std::memcmp(a.data(), b, n * 4) == 0);
}

}  // namespace

TEST_CASE("write_binary then read_binary is bitwise exact", "[binary]") {
  const TempDir dir;
  const std::string path = dir.file("d.tsrd");
  for (auto [rows, cols, tdim] : {std::tuple<std::size_t, std::size_t, std::size_t>{37, 5, 1}, {10, 3, 4}, {0, 7, 1}, {1, 1, 2}}) {
    const auto d = sample(rows, cols, tdim);
    data::write_binary(d, path);
    CHECK(fs::file_size(path) == 32 + 4 * rows * (cols + tdim) + 8);
    CHECK_FALSE(fs::exists(path + ".tmp"));
    const auto r = data::read_binary(path);
    REQUIRE(r.rows() == rows);
    REQUIRE(r.cols() == cols);
    REQUIRE(r.target_dim == tdim);
    CHECK(bitwise_equal(r.features.values(), d.features.data(), d.features.size()));
    CHECK(bitwise_equal(r.targets, d.targets.data(), d.targets.size()));
  }
  // the layout: magic, then rows, cols, target_dim as little-endian u64
  const auto b = bytes_of(path);
  CHECK(std::string(b.begin(), b.begin() + 8) == "TSRDATA1");
  CHECK(b[8] == 1);
  CHECK(b[16] == 1);
  CHECK(b[24] == 2);
  // writing again over an existing file replaces it
  data::write_binary(sample(4, 2, 1, 9), path);
  CHECK(data::read_binary(path).rows() == 4);
}

TEST_CASE("shards cover the file once, in blocks differing by at most one row", "[binary][shards]") {
  const TempDir dir;
  const std::string path = dir.file("s.tsrd");
  const auto d = sample(1003, 4, 1);
  data::write_binary(d, path);
  for (std::size_t count : {1u, 2u, 3u, 4u, 7u}) {
    CAPTURE(count);
    std::size_t next = 0;
    for (std::size_t i = 0; i < count; ++i) {
      const data::Dataset s = data::read_binary_shard(path, i, count);
      CHECK(s.shard.index == i);
      CHECK(s.shard.count == count);
      CHECK(s.shard.first_row == next);  // contiguous, in order, nothing skipped
      CHECK(s.total_rows() == (count > 1 ? 1003u : s.rows()));
      CHECK((s.rows() == 1003 / count || s.rows() == 1003 / count + 1));
      CHECK(bitwise_equal(s.features.values(), d.features.row(next), s.rows() * 4));
      next += s.rows();
    }
    CHECK(next == 1003);
  }
  CHECK_THROWS_MATCHES(data::read_binary_shard(path, 3, 3), Error,
                       IsError(ErrorKind::invalid_argument,
                               path + ": shard 3 of 3 requested; the index must be below the count"));
  const std::string tiny = dir.file("tiny.tsrd");
  data::write_binary(sample(2, 4, 1), tiny);
  CHECK_THROWS_MATCHES(data::read_binary_shard(tiny, 2, 3), Error,
                       IsError(ErrorKind::invalid_argument, tiny + ": shard 2 of 3 would be empty: the file has only 2 rows"));
}

TEST_CASE("slices of rows read only their rows", "[binary]") {
  const TempDir dir;
  const std::string path = dir.file("s.tsrd");
  const auto d = sample(1000, 6, 2);
  data::write_binary(d, path);
  auto check_slice = [&](std::size_t first, std::size_t count, const data::Dataset& s) {
    REQUIRE(s.rows() == count);
    REQUIRE(s.cols() == 6);
    REQUIRE(s.target_dim == 2);
    CHECK(bitwise_equal(s.features.values(), d.features.row(first), count * 6));
    CHECK(bitwise_equal(s.targets, d.targets.data() + first * 2, count * 2));
  };
  check_slice(0, 10, data::read_binary(path, {.first_row = 0, .row_count = 10}));
  check_slice(123, 456, data::read_binary(path, {.first_row = 123, .row_count = 456}));
  check_slice(990, 10, data::read_binary(path, {.first_row = 990}));
  check_slice(999, 1, data::read_binary(path, {.first_row = 999, .row_count = 1}));
  check_slice(1000, 0, data::read_binary(path, {.first_row = 1000}));
  check_slice(0, 1000, data::read_binary(path, {.first_row = 0, .row_count = 1000}));

  CHECK_THROWS_MATCHES(data::read_binary(path, {.first_row = 990, .row_count = 11}), Error,
                       IsError(ErrorKind::invalid_argument,
                               path + ": rows [990, 1001) requested, past the end: the file has 1000 rows"));
  CHECK_THROWS_MATCHES(data::read_binary(path, {.first_row = 1001}), Error,
                       IsError(ErrorKind::invalid_argument,
                               path + ": rows [1001, end) requested, past the end: the file has 1000 rows"));
  CHECK_THROWS_MATCHES(data::read_binary(path, {.first_row = 5, .row_count = SIZE_MAX - 1}), Error,
                       ErrorWith(ErrorKind::invalid_argument, "requested, past the end: the file has 1000 rows"));
}

TEST_CASE("a corrupted file fails its checksum but a slice does not verify it", "[binary][errors]") {
  const TempDir dir;
  const std::string path = dir.file("c.tsrd");
  const auto d = sample(100, 4, 1);
  data::write_binary(d, path);
  const auto good = bytes_of(path);
  const std::string checksum = "checksum mismatch: stored 0x";
  for (std::size_t at : {std::size_t{32}, std::size_t{32 + 4 * 400 + 17}, good.size() - 1}) {  // features, targets, checksum
    auto b = good;
    b[at] ^= 0x10;
    write_bytes(path, b);
    CHECK_THROWS_MATCHES(data::read_binary(path), Error, ErrorWith(ErrorKind::format, path + ": " + checksum));
    CHECK_THROWS_WITH(data::read_binary(path),
                      Catch::Matches("tessera: .*: checksum mismatch: stored 0x[0-9a-f]{16}, computed 0x[0-9a-f]{16} "
                                     "\\(the file is corrupted\\)"));
    // documented: slices and verify_checksum = false read what is there
    CHECK(data::read_binary(path, {.verify_checksum = false}).rows() == 100);
    CHECK(data::read_binary(path, {.first_row = 1}).rows() == 99);
  }
  // the flipped feature byte is read as it is when the checksum is not verified
  auto b = good;
  b[32] ^= 0x10;
  write_bytes(path, b);
  const auto r = data::read_binary(path, {.verify_checksum = false});
  CHECK_FALSE(bitwise_equal(r.features.values(), d.features.data(), d.features.size()));
}

TEST_CASE("truncated and padded and foreign files are named as such", "[binary][errors]") {
  const TempDir dir;
  const std::string path = dir.file("t.tsrd");
  data::write_binary(sample(10, 3, 1), path);
  const auto good = bytes_of(path);
  REQUIRE(good.size() == 200);
  const std::string shape = " (10 rows x 3 features, 1 targets per row)";
  for (std::size_t keep : {std::size_t{199}, std::size_t{100}, std::size_t{32}}) {
    write_bytes(path, {good.begin(), good.begin() + std::ptrdiff_t(keep)});
    CHECK_THROWS_MATCHES(data::read_binary(path), Error,
                         IsError(ErrorKind::format, path + ": truncated: expected 200 bytes" + shape + ", file has " +
                                                        std::to_string(keep)));
    // sizes are checked for slices too
    CHECK_THROWS_MATCHES(data::read_binary(path, {.first_row = 0, .row_count = 1}), Error,
                         ErrorWith(ErrorKind::format, "truncated: expected 200 bytes"));
  }
  for (std::size_t keep : {std::size_t{20}, std::size_t{8}, std::size_t{3}, std::size_t{0}}) {
    write_bytes(path, {good.begin(), good.begin() + std::ptrdiff_t(keep)});
    CHECK_THROWS_MATCHES(data::read_binary(path), Error,
                         IsError(ErrorKind::format, path + ": truncated: expected at least 32 bytes (the header), file has " +
                                                        std::to_string(keep)));
  }
  auto padded = good;
  padded.push_back(0);
  write_bytes(path, padded);
  CHECK_THROWS_MATCHES(data::read_binary(path), Error,
                       IsError(ErrorKind::format, path + ": 1 trailing bytes: expected 200 bytes" + shape + ", file has 201"));

  auto huge = good;  // a corrupted row count
  huge[15] = 0x40;
  write_bytes(path, huge);
  CHECK_THROWS_MATCHES(data::read_binary(path), Error, ErrorWith(ErrorKind::format, "truncated: expected more than 2^64 bytes"));

  auto no_targets = good;
  no_targets[24] = 0;
  write_bytes(path, no_targets);
  CHECK_THROWS_MATCHES(data::read_binary(path), Error,
                       IsError(ErrorKind::format, path + ": target_dim 0 in the header, expected at least 1 (corrupted file?)"));

  const std::string csv = dir.file("data.csv");
  std::ofstream(csv) << "a,b,label\n1,2,3\n";
  CHECK_THROWS_MATCHES(data::read_binary(csv), Error,
                       IsError(ErrorKind::format, csv + ": not a tessera data file (it does not start with \"TSRDATA1\")"));
  write_bytes(csv, {'T', 'S', 'X'});
  CHECK_THROWS_MATCHES(data::read_binary(csv), Error, ErrorWith(ErrorKind::format, "not a tessera data file"));

  const std::string missing = dir.file("missing.tsrd");
  CHECK_THROWS_MATCHES(data::read_binary(missing), Error,
                       IsError(ErrorKind::io, missing + ": cannot open for reading (no such file)"));
}

TEST_CASE("write_binary never leaves a partial file under the real name", "[binary][errors]") {
  const TempDir dir;
  const std::string nowhere = dir.file("no/such/folder/d.tsrd");
  CHECK_THROWS_MATCHES(data::write_binary(sample(3, 2, 1), nowhere), Error,
                       IsError(ErrorKind::io, nowhere + ": cannot open " + nowhere + ".tmp for writing"));
  CHECK_FALSE(fs::exists(nowhere));
  // the rename onto a non-empty folder fails: the temporary file is removed, the folder untouched
  const std::string taken = dir.file("taken");
  fs::create_directories(taken + "/inside");
  CHECK_THROWS_MATCHES(data::write_binary(sample(3, 2, 1), taken), Error,
                       ErrorWith(ErrorKind::io, taken + ": cannot move the written file into place: "));
  CHECK_FALSE(fs::exists(taken + ".tmp"));
  CHECK(fs::is_directory(taken + "/inside"));
  // inconsistent data sets are refused before anything is written
  auto bad = sample(3, 2, 1);
  bad.targets.pop_back();
  const std::string p = dir.file("bad.tsrd");
  CHECK_THROWS_MATCHES(data::write_binary(bad, p), Error, ErrorWith(ErrorKind::shape, "targets (2 values) do not match its 3 rows"));
  CHECK_FALSE(fs::exists(p));
  CHECK_FALSE(fs::exists(p + ".tmp"));
}

TEST_CASE("read_raw_float32 splits headerless float32 rows into features and a label", "[binary]") {
  const TempDir dir;
  const std::string path = dir.file("raw.f32");
  const std::vector<float> v{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};  // 3 rows of 4 or 4 rows of 3
  {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(v.data()), 48);
  }
  const auto d = data::read_raw_float32(path, 4);
  CHECK(d.rows() == 3);
  CHECK(d.features.values() == std::vector<float>{1, 2, 3, 5, 6, 7, 9, 10, 11});
  CHECK(d.targets == std::vector<float>{4, 8, 12});
  CHECK(d.feature_names == std::vector<std::string>{"x0", "x1", "x2"});
  CHECK(d.target_name == "y");
  const auto e = data::read_raw_float32(path, 3, 0);
  CHECK(e.rows() == 4);
  CHECK(e.features.values() == std::vector<float>{2, 3, 5, 6, 8, 9, 11, 12});
  CHECK(e.targets == std::vector<float>{1, 4, 7, 10});
  CHECK(data::read_raw_float32(path, 6, 2).targets == std::vector<float>{3, 9});

  CHECK_THROWS_MATCHES(data::read_raw_float32(path, 5), Error,
                       IsError(ErrorKind::format, path + ": 48 bytes is not a whole, non-zero number of rows of 5 float32 "
                                                         "values (20 bytes per row)"));
  CHECK_THROWS_MATCHES(data::read_raw_float32(path, 4, 4), Error,
                       IsError(ErrorKind::invalid_argument, path + ": label column 4 is past the last column (4 columns)"));
  CHECK_THROWS_MATCHES(data::read_raw_float32(path, 4, "y"), Error,
                       IsError(ErrorKind::invalid_argument,
                               path + ": a raw float32 file has no header: give the label column \"y\" by index"));
  CHECK_THROWS_MATCHES(data::read_raw_float32(path, 1), Error,
                       ErrorWith(ErrorKind::invalid_argument, "needs at least 2 columns"));
  const std::string empty = dir.file("empty.f32");
  std::ofstream{empty};
  CHECK_THROWS_MATCHES(data::read_raw_float32(empty, 4), Error,
                       ErrorWith(ErrorKind::format, ": 0 bytes is not a whole, non-zero number of rows"));
  CHECK_THROWS_MATCHES(data::read_raw_float32(dir.file("none.f32"), 4), Error, ErrorWith(ErrorKind::io, "cannot open"));
}

TEST_CASE("a large file round-trips and slices match the rows", "[binary]") {
  const TempDir dir;
  const std::string path = dir.file("big.tsrd");
  const auto d = sample(200'000, 16, 1, 3);  // about 13.6 MB
  data::write_binary(d, path);
  const auto r = data::read_binary(path);
  CHECK(bitwise_equal(r.features.values(), d.features.data(), d.features.size()));
  CHECK(bitwise_equal(r.targets, d.targets.data(), d.targets.size()));
  const auto s = data::read_binary(path, {.first_row = 150'000, .row_count = 50'000});
  CHECK(bitwise_equal(s.features.values(), d.features.row(150'000), 50'000 * 16));
}
