// tessera/train/host_memory.hpp - how much host memory this process may still take: the smaller of
// the kernel's MemAvailable (/proc/meminfo) and the room left under the memory limit of each
// cgroup this process is in (v2: memory.max - memory.current; v1: memory.limit_in_bytes -
// memory.usage_in_bytes), from its own cgroup up to the root. TESSERA_MEMORY_LIMIT replaces the
// measurement: a byte count ("12884901888", "12G", "512MiB"), or "off" for no check.
//
// These files are inputs like any other: each read is bounded, each parser takes the text so that
// tests can feed it garbage, and anything unreadable or malformed means "unknown", which means
// "do not check" - never a crash and never a refusal on a guess.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "tessera/core/checked.hpp"
#include "tessera/core/error.hpp"

namespace tessera {

/// Host memory this process may take, as measured (or set by TESSERA_MEMORY_LIMIT).
struct AvailableMemory {
  std::optional<std::uint64_t> bytes;  ///< unknown: no check
  std::string source;                  ///< where the number comes from, for messages
};

namespace detail {

/// "37.2 GiB", "512.0 MiB", "3.0 KiB", "100 bytes".
inline std::string format_bytes(std::uint64_t b) {
  const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (b < 1024) return std::to_string(b) + " bytes";
  double v = static_cast<double>(b) / 1024.0;
  std::size_t u = 0;
  while (v >= 1024.0 && u + 1 < sizeof units / sizeof *units) {
    v /= 1024.0;
    ++u;
  }
  char out[32];
  std::snprintf(out, sizeof out, "%.1f %s", v, units[u]);
  return out;
}

inline bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/// A decimal count of at most 20 digits at the start of `s` (consumed), or nullopt on no digits
/// or overflow.
inline std::optional<std::uint64_t> take_count(std::string_view& s) {
  std::size_t i = 0;
  std::uint64_t v = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    const auto digit = static_cast<std::uint64_t>(s[i] - '0');
    if (i >= 20 || v > (UINT64_MAX - digit) / 10) return std::nullopt;
    v = v * 10 + digit;
    ++i;
  }
  if (i == 0) return std::nullopt;
  s.remove_prefix(i);
  return v;
}

inline std::string_view trimmed(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

/// MemAvailable of a /proc/meminfo text, in bytes; nullopt if absent or malformed.
inline std::optional<std::uint64_t> parse_meminfo_available(std::string_view text) {
  constexpr std::string_view key = "MemAvailable:";
  std::size_t at = 0;
  while (true) {
    at = text.find(key, at);
    if (at == std::string_view::npos) return std::nullopt;
    if (at == 0 || text[at - 1] == '\n') break;
    at += key.size();
  }
  std::string_view rest = text.substr(at + key.size());
  const std::size_t eol = rest.find('\n');
  std::string_view line = eol == std::string_view::npos ? rest : rest.substr(0, eol);
  while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
  const std::optional<std::uint64_t> kib = take_count(line);
  if (!kib || trimmed(line) != "kB") return std::nullopt;
  const std::uint64_t bytes = saturating_mul(*kib, 1024);
  return bytes == UINT64_MAX ? std::nullopt : std::optional<std::uint64_t>(bytes);
}

/// A cgroup memory file (memory.max, memory.current, memory.limit_in_bytes,
/// memory.usage_in_bytes): its byte count; nullopt for "max", for v1's "no limit" (2^63 rounded
/// down to a page: anything from 2^62 up) and for anything malformed.
inline std::optional<std::uint64_t> parse_cgroup_bytes(std::string_view text) {
  std::string_view s = trimmed(text);
  const std::optional<std::uint64_t> v = take_count(s);
  if (!v || !s.empty() || *v >= (std::uint64_t{1} << 62)) return std::nullopt;
  return v;
}

/// A byte count as a person writes it: "1073741824", "512M", "512MiB", "1.5G" is refused (whole
/// numbers only); K, M, G, T are powers of 1024, with or without "iB" or "B". nullopt if malformed.
inline std::optional<std::uint64_t> parse_byte_count(std::string_view text) {
  std::string_view s = trimmed(text);
  const std::optional<std::uint64_t> v = take_count(s);
  if (!v) return std::nullopt;
  s = trimmed(s);
  std::uint64_t scale = 1;
  if (!s.empty()) {
    const char u = static_cast<char>(s.front() | 0x20);  // lower case
    const std::string_view units = "kmgt";
    const std::size_t k = units.find(u);
    if (k != std::string_view::npos) {
      scale = std::uint64_t{1} << (10 * (k + 1));
      s.remove_prefix(1);
      if (s == "iB" || s == "ib" || s == "IB") s = {};
    }
    if (s == "B" || s == "b") s = {};
    if (!s.empty()) return std::nullopt;
  }
  const std::uint64_t bytes = saturating_mul(*v, scale);
  return bytes == UINT64_MAX ? std::nullopt : std::optional<std::uint64_t>(bytes);
}

/// The path of this process's cgroup in a /proc/self/cgroup text: the "0::/path" line (v2), or
/// the line whose controllers include "memory" (v1). nullopt if absent, relative, or climbing.
inline std::optional<std::string> parse_cgroup_path(std::string_view text, bool v2) {
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    const std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    const std::size_t a = line.find(':');
    const std::size_t b = a == std::string_view::npos ? a : line.find(':', a + 1);
    if (b == std::string_view::npos) continue;
    const std::string_view id = line.substr(0, a), controllers = line.substr(a + 1, b - a - 1);
    const std::string_view path = trimmed(line.substr(b + 1));
    bool match = false;
    if (v2) {
      match = id == "0" && controllers.empty();
    } else {
      for (std::string_view c = controllers; !c.empty();) {
        const std::size_t comma = c.find(',');
        if (c.substr(0, comma) == "memory") match = true;
        c = comma == std::string_view::npos ? std::string_view{} : c.substr(comma + 1);
      }
    }
    if (!match) continue;
    if (path.empty() || path.front() != '/' || path.size() > 4096 || path.find("..") != std::string_view::npos ||
        path.find('\0') != std::string_view::npos)
      return std::nullopt;
    return std::string(path);
  }
  return std::nullopt;
}

/// The first `limit` bytes of a file (procfs and sysfs files report size 0: read, do not stat);
/// nullopt if it cannot be opened.
inline std::optional<std::string> read_small_file(const std::string& path, std::size_t limit = 64 * 1024) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return std::nullopt;
  std::string s(limit, '\0');
  const std::size_t n = std::fread(s.data(), 1, limit, f);
  std::fclose(f);
  s.resize(n);
  return s;
}

