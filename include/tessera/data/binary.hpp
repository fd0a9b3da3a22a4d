// tessera/data/binary.hpp - "TSRD", a raw binary format for large data sets that can also be read
// a slice of rows at a time, and a reader for headerless float32 files.
//
// Layout, all little-endian: "TSRDATA1" | u64 rows | u64 cols | u64 target_dim |
// rows x cols f32 features, row-major | rows x target_dim f32 targets | u64 FNV-1a of every byte before.
#pragma once

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include "tessera/data/csv.hpp"

namespace tessera::data {

struct BinaryReadOptions {
  std::size_t first_row = 0;
  std::size_t row_count = SIZE_MAX;  ///< SIZE_MAX: up to the last row
  bool verify_checksum = true;       ///< only when the whole file is read
};

}  // namespace tessera::data

namespace tessera::detail {

inline constexpr char tsrd_magic[9] = "TSRDATA1";
inline constexpr std::size_t tsrd_header = 32;

inline std::uint64_t tsrd_fnv1a(const void* data, std::size_t n, std::uint64_t h = 14695981039346656037ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

/// Swaps `n` words of `W` bytes between host order and little-endian; nothing on little-endian hosts.
template <std::size_t W>
inline void tsrd_le(void* data, std::size_t n) {
  if constexpr (std::endian::native == std::endian::big) {
    auto* p = static_cast<unsigned char*>(data);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < W / 2; ++j) std::swap(p[i * W + j], p[i * W + W - 1 - j]);
  } else {
    (void)data, (void)n;
  }
}

inline std::uint64_t tsrd_u64(const unsigned char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  tsrd_le<8>(&v, 1);
  return v;
}

/// a * b, or UINT64_MAX when it overflows (no file is that large).
inline std::uint64_t tsrd_mul(std::uint64_t a, std::uint64_t b) {
  return a != 0 && b > UINT64_MAX / a ? UINT64_MAX : a * b;
}
inline std::uint64_t tsrd_add(std::uint64_t a, std::uint64_t b) { return b > UINT64_MAX - a ? UINT64_MAX : a + b; }

inline void tsrd_read(std::ifstream& f, std::uint64_t at, void* to, std::size_t n, const std::string& path) {
  f.seekg(static_cast<std::streamoff>(at));
  f.read(static_cast<char*>(to), static_cast<std::streamsize>(n));
  require(static_cast<bool>(f), ErrorKind::io, path + ": read failed at byte " + std::to_string(at));
}

inline std::string tsrd_hex(std::uint64_t v) {
  char b[17] = "0000000000000000";
  auto r = std::to_chars(b, b + 16, v, 16);
  return "0x" + std::string(16 - std::size_t(r.ptr - b), '0') + std::string(b, r.ptr);
}

}  // namespace tessera::detail

namespace tessera::data {

/// Writes `d` as a TSRD file: to `path` + ".tmp", renamed to `path` at the end, so that a failure
/// never leaves a partial file under the real name. Feature names are not stored.
inline void write_binary(const Dataset& d, const std::string& path) {
  using namespace tessera::detail;
  require(d.target_dim > 0 && d.targets.size() == d.rows() * d.target_dim && d.features.size() == d.rows() * d.cols(),
          ErrorKind::shape, path + ": cannot write a data set whose targets (" + std::to_string(d.targets.size()) +
                                " values) do not match its " + std::to_string(d.rows()) + " rows x target_dim " +
                                std::to_string(d.target_dim));
  unsigned char head[tsrd_header];
  const std::uint64_t dims[3] = {d.rows(), d.cols(), d.target_dim};
  std::memcpy(head, tsrd_magic, 8);
  std::memcpy(head + 8, dims, 24);
  tsrd_le<8>(head + 8, 3);

  const std::string tmp = path + ".tmp";
  std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
  require(static_cast<bool>(f), ErrorKind::io, path + ": cannot open " + tmp + " for writing");
  std::uint64_t h = tsrd_fnv1a(head, tsrd_header);
  f.write(reinterpret_cast<const char*>(head), tsrd_header);
  std::vector<float> buf;
  for (const std::vector<float>* v : {&d.features.values(), &d.targets}) {
    for (std::size_t i = 0; i < v->size(); i += 1 << 16) {  // in chunks, converted to little-endian
      const std::size_t n = std::min<std::size_t>(1 << 16, v->size() - i);
      buf.assign(v->begin() + std::ptrdiff_t(i), v->begin() + std::ptrdiff_t(i + n));
      tsrd_le<4>(buf.data(), n);
      h = tsrd_fnv1a(buf.data(), n * 4, h);
      f.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(n * 4));
    }
  }
  tsrd_le<8>(&h, 1);
  f.write(reinterpret_cast<const char*>(&h), 8);
  f.close();
  std::error_code ec;
  if (!f) {
    std::filesystem::remove(tmp, ec);
    fail(ErrorKind::io, path + ": write failed (disk full?)");
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    const std::string why = ec.message();
    std::filesystem::remove(tmp, ec);
    fail(ErrorKind::io, path + ": cannot move the written file into place: " + why);
  }
}

