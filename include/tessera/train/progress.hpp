// tessera/train/progress.hpp - a one-line progress display for long fits, on standard error, only
// when standard error is a terminal (never in logs or pipes, unless asked for).
#pragma once

#include <chrono>
#include <cstdio>

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
  ProgressLine(Progress mode, std::size_t epochs, std::size_t steps)
      : on_(mode == Progress::always || (mode == Progress::automatic && stderr_is_terminal())),
        epochs_(epochs), steps_(steps), start_(clock::now()), last_(start_) {}

  /// Redraws at most ten times a second, and only once the fit has run for half a second.
  void step(std::size_t epoch, std::size_t step, double running_loss) {
    if (!on_) return;
    const auto now = clock::now();
    if (now - start_ < std::chrono::milliseconds(500) || now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double done = (static_cast<double>(epoch) + static_cast<double>(step + 1) / static_cast<double>(steps_)) /
                        static_cast<double>(epochs_);
    const int width = 30, filled = static_cast<int>(done * width);
    std::fprintf(stderr, "\r[%.*s%*s] %3.0f%% epoch %zu/%zu loss %.4f ", filled, "##############################",
                 width - filled, "", 100.0 * done, epoch + 1, epochs_, running_loss);
    std::fflush(stderr);
    drawn_ = true;
  }
  void epoch_end(std::size_t epoch, double loss, double samples_per_second) {
    if (!on_ || !drawn_) return;
    std::fprintf(stderr, "\r\033[Kepoch %zu/%zu loss %.5f %.0f samples/s\n", epoch + 1, epochs_, loss, samples_per_second);
    drawn_ = false;
  }

 private:
  bool on_;
  std::size_t epochs_, steps_;
  clock::time_point start_, last_;
  bool drawn_ = false;
};

}  // namespace detail
}  // namespace tessera
