// tessera/data/csv.hpp - numeric CSV into a Dataset: one label column, every other column a float32
// feature. Every error is an Error(ErrorKind::parse) naming file:line:column and what was expected.
#pragma once

#include <algorithm>
#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <concepts>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/checked.hpp"
#include "tessera/core/file.hpp"
#include "tessera/data/dataset.hpp"

namespace tessera::data {

/// Selects the last column (the default label column).
struct LastColumn {};
inline constexpr LastColumn last_column{};

/// A column: a 0-based index, a header name, or `last_column`.
struct ColumnRef {
  /// How the column is named.
  enum class Kind { last, index, name };
  /// Which of the three forms this is.
  Kind kind = Kind::last;
  /// 0-based column index (Kind::index).
  std::size_t index = 0;
  /// Header name (Kind::name).
  std::string name;

  /// The last column.
  ColumnRef(LastColumn) noexcept {}  // NOLINT(google-explicit-constructor): all implicit by design
  /// Column `i` (0-based). Throws Error (ErrorKind::invalid_argument) when `i` is negative.
  template <std::integral I>
    requires(!std::same_as<I, bool>)
  ColumnRef(I i) : kind(Kind::index), index(static_cast<std::size_t>(i)) {
    if constexpr (std::is_signed_v<I>)
      detail::require(i >= 0, ErrorKind::invalid_argument, "column index " + std::to_string(i) + " is negative");
  }
  /// The column whose header is `n`.
  ColumnRef(const char* n) : kind(Kind::name), name(n) {}
  /// The column whose header is `n`.
  ColumnRef(std::string n) : kind(Kind::name), name(std::move(n)) {}
};

/// How read_csv() reads a file.
struct CsvOptions {
  ColumnRef label = last_column;  ///< the target column; the others are the features
  /// Field separator.
  char delimiter = ',';
  bool header = true;             ///< first non-blank line holds column names (may be "quoted")
  bool allow_non_finite = false;  ///< accept nan / inf in features and labels
  std::size_t num_classes = 0;    ///< > 0: labels must be integers in [0, num_classes)
};

}  // namespace tessera::data

namespace tessera::detail {

inline std::vector<std::string> default_names(std::size_t n) {
  std::vector<std::string> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i].append("x").append(std::to_string(i));
  return v;
}

inline std::string csv_quoted(std::string_view s) {
  return "\"" + std::string(s.substr(0, 40)) + (s.size() > 40 ? "...\"" : "\"");
}

/// Position tracking and messages for parse_csv.
struct CsvParser {
  std::string_view text;
  const std::string& file;
  char delim;
  std::size_t pos = 0, line_no = 0, ncols = 0, first_line = 0;
  bool header = true;
  std::string_view line;

  CsvParser(std::string_view t, const std::string& f, char d, bool h) : text(t), file(f), delim(d), header(h) {}
  /// The next line into `line`; lines end with LF, CRLF or a lone CR (old Mac files), or at the
  /// end of the text. `pos` never passes the end of the text.
  bool next_line() {
    if (pos >= text.size()) return false;
    std::size_t end = text.find_first_of("\r\n", pos);
    if (end == std::string_view::npos) end = text.size();
    line = text.substr(pos, end - pos);
    pos = end;
    if (pos < text.size() && text[pos] == '\r') ++pos;
    if (pos < text.size() && text[pos] == '\n' && (pos == end || text[pos - 1] == '\r')) ++pos;
    ++line_no;
    return true;
  }
  [[nodiscard]] bool space(char c) const noexcept { return (c == ' ' || c == '\t') && c != delim; }
  [[nodiscard]] bool blank() const noexcept { return line.find_first_not_of(" \t") == line.npos; }
  [[nodiscard]] std::string where() const { return file + ":" + std::to_string(line_no); }
  [[noreturn]] void fail_line(const std::string& msg) const { fail(ErrorKind::parse, where() + ": " + msg); }
  [[noreturn]] void fail_at(const char* at, const std::string& msg) const {
    std::size_t col = 1;  // counted in UTF-8 characters
    for (const char* p = line.data(); p < at; ++p) col += (static_cast<unsigned char>(*p) & 0xC0) != 0x80;
    fail(ErrorKind::parse, where() + ":" + std::to_string(col) + ": " + msg);
  }
  /// An error in a data row; a wrong field count is reported first, as it is the likelier cause.
  [[noreturn]] void row_fail(const char* at, const std::string& msg) const {
    const std::size_t n = static_cast<std::size_t>(std::count(line.begin(), line.end(), delim)) + 1;
    if (n != ncols)
      fail_at(line.data(), "ragged row: " + std::to_string(n) + " fields, expected " + std::to_string(ncols) +
                               " (as in the " + (header ? "header" : "first row") + " at line " +
                               std::to_string(first_line) + ")");
    fail_at(at, msg);
  }

