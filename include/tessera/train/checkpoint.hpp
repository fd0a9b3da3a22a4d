// tessera/train/checkpoint.hpp - the whole state of a fit, to resume it where it stopped: the
// model and its parameters, the optimizer state, the epoch and the step within it, the epoch's
// loss so far, the history, and the set-up a resumed fit must share. A fit's data order is a pure
// function of (seed, epoch, step), so nothing else is needed to go on bitwise.
//
// File layout (version 1, little-endian as written by the machine):
// "TSRCKPT1" | u32 version | u64 epoch | u64 step | u64 steps per epoch | u64 optimizer steps |
// f64 loss sum, compute s, communication s, wall s, pipeline busy s, pipeline worker s |
// u64 pipeline steps | str setup | str run | u64 samples | u64 workers | f64 total s |
// u64 records, each u64 epoch + 9 f64 (as EpochRecord) | u64 model bytes, a model file |
// u64 buffers, each u64 count + count f32 | u64 FNV-1a of every byte before it.
// str: u64 length + bytes. Reading is bounded like the model reader's: every count is checked
// against the bytes that remain before anything is allocated.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include "tessera/core/checked.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/file.hpp"
#include "tessera/core/writer.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/model/model.hpp"
#include "tessera/train/history.hpp"

namespace tessera {

/// Where a fit stands. A fit resumed from it (`Trainer::fit(model, train, checkpoint)`) goes on
/// to the same parameters and history, bitwise, as one never interrupted (docs/checkpoints.md).
struct Checkpoint {
  Model model;                               ///< the architecture and the parameters reached
  std::vector<std::vector<float>> moments;   ///< the optimizer's state, in the model's layout
  std::uint64_t optimizer_steps = 0;         ///< updates taken (Adam's bias correction)
  std::size_t epoch = 0;                     ///< epochs finished
  std::size_t step = 0;                      ///< steps finished of epoch `epoch` (0 at an epoch's start)
  /// Steps per epoch of the fit.
  std::size_t steps_per_epoch = 0;
  /// The unfinished epoch so far: its loss sum (bitwise what the rest of the epoch adds to) and times.
  ///@{
  /// The unfinished epoch so far: its loss sum (bitwise what the rest of the epoch adds to) and times.
  double loss_sum = 0.0, compute_seconds = 0.0, communication_seconds = 0.0, seconds = 0.0;
  ///@}
  ///@{
  /// Partition<Layerwise> bubble accounting.
  double busy_seconds = 0.0, worker_seconds = 0.0;  ///< Partition<Layerwise> bubble accounting
  ///@}
  /// Steps of the pipeline bubble accounting.
  std::uint64_t pipeline_steps = 0;
  History history;    ///< the epochs finished
  std::string setup;  ///< "field: value" lines a resumed fit must match (model, data, global batch, ...)
  std::string run;    ///< how the run that wrote it was set up (workers, policies), for people
};

namespace detail {

inline constexpr char checkpoint_magic[8] = {'T', 'S', 'R', 'C', 'K', 'P', 'T', '1'};
inline constexpr std::uint32_t checkpoint_format_version = 1;
inline constexpr std::uint64_t checkpoint_max_text = std::uint64_t{1} << 20;
inline constexpr std::uint64_t checkpoint_max_buffers = 16;
inline constexpr std::uint64_t checkpoint_record_bytes = 8 + 9 * 8;

/// The bytes of a checkpoint, through put(data, n).
template <class Put>
void write_checkpoint(const Checkpoint& c, Put&& put_raw) {
  std::uint64_t h = fnv1a_basis;
  const auto put = [&](const void* p, std::size_t n) {
    h = fnv1a(p, n, h);
    put_raw(p, n);
  };
  const auto u64 = [&](std::uint64_t v) { put(&v, 8); };
  const auto f64 = [&](double v) { put(&v, 8); };
  const auto str = [&](const std::string& s) {
    u64(s.size());
    put(s.data(), s.size());
  };
  put(checkpoint_magic, 8);
  put(&checkpoint_format_version, 4);
  u64(c.epoch);
  u64(c.step);
  u64(c.steps_per_epoch);
  u64(c.optimizer_steps);
  for (const double v : {c.loss_sum, c.compute_seconds, c.communication_seconds, c.seconds, c.busy_seconds,
                         c.worker_seconds})
    f64(v);
  u64(c.pipeline_steps);
  str(c.setup);
  str(c.run);
  u64(c.history.samples);
  u64(c.history.workers);
  f64(c.history.total_seconds);
  u64(c.history.epochs.size());
  for (const EpochRecord& e : c.history.epochs) {
    u64(e.epoch);
    for (const double v : {e.loss, e.learning_rate, e.seconds, e.compute_seconds, e.communication_seconds,
                           e.samples_per_second, e.validation_loss, e.validation_metric, e.bubble_fraction})
      f64(v);
  }
  std::vector<unsigned char> model;
  write_model(c.model, [&](const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    model.insert(model.end(), b, b + n);
  });
  u64(model.size());
  put(model.data(), model.size());
  u64(c.moments.size());
  for (const auto& m : c.moments) {
    u64(m.size());
    for (std::size_t i = 0; i < m.size(); i += 1 << 16) put(m.data() + i, std::min<std::size_t>(1 << 16, m.size() - i) * 4);
  }
  put_raw(&h, 8);
}

template <class Source>
Checkpoint read_checkpoint(const Source& src) {
  const std::string& path = src.name();
  {
    char head[8] = {};
    const auto got = static_cast<std::size_t>(std::min<std::uint64_t>(src.size(), 8));
    src.read(0, head, got);
    require(got == 8 && std::memcmp(head, checkpoint_magic, 8) == 0, ErrorKind::format,
            path + ": not a tessera checkpoint (it does not start with \"TSRCKPT1\")");
  }
  ModelReader<Source> r(src, fnv1a_basis, "checkpoint");
  char magic[8];
  r.bytes(magic, 8, "magic");
  const auto version = r.template get<std::uint32_t>("format version");
  require(version == checkpoint_format_version, ErrorKind::format,
          path + ": checkpoint format version " + std::to_string(version) + ", this tessera reads version " +
              std::to_string(checkpoint_format_version));
  const auto count = [&](const char* what, std::uint64_t limit) {
    const std::uint64_t at = r.position();
    const auto v = r.template get<std::uint64_t>(what);
    require(v <= limit, ErrorKind::format,
            path + ": implausible " + what + " " + std::to_string(v) + " at byte " + std::to_string(at) +
                " (the checkpoint has " + std::to_string(r.remaining()) + " bytes after it; corrupted file?)");
    return v;
  };
  const auto text = [&](const char* what) {
    const auto n = count(what, std::min(checkpoint_max_text, r.remaining()));
    std::string s(static_cast<std::size_t>(n), '\0');
    r.bytes(s.data(), s.size(), what);
    return s;
  };
  Checkpoint c;
  c.epoch = static_cast<std::size_t>(count("epoch", std::uint64_t{1} << 40));
  c.step = static_cast<std::size_t>(count("step", std::uint64_t{1} << 48));
  c.steps_per_epoch = static_cast<std::size_t>(count("steps per epoch", std::uint64_t{1} << 48));
  require(c.step < std::max<std::size_t>(c.steps_per_epoch, 1), ErrorKind::format,
          path + ": step " + std::to_string(c.step) + " of an epoch of " + std::to_string(c.steps_per_epoch) +
              " steps (corrupted file?)");
  c.optimizer_steps = r.template get<std::uint64_t>("optimizer steps");
  for (double* v : {&c.loss_sum, &c.compute_seconds, &c.communication_seconds, &c.seconds, &c.busy_seconds,
                    &c.worker_seconds})
    *v = r.template get<double>("epoch so far");
  c.pipeline_steps = r.template get<std::uint64_t>("pipeline steps");
  c.setup = text("setup length");
  c.run = text("run length");
  c.history.samples = static_cast<std::size_t>(r.template get<std::uint64_t>("samples"));
  c.history.workers = static_cast<std::size_t>(r.template get<std::uint64_t>("workers"));
  c.history.total_seconds = r.template get<double>("total seconds");
  const auto records = count("epoch record count", r.remaining() / checkpoint_record_bytes);
  require(records == c.epoch, ErrorKind::format,
          path + ": " + std::to_string(records) + " epoch records for " + std::to_string(c.epoch) +
              " finished epochs (corrupted file?)");
  c.history.epochs.resize(static_cast<std::size_t>(records));
  for (EpochRecord& e : c.history.epochs) {
    e.epoch = static_cast<std::size_t>(r.template get<std::uint64_t>("epoch record"));
    for (double* v : {&e.loss, &e.learning_rate, &e.seconds, &e.compute_seconds, &e.communication_seconds,
                      &e.samples_per_second, &e.validation_loss, &e.validation_metric, &e.bubble_fraction})
      *v = r.template get<double>("epoch record");
  }
  const auto model_bytes = count("model length", r.remaining() >= 8 ? r.remaining() - 8 : 0);
  const std::uint64_t model_at = r.position();
  c.model = read_model(SliceSource<Source>(src, model_at, model_bytes, path + " (its model)"));
  {
    // skip the model's bytes, hashing them as the writer did
    std::vector<unsigned char> chunk(static_cast<std::size_t>(std::min<std::uint64_t>(model_bytes, 1 << 16)));
    for (std::uint64_t left = model_bytes; left > 0;) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, chunk.size()));
      r.bytes(chunk.data(), n, "model");
      left -= n;
    }
  }
  const std::size_t p = c.model.parameter_count();
  const auto buffers = count("optimizer buffer count", checkpoint_max_buffers);
  for (std::uint64_t b = 0; b < buffers; ++b) {
    const std::uint64_t at = r.position();
    const auto n = r.template get<std::uint64_t>("optimizer buffer length");
    require(n == p, ErrorKind::format,
            path + ": optimizer buffer " + std::to_string(b) + " at byte " + std::to_string(at) + " holds " +
                std::to_string(n) + " values, the model has " + std::to_string(p) + " parameters (corrupted file?)");
    require(saturating_add(saturating_mul(n, 4), 8) <= r.remaining(), ErrorKind::format,
            path + ": truncated checkpoint: optimizer buffer " + std::to_string(b) + " needs " +
                std::to_string(n * 4) + " bytes from byte " + std::to_string(r.position()) + ", the file has " +
                std::to_string(src.size()));
    std::vector<float> m(static_cast<std::size_t>(n));
    r.bytes(m.data(), m.size() * 4, "optimizer buffer");
    c.moments.push_back(std::move(m));
  }
  require(r.remaining() == 8, ErrorKind::format,
          path + ": " + (r.remaining() < 8 ? "truncated" : "oversized") + " checkpoint: " +
              std::to_string(r.remaining()) + " bytes after the optimizer state at byte " +
              std::to_string(r.position()) + ", the checksum takes 8");
  const std::uint64_t computed = r.hash();
  std::uint64_t stored = 0;
  src.read(r.position(), &stored, 8);
  require(stored == computed, ErrorKind::format, path + ": checksum mismatch: the checkpoint is corrupted");
  return c;
}

}  // namespace detail

