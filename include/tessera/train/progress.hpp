// tessera/train/progress.hpp - a one-line progress display for long fits, on standard error, only
// when standard error is a terminal (never in logs or pipes, unless asked for).
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace tessera {

enum class Progress { automatic, always, never };

namespace detail {

inline bool stderr_is_terminal() {
#if defined(__unix__) || defined(__APPLE__)
  return isatty(2) != 0;
#else
  return false;
#endif
}

class ProgressLine {
 public:
  using clock = std::chrono::steady_clock;
  /// `samples` per epoch; `done_steps`: steps already trained (a resumed fit), not in the rate.
  ProgressLine(Progress mode, std::size_t epochs, std::size_t steps, std::size_t samples = 0, double done_steps = 0.0)
      : on_(mode == Progress::always || (mode == Progress::automatic && stderr_is_terminal())),
        epochs_(epochs), steps_(steps), samples_(samples), done0_(done_steps), start_(clock::now()), last_(start_) {}

  /// Redraws at most ten times a second, and only once the fit has run for half a second: the
  /// share done, the epoch, the running loss, samples/s since the start and the time left.
  void step(std::size_t epoch, std::size_t step, double running_loss) {
    if (!on_) return;
    const auto now = clock::now();
    if (now - start_ < std::chrono::milliseconds(500) || now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double total = static_cast<double>(epochs_) * static_cast<double>(steps_);
    const double steps_done = static_cast<double>(epoch) * static_cast<double>(steps_) + static_cast<double>(step + 1);
    const double done = steps_done / total;
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const double rate = (steps_done - done0_) / seconds;  // steps per second in this fit
    const double per_step = static_cast<double>(samples_) / static_cast<double>(steps_);
    const int width = 30, filled = static_cast<int>(done * width);
    std::fprintf(stderr, "\r[%.*s%*s] %3.0f%% epoch %zu/%zu loss %.4f", filled, "##############################",
                 width - filled, "", 100.0 * done, epoch + 1, epochs_, running_loss);
    if (rate > 0.0) {
      if (samples_) std::fprintf(stderr, " %.0f samples/s", rate * per_step);
      const double left = (total - steps_done) / rate;
      std::fprintf(stderr, " ETA %s", clock_text(left).c_str());
    }
    std::fprintf(stderr, " \033[K");
    std::fflush(stderr);
    drawn_ = true;
  }
  void epoch_end(std::size_t epoch, double loss, double samples_per_second) {
    if (!on_ || !drawn_) return;
    std::fprintf(stderr, "\r\033[Kepoch %zu/%zu loss %.5f %.0f samples/s\n", epoch + 1, epochs_, loss, samples_per_second);
    drawn_ = false;
  }
  /// "42s", "3m07s", "2h05m".
  static std::string clock_text(double seconds) {
    char b[32];
    const auto s = static_cast<long long>(seconds + 0.5);
    if (s < 60) std::snprintf(b, sizeof b, "%llds", s);
    else if (s < 3600) std::snprintf(b, sizeof b, "%lldm%02llds", s / 60, s % 60);
    else std::snprintf(b, sizeof b, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
    return b;
  }

 private:
  bool on_;
  std::size_t epochs_, steps_, samples_;
  double done0_;
  clock::time_point start_, last_;
  bool drawn_ = false;
};

}  // namespace detail
}  // namespace tessera