  std::vector<std::string> header_names() const {
    std::vector<std::string> names;
    const char *p = line.data(), *end = p + line.size();
    for (;;) {
      while (p < end && space(*p)) ++p;
      const char* start = p;
      std::string name;
      if (p < end && *p == '"') {
        for (++p;; ++p) {
          if (p == end) fail_at(start, "unterminated quoted name, expected a closing '\"'");
          if (*p != '"') name += *p;
          else if (p + 1 < end && p[1] == '"') name += *p++;
          else break;
        }
        for (++p; p < end && space(*p);) ++p;
        if (p < end && *p != delim)
          fail_at(p, std::string("expected '") + delim + "' or the end of the line after a quoted name");
      } else {
        p = std::find(p, end, delim);
        const char* t = p;
        while (t > start && space(t[-1])) --t;
        name.assign(start, t);
      }
      if (name.empty()) fail_at(start, "empty column name, expected a name");
      names.push_back(std::move(name));
      if (p == end) return names;
      ++p;
    }
  }

  void trim(const char*& b, const char*& e) const {
    while (b < e && space(*b)) ++b;
    while (e > b && space(e[-1])) --e;
  }
  /// The number in the trimmed field [b, e).
  float number(const char* b, const char* e, bool allow_non_finite) const {
    if (b == e) row_fail(b, "empty field, expected a number");
    const char *s = b, *t = e;
    if (*s == '"' && t - s >= 2 && t[-1] == '"') ++s, --t;
    if (s < t - 1 && *s == '+' && s[1] != '-') ++s;
    float v = 0;
    const auto r = std::from_chars(s, t, v);
    if (r.ec == std::errc::invalid_argument || r.ptr != t)
      row_fail(b, "expected a number, got " + csv_quoted({b, std::size_t(e - b)}));
    if (r.ec == std::errc::result_out_of_range) {  // below FLT_MIN rounds; above FLT_MAX fails
      double d = 0;
      if (std::from_chars(s, t, d).ec != std::errc{} || std::fabs(d) > FLT_MAX)
        row_fail(b, "number " + csv_quoted({b, std::size_t(e - b)}) + " is outside the float32 range");
      v = static_cast<float>(d);
    }
    if (!allow_non_finite && !std::isfinite(v))
      row_fail(b, std::string(std::isnan(v) ? "NaN" : v > 0 ? "infinity" : "-infinity") +
                      " is not allowed (pass allow_non_finite to accept it)");
    return v;
  }
};

}  // namespace tessera::detail

namespace tessera::data {

/// Parses CSV `text`; `name_for_messages` is the file name errors start with. Blank lines are
/// ignored; LF, CRLF or CR line ends, a UTF-8 byte-order mark, spaces around fields and a leading
/// '+' are accepted.
inline Dataset parse_csv(std::string_view text, const std::string& name_for_messages, CsvOptions options = {}) {
  const std::string& file = name_for_messages;
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  detail::CsvParser P(text, file, options.delimiter, options.header);
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos)
    detail::fail(ErrorKind::parse, file + ": empty file, expected " + (options.header ? "a header row" : "a data row"));
  while (P.next_line() && P.blank()) {}
  P.first_line = P.line_no;
  std::vector<std::string> names;
  if (options.header) names = P.header_names();
  P.ncols = options.header ? names.size()
                           : static_cast<std::size_t>(std::count(P.line.begin(), P.line.end(), P.delim)) + 1;
  const std::string what = options.header ? "the header has " : "the first row has ";
  if (P.ncols < 2)
    P.fail_line("only 1 column, expected at least 2 (the features and the label)");
  std::size_t label = P.ncols - 1;
  const ColumnRef& L = options.label;
  if (L.kind == ColumnRef::Kind::index) {
    label = L.index;
    if (label >= P.ncols)
      P.fail_line("label column " + std::to_string(label) + " is past the last column: " + what +
                  std::to_string(P.ncols) + " columns (indices 0 to " + std::to_string(P.ncols - 1) + ")");
  } else if (L.kind == ColumnRef::Kind::name) {
    if (!options.header)
      P.fail_line("label column \"" + L.name + "\" given by name, but the file is read without a header; give its index");
    const auto it = std::find(names.begin(), names.end(), L.name);
    if (it == names.end()) {
      std::string list;
      for (std::size_t i = 0; i < names.size() && i < 20; ++i) list += (i ? ", " : "") + names[i];
      if (names.size() > 20) list += ", ... (" + std::to_string(names.size()) + " in all)";
      P.fail_line("no column named \"" + L.name + "\" in the header (columns: " + list + ")");
    }
    label = static_cast<std::size_t>(it - names.begin());
    if (std::find(it + 1, names.end(), L.name) != names.end())
      P.fail_line("column name \"" + L.name + "\" appears more than once in the header");
  }

