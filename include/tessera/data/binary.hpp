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
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "tessera/core/checked.hpp"
#include "tessera/core/file.hpp"
#include "tessera/data/csv.hpp"

namespace tessera::data {

/// Which rows read_binary() reads, and whether it verifies the file's checksum.
struct BinaryReadOptions {
  /// First row to read (0-based).
  std::size_t first_row = 0;
  std::size_t row_count = SIZE_MAX;  ///< SIZE_MAX: up to the last row
  bool verify_checksum = true;       ///< only when the whole file is read
};

}  // namespace tessera::data

namespace tessera::detail {

inline constexpr char tsrd_magic[9] = "TSRDATA1";
inline constexpr std::size_t tsrd_header = 32;
/// Features and targets per row a TSRD header may claim: above BLAS's int range no model could
/// take the rows, and a smaller limit keeps a row's byte count far from overflow.
inline constexpr std::uint64_t tsrd_max_width = std::uint64_t{1} << 31;

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

inline std::string tsrd_hex(std::uint64_t v) {
  char b[17] = "0000000000000000";
  auto r = std::to_chars(b, b + 16, v, 16);
  return "0x" + std::string(16 - std::size_t(r.ptr - b), '0') + std::string(b, r.ptr);
}

/// A TSRD header, checked against the bytes the source holds.
struct TsrdHeader {
  unsigned char bytes[tsrd_header] = {};
  std::uint64_t rows = 0, cols = 0, tdim = 0, xbytes = 0, size = 0;
};

template <class Source>
TsrdHeader tsrd_read_header(const Source& src) {
  const std::string& path = src.name();
  TsrdHeader h;
  const std::uint64_t size = src.size();
  const std::size_t got = static_cast<std::size_t>(std::min<std::uint64_t>(size, tsrd_header));
  src.read(0, h.bytes, got);
  require(std::memcmp(h.bytes, tsrd_magic, std::min<std::size_t>(got, 8)) == 0, ErrorKind::format,
          path + ": not a tessera data file (it does not start with \"TSRDATA1\")");
  require(size >= tsrd_header, ErrorKind::format,
          path + ": truncated: expected at least 32 bytes (the header), file has " + std::to_string(size));
  h.rows = tsrd_u64(h.bytes + 8), h.cols = tsrd_u64(h.bytes + 16), h.tdim = tsrd_u64(h.bytes + 24);
  require(h.tdim > 0, ErrorKind::format, path + ": target_dim 0 in the header, expected at least 1 (corrupted file?)");
  require(h.cols < tsrd_max_width && h.tdim < tsrd_max_width, ErrorKind::format,
          path + ": implausible header: " + std::to_string(h.cols) + " features and " + std::to_string(h.tdim) +
              " targets per row (the limit is 2^31 each; corrupted file?)");
  h.xbytes = saturating_mul(saturating_mul(h.rows, h.cols), 4);
  const std::uint64_t ybytes = saturating_mul(saturating_mul(h.rows, h.tdim), 4);
  const std::uint64_t expected = saturating_add(saturating_add(tsrd_header + 8, h.xbytes), ybytes);
  const std::string shape = " (" + std::to_string(h.rows) + " rows x " + std::to_string(h.cols) + " features, " +
                            std::to_string(h.tdim) + " targets per row)";
  require(size >= expected, ErrorKind::format,
          path + ": truncated: expected " + (expected == UINT64_MAX ? "more than 2^64" : std::to_string(expected)) +
              " bytes" + shape + ", file has " + std::to_string(size));
  require(size == expected, ErrorKind::format,
          path + ": " + std::to_string(size - expected) + " trailing bytes: expected " + std::to_string(expected) +
              " bytes" + shape + ", file has " + std::to_string(size));
  h.size = size;
  return h;
}

/// Rows [first_row, first_row + row_count) of a TSRD source (see data::read_binary). Nothing is
/// allocated before the header has been checked against the source's size.
template <class Source>
data::Dataset tsrd_read(const Source& src, data::BinaryReadOptions options) {
  const std::string& path = src.name();
  const TsrdHeader h = tsrd_read_header(src);
  const std::uint64_t rows = h.rows, cols = h.cols, tdim = h.tdim;
  const std::size_t first = options.first_row;
  const std::size_t count = options.row_count == SIZE_MAX && first <= rows ? rows - first : options.row_count;
  if (first > rows || count > rows - first)
    fail(ErrorKind::invalid_argument,
         path + ": rows [" + std::to_string(first) + ", " +
             (options.row_count == SIZE_MAX ? std::string("end")
              : count > SIZE_MAX - first ? std::string("2^64") : std::to_string(first + count)) +
             ") requested, past the end: the file has " + std::to_string(rows) + " rows");
  // the header's counts fit the file: every product below is at most its size
  Matrix x(count, cols);
  std::vector<float> y(count * tdim);
  src.read(tsrd_header + first * cols * 4, x.data(), x.size() * 4);
  src.read(tsrd_header + h.xbytes + first * tdim * 4, y.data(), y.size() * 4);
  if (count == rows && options.verify_checksum) {
    std::uint64_t stored = 0;
    src.read(h.size - 8, &stored, 8);
    tsrd_le<8>(&stored, 1);
    const std::uint64_t sum = fnv1a(y.data(), y.size() * 4, fnv1a(x.data(), x.size() * 4, fnv1a(h.bytes, tsrd_header)));
    require(sum == stored, ErrorKind::format,
            path + ": checksum mismatch: stored " + tsrd_hex(stored) + ", computed " + tsrd_hex(sum) + " (the file is corrupted)");
  }
  tsrd_le<4>(x.data(), x.size());
  tsrd_le<4>(y.data(), y.size());
  data::Dataset d(std::move(x), std::move(y), tdim);
  d.shard.first_row = first;
  d.shard.total_rows = rows;  // count stays 1: a slice is a data set of its own unless read as a shard
  return d;
}

/// Shard `index` of `count` of a TSRD source (see data::read_binary_shard).
template <class Source>
data::Dataset tsrd_read_shard(const Source& src, std::size_t index, std::size_t count) {
  const std::string& path = src.name();
  require(count >= 1 && index < count, ErrorKind::invalid_argument,
          path + ": shard " + std::to_string(index) + " of " + std::to_string(count) +
              " requested; the index must be below the count");
  const std::uint64_t total = tsrd_read_header(src).rows;
  const auto [lo, hi] = data::shard_rows(total, index, count);
  require(hi > lo, ErrorKind::invalid_argument,
          path + ": shard " + std::to_string(index) + " of " + std::to_string(count) + " would be empty: the file has only " +
              std::to_string(total) + " rows");
  data::Dataset d = tsrd_read(src, {.first_row = lo, .row_count = hi - lo});
  d.shard = data::Shard{index, count, lo, total};
  return d;
}

/// A headerless float32 source of `cols` values per row (see data::read_raw_float32).
template <class Source>
data::Dataset raw_float32_read(const Source& src, std::size_t cols, const data::ColumnRef& label) {
  const std::string& path = src.name();
  require(cols >= 2, ErrorKind::invalid_argument,
          path + ": read_raw_float32 needs at least 2 columns (the features and the label), got " + std::to_string(cols));
  std::size_t li = cols - 1;
  if (label.kind == data::ColumnRef::Kind::name)
    fail(ErrorKind::invalid_argument, path + ": a raw float32 file has no header: give the label column \"" +
                                          label.name + "\" by index");
  if (label.kind == data::ColumnRef::Kind::index) li = label.index;
  require(li < cols, ErrorKind::invalid_argument,
          path + ": label column " + std::to_string(li) + " is past the last column (" + std::to_string(cols) + " columns)");
  const std::uint64_t size = src.size(), row_bytes = saturating_mul(cols, 4);
  require(size > 0 && row_bytes <= size && size % row_bytes == 0, ErrorKind::format,
          path + ": " + std::to_string(size) + " bytes is not a whole, non-zero number of rows of " + std::to_string(cols) +
              " float32 values (" + (row_bytes == UINT64_MAX ? std::string("more than 2^64") : std::to_string(row_bytes)) +
              " bytes per row)");
  const std::size_t rows = static_cast<std::size_t>(size / row_bytes);
  Matrix x(rows, cols - 1);
  std::vector<float> y(rows), buf;
  const std::size_t chunk = std::max<std::size_t>(1, (1 << 16) / cols);
  for (std::size_t r0 = 0; r0 < rows; r0 += chunk) {
    const std::size_t n = std::min(chunk, rows - r0);
    buf.resize(n * cols);
    src.read(r0 * cols * 4, buf.data(), buf.size() * 4);
    tsrd_le<4>(buf.data(), buf.size());
    for (std::size_t r = 0; r < n; ++r) {
      const float* from = buf.data() + r * cols;
      float* to = x.row(r0 + r);
      std::copy(from, from + li, to);
      std::copy(from + li + 1, from + cols, to + li);
      y[r0 + r] = from[li];
    }
  }
  data::Dataset d(std::move(x), std::move(y), 1);
  d.feature_names = default_names(cols - 1);
  d.target_name = "y";
  return d;
}

}  // namespace tessera::detail