/// Writes a checkpoint to `path` atomically (a temporary file, flushed, renamed). Under
/// mpi::Environment it is collective: rank 0 writes, every rank returns once the file is in place.
inline void save_checkpoint(const Checkpoint& c, const std::string& path) {
  detail::run_file_write([&] {
    detail::AtomicFile f(path);
    detail::write_checkpoint(c, [&](const void* p, std::size_t n) { f.write(p, n); });
    f.commit();
  });
}

/// Reads a checkpoint; a damaged, truncated or foreign file is an Error naming what and where.
inline Checkpoint load_checkpoint(const std::string& path) { return detail::read_checkpoint(detail::FileSource(path)); }

/// Reads a checkpoint from bytes in memory (`name` names it in messages).
inline Checkpoint parse_checkpoint(std::span<const unsigned char> bytes, const std::string& name = "checkpoint") {
  return detail::read_checkpoint(detail::MemorySource(bytes, name));
}

/// Where a fit stands at a step boundary, as every process of the fit sees it.
struct StepPoint {
  std::size_t epoch = 0;            ///< 0-based; at an epoch's end: the next epoch, step 0
  std::size_t step = 0;             ///< steps done of that epoch
  /// Steps per epoch of the fit.
  std::size_t steps_per_epoch = 0;
  std::uint64_t global_step = 0;    ///< epoch x steps_per_epoch + step
  double seconds = 0.0;             ///< since the fit started, the same on every process
  bool stopping = false;            ///< the fit stops here (a signal): last chance to checkpoint
};