  // Room for the values the remaining text can hold, never more: each needs a character and a
  // delimiter or line end, so a header naming a million columns cannot size the buffers.
  const std::size_t rest = text.size() - P.pos, lines = static_cast<std::size_t>(
      std::count_if(text.begin() + std::ptrdiff_t(P.pos), text.end(), [](char c) { return c == '\n' || c == '\r'; })) + 1;
  std::size_t wanted = 0;
  if (detail::mul_overflows(lines, P.ncols - 1, wanted)) wanted = SIZE_MAX;
  std::vector<float> X, Y;
  X.reserve(std::min(wanted, rest / 2 + 1));
  Y.reserve(std::min(lines, rest / 2 + 1));
  const float classes = static_cast<float>(options.num_classes);
  bool pending = !options.header;  // without a header the first line is data
  while (pending || P.next_line()) {
    pending = false;
    if (P.blank()) continue;
    const char *p = P.line.data(), *end = p + P.line.size();
    std::size_t col = 0;
    for (;; ++col) {
      const void* found = std::memchr(p, P.delim, static_cast<std::size_t>(end - p));
      const char *next = found ? static_cast<const char*>(found) : end, *e = next;
      if (col >= P.ncols) P.row_fail(p, {});  // reports the field count
      P.trim(p, e);
      const float v = P.number(p, e, options.allow_non_finite);
      if (col != label) {
        X.push_back(v);
      } else {
        if (options.num_classes > 0 && !(v >= 0.0f && v < classes && v == std::floor(v)))
          P.row_fail(p, "label " + std::string(p, e) + " out of range: expected an integer class in [0, " +
                            std::to_string(options.num_classes) + ")");
        Y.push_back(v);
      }
      if (next == end) break;
      p = next + 1;
    }
    if (col + 1 != P.ncols) P.row_fail(P.line.data(), {});
  }
  if (Y.empty())
    detail::fail(ErrorKind::parse, file + ": no data rows, expected at least one after the header at line " +
                                       std::to_string(P.first_line));

  const std::size_t rows = Y.size();
  Dataset d(Matrix(rows, P.ncols - 1, std::move(X)), std::move(Y), 1);
  if (options.header) {
    d.target_name = names[label];
    names.erase(names.begin() + std::ptrdiff_t(label));
    d.feature_names = std::move(names);
  } else {
    d.feature_names = detail::default_names(P.ncols - 1);
    d.target_name = "y";
  }
  return d;
}

/// Reads the file at `path` (ErrorKind::io when it cannot be opened or is not a regular file) and
/// parses it as parse_csv does.
inline Dataset read_csv(const std::string& path, CsvOptions options = {}) {
  const detail::FileSource f(path);
  detail::require(f.size() <= SIZE_MAX / 2, ErrorKind::io, path + ": too large to read into memory");
  std::string text(static_cast<std::size_t>(f.size()), '\0');
  f.read(0, text.data(), text.size());
  return parse_csv(text, path, std::move(options));
}

/// Writes `d` as CSV that read_csv reads back: a header of the feature names and the target name,
/// then one row per sample, its target (one value per row) last. Throws Error (ErrorKind::io)
/// naming `path` when it cannot be written.
inline void write_csv(const Dataset& d, const std::string& path) {
  std::ofstream f(path);
  for (std::size_t c = 0; c < d.cols(); ++c) {
    if (c < d.feature_names.size()) f << d.feature_names[c] << ',';
    else f << 'x' << c << ',';
  }
  f << (d.target_name.empty() ? std::string("label") : d.target_name) << '\n';
  for (std::size_t r = 0; r < d.rows(); ++r) {
    for (std::size_t c = 0; c < d.cols(); ++c) f << d.features(r, c) << ',';
    f << d.targets[r] << '\n';
  }
  if (!f) throw Error(ErrorKind::io, path + ": cannot write");
}

}  // namespace tessera::data