namespace tessera::data {

/// Writes `d` as a TSRD file, atomically: to `path` + ".tmp", renamed to `path` at the end, so that
/// a failure never leaves a partial file under the real name. Feature names are not stored.
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

  AtomicFile f(path);
  std::uint64_t h = fnv1a(head, tsrd_header);
  f.write(head, tsrd_header);
  std::vector<float> buf;
  for (const std::vector<float>* v : {&d.features.values(), &d.targets}) {
    for (std::size_t i = 0; i < v->size(); i += 1 << 16) {  // in chunks, converted to little-endian
      const std::size_t n = std::min<std::size_t>(1 << 16, v->size() - i);
      buf.assign(v->begin() + std::ptrdiff_t(i), v->begin() + std::ptrdiff_t(i + n));
      tsrd_le<4>(buf.data(), n);
      h = fnv1a(buf.data(), n * 4, h);
      f.write(buf.data(), n * 4);
    }
  }
  tsrd_le<8>(&h, 1);
  f.write(&h, 8);
  f.commit();
}

/// Reads rows [first_row, first_row + row_count) of a TSRD file. The checksum is verified only
/// when the whole file is read (and verify_checksum is set): a slice reads just its own bytes,
/// so it is not checked against corruption elsewhere - but the file's size is always checked
/// against its header before anything is allocated. Errors: ErrorKind::io (cannot open or read,
/// not a regular file), ErrorKind::format (not a TSRD file, truncated, trailing bytes, implausible
/// header, checksum mismatch), ErrorKind::invalid_argument (a slice past the last row).
inline Dataset read_binary(const std::string& path, BinaryReadOptions options = {}) {
  return detail::tsrd_read(detail::FileSource(path), options);
}