/// The checkpoint file `prefix`-<global step>.tsrckpt of step `global_step`.
inline std::string checkpoint_path(const std::string& prefix, std::uint64_t global_step) {
  std::string n = std::to_string(global_step);
  if (n.size() < 12) n.insert(0, 12 - n.size(), '0');
  return prefix + "-" + n + ".tsrckpt";
}

namespace detail {
/// The global steps of the files `prefix`-<step>.tsrckpt, ascending.
inline std::vector<std::uint64_t> checkpoint_steps(const std::string& prefix) {
  namespace fs = std::filesystem;
  const fs::path pre(prefix);
  const fs::path dir = pre.has_parent_path() ? pre.parent_path() : fs::path(".");
  const std::string stem = pre.filename().string() + "-";
  std::vector<std::uint64_t> steps;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string f = it->path().filename().string();
    if (f.size() != stem.size() + 12 + 8 || f.compare(0, stem.size(), stem) != 0 || !f.ends_with(".tsrckpt")) continue;
    std::uint64_t s = 0;
    const char* b = f.data() + stem.size();
    const auto [end_ptr, err] = std::from_chars(b, b + 12, s);
    if (err == std::errc() && end_ptr == b + 12) steps.push_back(s);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}
}  // namespace detail

/// The newest checkpoint CheckpointEvery wrote with `prefix`, or "" when there is none.
inline std::string latest_checkpoint(const std::string& prefix) {
  const auto steps = detail::checkpoint_steps(prefix);
  return steps.empty() ? std::string() : checkpoint_path(prefix, steps.back());
}