/// The least room left under the memory limits of the cgroup at `path` below the hierarchy
/// mounted at `root` and of its ancestors (the limit may be set on any of them); nullopt if no
/// level has both a limit and a usage. `limit_out`/`usage_out`: the level that leaves least.
inline std::optional<std::uint64_t> cgroup_room(const std::string& root, std::string path, const char* limit_file,
                                                const char* usage_file, std::uint64_t& limit_out,
                                                std::uint64_t& usage_out) {
  std::optional<std::uint64_t> best;
  for (int depth = 0; depth < 64; ++depth) {
    const std::string dir = root + (path == "/" ? "" : path) + "/";
    const auto limit_text = read_small_file(dir + limit_file, 256);
    const auto usage_text = read_small_file(dir + usage_file, 256);
    const std::uint64_t limit = limit_text ? parse_cgroup_bytes(*limit_text).value_or(0) : 0;  // 0: none
    const std::optional<std::uint64_t> usage = usage_text ? parse_cgroup_bytes(*usage_text) : std::nullopt;
    if (limit > 0 && usage.has_value()) {
      const std::uint64_t room = limit > usage.value() ? limit - usage.value() : 0;
      if (!best || room < *best) {
        best = room;
        limit_out = limit;
        usage_out = usage.value();
      }
    }
    if (path == "/" || path.empty()) break;
    const std::size_t slash = path.rfind('/');
    path = slash == 0 ? std::string("/") : path.substr(0, slash);
  }
  return best;
}

/// Ranks of an MPI job that share this node (Open MPI, MPICH, Slurm tell their processes), 1 if
/// unknown: they share its memory.
inline std::size_t ranks_on_this_node() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"}) {
    const char* v = std::getenv(name);
    if (!v) continue;
    std::string_view s = trimmed(v);
    const auto n = take_count(s);
    if (n && s.empty() && *n >= 1 && *n <= 1u << 20) return static_cast<std::size_t>(*n);
  }
  return 1;
}

/// The memory this process may take: TESSERA_MEMORY_LIMIT if set, else the smaller of
/// MemAvailable and the cgroup room. A malformed TESSERA_MEMORY_LIMIT is an error (it was meant).
inline AvailableMemory available_memory() {
  if (const char* env = std::getenv("TESSERA_MEMORY_LIMIT")) {
    const std::string_view s = trimmed(env);
    if (s == "off" || s == "OFF" || s == "none") return {std::nullopt, "TESSERA_MEMORY_LIMIT=off"};
    const auto bytes = parse_byte_count(s);
    require(bytes.has_value(), ErrorKind::invalid_argument,
            "TESSERA_MEMORY_LIMIT = \"" + std::string(s.substr(0, 64)) +
                "\" is not a byte count; give bytes (\"8589934592\"), a size with K, M, G or T (\"8G\"), or \"off\"");
    return {bytes, "TESSERA_MEMORY_LIMIT=" + std::string(s)};
  }
  AvailableMemory a;
  if (const auto text = read_small_file("/proc/meminfo"))
    if (const auto m = parse_meminfo_available(*text)) {
      a.bytes = *m;
      a.source = "MemAvailable " + format_bytes(*m);
    }
  const auto self = read_small_file("/proc/self/cgroup");
  std::uint64_t limit = 0, usage = 0;
  std::optional<std::uint64_t> room;
  if (read_small_file("/sys/fs/cgroup/cgroup.controllers", 4096)) {  // v2, unified
    const auto path = self ? parse_cgroup_path(*self, true) : std::nullopt;
    room = cgroup_room("/sys/fs/cgroup", path.value_or("/"), "memory.max", "memory.current", limit, usage);
  } else {
    const auto path = self ? parse_cgroup_path(*self, false) : std::nullopt;
    room = cgroup_room("/sys/fs/cgroup/memory", path.value_or("/"), "memory.limit_in_bytes", "memory.usage_in_bytes",
                       limit, usage);
  }
  if (room) {
    a.source += (a.source.empty() ? "" : "; ") + std::string("cgroup limit ") + format_bytes(limit) + ", " +
                format_bytes(usage) + " in use";
    if (!a.bytes || *room < *a.bytes) a.bytes = *room;
  }
  return a;
}

}  // namespace detail
}  // namespace tessera