/// The same as read_binary, from the bytes of a TSRD file in memory; `name` starts the messages.
inline Dataset parse_binary(std::span<const unsigned char> bytes, const std::string& name, BinaryReadOptions options = {}) {
  return detail::tsrd_read(detail::MemorySource(bytes, name), options);
}

/// Reads shard `index` of `count` of a TSRD file: only its own rows (shard_rows), so that each of
/// `count` processes holds about 1/count of the data. The result knows which shard it is
/// (Dataset::shard); Trainer<Reduce<MpiAllreduce>> then trains each rank on its own shard.
inline Dataset read_binary_shard(const std::string& path, std::size_t index, std::size_t count) {
  return detail::tsrd_read_shard(detail::FileSource(path), index, count);
}

/// Reads a headerless file of float32 rows (little-endian), `cols` values each,
/// one of which, `label`, is the target. Names are "x0".."xN" and "y".
inline Dataset read_raw_float32(const std::string& path, std::size_t cols, ColumnRef label = last_column) {
  return detail::raw_float32_read(detail::FileSource(path), cols, label);
}

/// The same as read_raw_float32, from bytes in memory; `name` starts the messages.
inline Dataset parse_raw_float32(std::span<const unsigned char> bytes, const std::string& name, std::size_t cols,
                                 ColumnRef label = last_column) {
  return detail::raw_float32_read(detail::MemorySource(bytes, name), cols, label);
}

}  // namespace tessera::data