/// A callback that writes a checkpoint every `steps` steps and/or every `seconds` seconds (at the
/// first step boundary after), at a stop on a signal, and keeps the newest `keep` files
/// (`path-<global step>.tsrckpt`). Collective under MPI: every rank passes it, rank 0 writes.
class CheckpointEvery {
 public:
  /// Files `path_prefix-<global step>.tsrckpt` every `every_steps` steps and/or `every_seconds` seconds, the
  /// newest `keep_files` kept. Throws Error (ErrorKind::invalid_argument) for an empty prefix or a
  /// negative or non-finite time.
  explicit CheckpointEvery(std::string path_prefix, std::size_t every_steps = 0, double every_seconds = 0.0,
                           std::size_t keep_files = 2)
      : path(std::move(path_prefix)), steps(every_steps), seconds(every_seconds), keep(keep_files) {
    detail::require(!path.empty(), ErrorKind::invalid_argument, "CheckpointEvery: the path prefix is empty");
    detail::require(seconds >= 0.0 && std::isfinite(seconds), ErrorKind::invalid_argument,
                    "CheckpointEvery: seconds must be finite and >= 0, got " + std::to_string(seconds));
  }
  std::string path;           ///< prefix of the files
  std::size_t steps = 0;      ///< 0: not by steps
  double seconds = 0.0;       ///< 0: not by time
  std::size_t keep = 2;       ///< files kept (0: all)

  /// Steps between checkpoints (0: not by steps).
  [[nodiscard]] std::size_t step_interval() const noexcept { return steps; }
  /// Called by the fit at each step boundary: writes `take()` when due.
  void on_step_boundary(const StepPoint& p, const std::function<const Checkpoint&()>& take) {
    const bool by_steps = steps > 0 && p.global_step % steps == 0;
    const bool by_time = seconds > 0.0 && p.seconds - last_seconds_ >= seconds;
    if (!(by_steps || by_time || p.stopping) || p.global_step == last_step_) return;
    save_checkpoint(take(), checkpoint_path(path, p.global_step));
    last_step_ = p.global_step;
    last_seconds_ = p.seconds;
    written_.push_back(checkpoint_path(path, p.global_step));
    if (keep > 0 && detail::this_process_writes().load()) {
      const auto all = detail::checkpoint_steps(path);
      for (std::size_t i = 0; i + keep < all.size(); ++i) {
        std::error_code ec;
        std::filesystem::remove(checkpoint_path(path, all[i]), ec);
      }
    }
  }
  /// The files written by this callback so far, oldest first (some may have been removed).
  [[nodiscard]] const std::vector<std::string>& written() const noexcept { return written_; }

 private:
  std::uint64_t last_step_ = UINT64_MAX;
  double last_seconds_ = 0.0;
  std::vector<std::string> written_;
};

namespace detail {
inline volatile std::sig_atomic_t& stop_signal() {
  static volatile std::sig_atomic_t s = 0;
  return s;
}
extern "C" inline void tessera_stop_handler(int sig) { stop_signal() = sig; }
}  // namespace detail

