// tessera/train/timeline.hpp - an opt-in timeline of what every worker does, written as
// Chrome-trace JSON (the format Perfetto, ui.perfetto.dev, and chrome://tracing open).
//
// One recorder per process, off by default: a span checks one atomic flag (a relaxed load) and
// records nothing when it is off. On, each thread appends to its own buffer (found through a
// thread_local pointer, registered once under a mutex), so recording takes no lock. The trainer
// turns the recorder on for the duration of a fit with TrainerOptions::timeline set and writes
// the file at its end: one track per worker (tid = the lane), one process per rank (pid).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "tessera/core/file.hpp"

namespace tessera::detail {

/// One complete span: names are string literals (never copied).
struct TimelineEvent {
  const char* name;
  const char* category;
  std::int64_t start_ns;  ///< since the recorder was started
  std::int64_t duration_ns;
  std::uint32_t tid;  ///< the worker (lane)
  std::int32_t micro;  ///< the micro-batch, or -1
};

class Timeline {
 public:
  using clock = std::chrono::steady_clock;

  /// The process's recorder.
  static Timeline& instance() {
    static Timeline t;
    return t;
  }
  /// Whether spans record now: one relaxed load.
  [[nodiscard]] static bool on() noexcept { return enabled_.load(std::memory_order_relaxed); }

  /// Clears what was recorded and turns recording on; false (and nothing changes) when it is
  /// already on (another fit of this process records: one at a time).
  bool start() {
    std::lock_guard lock(mutex_);
    if (enabled_.load(std::memory_order_relaxed)) return false;
    buffers_.clear();
    generation_.fetch_add(1, std::memory_order_release);
    origin_ = clock::now();
    enabled_.store(true, std::memory_order_release);
    return true;
  }
  /// Turns recording off; what was recorded stays until write() or discard().
  void stop() noexcept { enabled_.store(false, std::memory_order_release); }
  /// Turns recording off and frees what was recorded.
  void discard() {
    stop();
    std::lock_guard lock(mutex_);
    buffers_.clear();
    generation_.fetch_add(1, std::memory_order_release);
  }

  [[nodiscard]] clock::time_point origin() const noexcept { return origin_; }

  /// Appends a span to the calling thread's buffer (no lock once the thread has one).
  void record(const char* name, const char* category, clock::time_point t0, clock::time_point t1, std::uint32_t tid,
              std::int32_t micro = -1) {
    Buffer* b = local();
    if (b->events.size() >= max_events_per_thread) {
      ++b->dropped;
      return;
    }
    const auto ns = [](clock::duration d) { return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(); };
    b->events.push_back({name, category, std::max<std::int64_t>(0, ns(t0 - origin_)),
                         std::max<std::int64_t>(0, ns(t1 - t0)), tid, micro});
  }

  /// Every recorded span, sorted by worker and start.
  [[nodiscard]] std::vector<TimelineEvent> events() const {
    std::lock_guard lock(mutex_);
    std::vector<TimelineEvent> all;
    for (const auto& b : buffers_) all.insert(all.end(), b->events.begin(), b->events.end());
    std::stable_sort(all.begin(), all.end(), [](const TimelineEvent& a, const TimelineEvent& b) {
      return a.tid != b.tid ? a.tid < b.tid : a.start_ns != b.start_ns ? a.start_ns < b.start_ns : a.duration_ns > b.duration_ns;
    });
    return all;
  }
  /// Spans not recorded because a thread's buffer was full.
  [[nodiscard]] std::uint64_t dropped() const {
    std::lock_guard lock(mutex_);
    std::uint64_t n = 0;
    for (const auto& b : buffers_) n += b->dropped;
    return n;
  }

  /// The file process `process` of `processes` writes: `path` itself for one process, else
  /// `<stem>.rank<N>.json` beside it (`run.json` -> `run.rank1.json`).
  [[nodiscard]] static std::string file_for(const std::string& path, std::size_t process, std::size_t processes) {
    if (processes <= 1) return path;
    const std::filesystem::path p(path);
    const std::string ext = p.has_extension() ? p.extension().string() : std::string(".json");
    return (p.parent_path() / (p.stem().string() + ".rank" + std::to_string(process) + ext)).string();
  }