/// Reads rows [first_row, first_row + row_count) of a TSRD file. The checksum is verified only
/// when the whole file is read (and verify_checksum is set): a slice reads just its own bytes,
/// so it is not checked against corruption elsewhere - but the file's size is always checked
/// against its header. Errors: ErrorKind::io (cannot open or read), ErrorKind::format (not a
/// TSRD file, truncated, trailing bytes, checksum mismatch), ErrorKind::invalid_argument (a slice
/// past the last row).
inline Dataset read_binary(const std::string& path, BinaryReadOptions options = {}) {
  using namespace tessera::detail;
  std::ifstream f;
  const std::uint64_t size = open_data_file(f, path);
  unsigned char head[tsrd_header] = {};
  const std::size_t got = static_cast<std::size_t>(std::min<std::uint64_t>(size, tsrd_header));
  tsrd_read(f, 0, head, got, path);
  require(std::memcmp(head, tsrd_magic, std::min<std::size_t>(got, 8)) == 0, ErrorKind::format,
          path + ": not a tessera data file (it does not start with \"TSRDATA1\")");
  require(size >= tsrd_header, ErrorKind::format,
          path + ": truncated: expected at least 32 bytes (the header), file has " + std::to_string(size));
  const std::uint64_t rows = tsrd_u64(head + 8), cols = tsrd_u64(head + 16), tdim = tsrd_u64(head + 24);
  require(tdim > 0, ErrorKind::format, path + ": target_dim 0 in the header, expected at least 1 (corrupted file?)");
  const std::uint64_t xbytes = tsrd_mul(tsrd_mul(rows, cols), 4), ybytes = tsrd_mul(tsrd_mul(rows, tdim), 4);
  const std::uint64_t expected = tsrd_add(tsrd_add(tsrd_header + 8, xbytes), ybytes);
  const std::string shape = " (" + std::to_string(rows) + " rows x " + std::to_string(cols) + " features, " +
                            std::to_string(tdim) + " targets per row)";
  require(size >= expected, ErrorKind::format,
          path + ": truncated: expected " + (expected == UINT64_MAX ? "more than 2^64" : std::to_string(expected)) +
              " bytes" + shape + ", file has " + std::to_string(size));
  require(size == expected, ErrorKind::format,
          path + ": " + std::to_string(size - expected) + " trailing bytes: expected " + std::to_string(expected) +
              " bytes" + shape + ", file has " + std::to_string(size));

  const std::size_t first = options.first_row;
  const std::size_t count = options.row_count == SIZE_MAX && first <= rows ? rows - first : options.row_count;
  if (first > rows || count > rows - first)
    fail(ErrorKind::invalid_argument,
         path + ": rows [" + std::to_string(first) + ", " +
             (options.row_count == SIZE_MAX ? std::string("end")
              : count > SIZE_MAX - first ? std::string("2^64") : std::to_string(first + count)) +
             ") requested, past the end: the file has " + std::to_string(rows) + " rows");
  Matrix x(count, cols);
  std::vector<float> y(count * tdim);
  tsrd_read(f, tsrd_header + first * cols * 4, x.data(), x.size() * 4, path);
  tsrd_read(f, tsrd_header + xbytes + first * tdim * 4, y.data(), y.size() * 4, path);
  if (count == rows && options.verify_checksum) {
    std::uint64_t stored = 0;
    tsrd_read(f, expected - 8, &stored, 8, path);
    tsrd_le<8>(&stored, 1);
    const std::uint64_t h = tsrd_fnv1a(y.data(), y.size() * 4, tsrd_fnv1a(x.data(), x.size() * 4, tsrd_fnv1a(head, tsrd_header)));
    require(h == stored, ErrorKind::format,
            path + ": checksum mismatch: stored " + tsrd_hex(stored) + ", computed " + tsrd_hex(h) + " (the file is corrupted)");
  }
  tsrd_le<4>(x.data(), x.size());
  tsrd_le<4>(y.data(), y.size());
  Dataset d(std::move(x), std::move(y), tdim);
  d.shard.first_row = first;
  d.shard.total_rows = rows;  // count stays 1: a slice is a data set of its own unless read as a shard
  return d;
}