/// While it lives, SIGTERM and SIGINT ask a fit it is passed to (as a callback) to stop: the fit
/// finishes the steps under way (a few milliseconds), every CheckpointEvery callback writes a
/// checkpoint, and fit returns a History with `interrupted` set. A second signal acts as the
/// default (ends the program). The previous handlers come back when it is destroyed.
class StopOnSignal {
 public:
  StopOnSignal() {
    detail::stop_signal() = 0;
    struct sigaction sa {};
    sa.sa_handler = detail::tessera_stop_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    ::sigaction(SIGTERM, &sa, &old_term_);
    ::sigaction(SIGINT, &sa, &old_int_);
  }
  ~StopOnSignal() {
    ::sigaction(SIGTERM, &old_term_, nullptr);
    ::sigaction(SIGINT, &old_int_, nullptr);
  }
  StopOnSignal(const StopOnSignal&) = delete;
  StopOnSignal& operator=(const StopOnSignal&) = delete;

  /// The signal received (SIGTERM, SIGINT), or 0.
  [[nodiscard]] int signal() const noexcept { return static_cast<int>(detail::stop_signal()); }
  /// True once SIGTERM or SIGINT arrived.
  [[nodiscard]] bool stop_requested() const noexcept { return signal() != 0; }

 private:
  struct sigaction old_term_ {}, old_int_ {};
};

namespace detail {

/// A callback for which a fit pauses between steps: it acts at step boundaries, or may ask for a
/// stop.
template <class C>
concept BoundaryCallback = requires(C& c, const StepPoint& p, const std::function<const Checkpoint&()>& take) {
  c.on_step_boundary(p, take);
} || requires(const C& c) {
  { c.stop_requested() } -> std::convertible_to<bool>;
};

/// The fewest steps any callback wants between boundaries (0: none asks).
template <class... Callbacks>
std::size_t step_interval(const Callbacks&... cbs) {
  std::size_t k = 0;
  (
      [&] {
        if constexpr (requires { { cbs.step_interval() } -> std::convertible_to<std::size_t>; }) {
          const std::size_t c = cbs.step_interval();
          if (c > 0) k = k == 0 ? c : std::min(k, c);
        }
      }(),
      ...);
  return k;
}

/// Whether a callback asks this process to stop.
template <class... Callbacks>
bool stop_wanted(const Callbacks&... cbs) {
  bool stop = false;
  (
      [&] {
        if constexpr (requires { { cbs.stop_requested() } -> std::convertible_to<bool>; }) stop = stop || cbs.stop_requested();
      }(),
      ...);
  return stop;
}

/// Where the next span of steps ends: at the next multiple of the callbacks' step interval, at
/// the epoch's end, and after about `target` seconds of steps (so that a stop or a timed
/// checkpoint waits no longer than that). The span length comes from an agreed time per step,
/// so every process cuts its epoch at the same steps.
class SpanClock {
 public:
  explicit SpanClock(std::size_t interval, double target_seconds = 0.02) : interval_(interval), target_(target_seconds) {}
  std::size_t next(std::size_t epoch, std::size_t step, std::size_t steps_per_epoch) const {
    std::size_t length = 1;
    if (per_step_ > 0.0) length = static_cast<std::size_t>(std::clamp(target_ / per_step_, 1.0, 1048576.0));
    std::size_t hi = step + std::min(length, steps_per_epoch - step);
    if (interval_ > 0) {
      const std::uint64_t g = static_cast<std::uint64_t>(epoch) * steps_per_epoch + step;
      const std::uint64_t next = (g / interval_ + 1) * interval_;
      hi = static_cast<std::size_t>(std::min<std::uint64_t>(hi, next - static_cast<std::uint64_t>(epoch) * steps_per_epoch));
    }
    return hi;
  }
  /// This process ran `steps` steps in `seconds`.
  void ran(std::size_t steps, double seconds) noexcept { local_ = steps ? seconds / static_cast<double>(steps) : 0.0; }
  [[nodiscard]] double seconds_per_step() const noexcept { return local_; }
  /// The time per step every process uses for the next span.
  void agreed(double per_step) noexcept { per_step_ = per_step; }

 private:
  std::size_t interval_;
  double target_, local_ = 0.0, per_step_ = 0.0;
};

}  // namespace detail

}  // namespace tessera