  /// Writes what was recorded as Chrome-trace JSON to `path` (atomically): complete ("X") events
  /// in microseconds, tid the worker, pid `pid` (the rank), and metadata ("M") events naming the
  /// process "rank <pid>" and each thread "worker <tid>".
  void write(const std::string& path, std::size_t pid) const {
    const std::vector<TimelineEvent> all = events();
    std::string out;
    out.reserve(128 + all.size() * 120);
    out += "{\"traceEvents\":[";
    char buf[512];
    const auto us = [](std::int64_t ns, char* to, std::size_t n) {
      std::snprintf(to, n, "%lld.%03lld", static_cast<long long>(ns / 1000), static_cast<long long>(ns % 1000));
    };
    bool first = true;
    const auto sep = [&] {
      if (!first) out += ",\n";
      first = false;
    };
    sep();
    std::snprintf(buf, sizeof buf,
                  "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%zu,\"tid\":0,\"args\":{\"name\":\"rank %zu\"}},\n"
                  "{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":%zu,\"tid\":0,\"args\":{\"sort_index\":%zu}}",
                  pid, pid, pid, pid);
    out += buf;
    std::set<std::uint32_t> tids;
    for (const auto& e : all) tids.insert(e.tid);
    for (std::uint32_t t : tids) {
      sep();
      std::snprintf(buf, sizeof buf,
                    "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%zu,\"tid\":%u,\"args\":{\"name\":\"worker %u\"}},\n"
                    "{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":%zu,\"tid\":%u,\"args\":{\"sort_index\":%u}}",
                    pid, t, t, pid, t, t);
      out += buf;
    }
    for (const auto& e : all) {
      sep();
      char ts[32], dur[32];
      us(e.start_ns, ts, sizeof ts);
      us(e.duration_ns, dur, sizeof dur);
      out += "{\"name\":\"";
      escape(out, e.name);
      out += "\",\"cat\":\"";
      escape(out, e.category);
      std::snprintf(buf, sizeof buf, "\",\"ph\":\"X\",\"ts\":%s,\"dur\":%s,\"pid\":%zu,\"tid\":%u", ts, dur, pid, e.tid);
      out += buf;
      if (e.micro >= 0) {
        std::snprintf(buf, sizeof buf, ",\"args\":{\"micro\":%d}", static_cast<int>(e.micro));
        out += buf;
      }
      out += '}';
    }
    std::snprintf(buf, sizeof buf, "],\n\"displayTimeUnit\":\"ms\",\"otherData\":{\"dropped_spans\":%llu}}\n",
                  static_cast<unsigned long long>(dropped()));
    out += buf;
    AtomicFile f(path);
    f.write(out.data(), out.size());
    f.commit();
  }

  /// A thread's buffer holds at most this many spans (about 40 bytes each); later ones are
  /// counted as dropped.
  static constexpr std::size_t max_events_per_thread = std::size_t{1} << 22;

 private:
  struct Buffer {
    std::vector<TimelineEvent> events;
    std::uint64_t dropped = 0;
  };
  struct Local {
    Buffer* buffer = nullptr;
    std::uint64_t generation = 0;
  };

  Timeline() = default;

  Buffer* local() {
    static thread_local Local here;
    const std::uint64_t g = generation_.load(std::memory_order_acquire);
    if (here.buffer && here.generation == g) return here.buffer;
    std::lock_guard lock(mutex_);
    buffers_.push_back(std::make_unique<Buffer>());
    buffers_.back()->events.reserve(1024);
    here = {buffers_.back().get(), g};
    return here.buffer;
  }

  static void escape(std::string& out, const char* s) {
    for (; *s; ++s) {
      const auto c = static_cast<unsigned char>(*s);
      if (c == '"' || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
      } else if (c < 0x20) {
        char u[8];
        std::snprintf(u, sizeof u, "\\u%04x", c);
        out += u;
      } else {
        out += static_cast<char>(c);
      }
    }
  }

  static inline std::atomic<bool> enabled_{false};
  std::atomic<std::uint64_t> generation_{1};
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Buffer>> buffers_;
  clock::time_point origin_{};
};

/// The lane the calling thread works for, for spans that do not name one (set by the engines'
/// per-lane functions).
inline std::uint32_t& timeline_lane() {
  static thread_local std::uint32_t lane = 0;
  return lane;
}

/// Records [construction, destruction) as a span named `name` (a string literal) on worker
/// `lane`'s track, when the recorder is on; off, it costs one relaxed load.
class TimelineSpan {
 public:
  explicit TimelineSpan(const char* name, std::size_t lane, const char* category = "compute", int micro = -1) noexcept
      : name_(name), category_(category), lane_(static_cast<std::uint32_t>(lane)), micro_(micro) {
    if (Timeline::on()) {
      active_ = true;
      t0_ = Timeline::clock::now();
    }
  }
  /// On the lane the thread works for (timeline_lane()).
  explicit TimelineSpan(const char* name, const char* category = "compute", int micro = -1) noexcept
      : TimelineSpan(name, Timeline::on() ? timeline_lane() : 0, category, micro) {}
  ~TimelineSpan() {
    if (active_ && Timeline::on()) {
      try {
        Timeline::instance().record(name_, category_, t0_, Timeline::clock::now(), lane_, micro_);
      } catch (...) {  // out of memory: the span is lost, the training goes on
      }
    }
  }
  TimelineSpan(const TimelineSpan&) = delete;
  TimelineSpan& operator=(const TimelineSpan&) = delete;

 private:
  const char* name_;
  const char* category_;
  std::uint32_t lane_;
  std::int32_t micro_;
  bool active_ = false;
  Timeline::clock::time_point t0_{};
};

/// A fit's recording: on from construction when `path` is set (and no other fit of this process
/// records), written by write(); destroyed unwritten (an exception), what was recorded is dropped.
class TimelineFit {
 public:
  explicit TimelineFit(const std::string& path) : path_(path) {
    owner_ = !path_.empty() && Timeline::instance().start();
  }
  ~TimelineFit() {
    if (owner_) Timeline::instance().discard();
  }
  TimelineFit(const TimelineFit&) = delete;
  TimelineFit& operator=(const TimelineFit&) = delete;

  /// Stops recording and writes this process's file (Timeline::file_for).
  void write(std::size_t process, std::size_t processes) {
    if (!owner_) return;
    Timeline& t = Timeline::instance();
    t.stop();
    t.write(Timeline::file_for(path_, process, processes), process);
    t.discard();
    owner_ = false;
  }

 private:
  std::string path_;
  bool owner_ = false;
};

}  // namespace tessera::detail