/// Reads shard `index` of `count` of a TSRD file: only its own rows (shard_rows), so that each of
/// `count` processes holds about 1/count of the data. The result knows which shard it is
/// (Dataset::shard); Trainer<Reduce<MpiAllreduce>> then trains each rank on its own shard.
inline Dataset read_binary_shard(const std::string& path, std::size_t index, std::size_t count) {
  detail::require(count >= 1 && index < count, ErrorKind::invalid_argument,
                  path + ": shard " + std::to_string(index) + " of " + std::to_string(count) +
                      " requested; the index must be below the count");
  const std::size_t total = read_binary(path, {.first_row = 0, .row_count = 0}).shard.total_rows;
  const auto [lo, hi] = shard_rows(total, index, count);
  detail::require(hi > lo, ErrorKind::invalid_argument,
                  path + ": shard " + std::to_string(index) + " of " + std::to_string(count) + " would be empty: the file has only " +
                      std::to_string(total) + " rows");
  Dataset d = read_binary(path, {.first_row = lo, .row_count = hi - lo});
  d.shard = Shard{index, count, lo, total};
  return d;
}

/// Reads a headerless file of float32 rows (little-endian), `cols` values each,
/// one of which, `label`, is the target. Names are "x0".."xN" and "y".
inline Dataset read_raw_float32(const std::string& path, std::size_t cols, ColumnRef label = last_column) {
  using namespace tessera::detail;
  require(cols >= 2, ErrorKind::invalid_argument,
          path + ": read_raw_float32 needs at least 2 columns (the features and the label), got " + std::to_string(cols));
  std::size_t li = cols - 1;
  if (label.kind == ColumnRef::Kind::name)
    fail(ErrorKind::invalid_argument, path + ": a raw float32 file has no header: give the label column \"" +
                                          label.name + "\" by index");
  if (label.kind == ColumnRef::Kind::index) li = label.index;
  require(li < cols, ErrorKind::invalid_argument,
          path + ": label column " + std::to_string(li) + " is past the last column (" + std::to_string(cols) + " columns)");
  std::ifstream f;
  const std::uint64_t size = open_data_file(f, path);
  require(size > 0 && size % (cols * 4) == 0, ErrorKind::format,
          path + ": " + std::to_string(size) + " bytes is not a whole, non-zero number of rows of " + std::to_string(cols) +
              " float32 values (" + std::to_string(cols * 4) + " bytes per row)");
  const std::size_t rows = static_cast<std::size_t>(size / (cols * 4));
  Matrix x(rows, cols - 1);
  std::vector<float> y(rows), buf;
  const std::size_t chunk = std::max<std::size_t>(1, (1 << 16) / cols);
  for (std::size_t r0 = 0; r0 < rows; r0 += chunk) {
    const std::size_t n = std::min(chunk, rows - r0);
    buf.resize(n * cols);
    tsrd_read(f, r0 * cols * 4, buf.data(), buf.size() * 4, path);
    tsrd_le<4>(buf.data(), buf.size());
    for (std::size_t r = 0; r < n; ++r) {
      const float* src = buf.data() + r * cols;
      float* dst = x.row(r0 + r);
      std::copy(src, src + li, dst);
      std::copy(src + li + 1, src + cols, dst + li);
      y[r0 + r] = src[li];
    }
  }
  Dataset d(std::move(x), std::move(y), 1);
  d.feature_names = default_names(cols - 1);
  d.target_name = "y";
  return d;
}

}  // namespace tessera::data
