// tessera/reduce/thread_team.hpp - N worker threads in one process that run one body in phases
// separated by a barrier. A worker that throws drops out of the barrier and raises a flag, so the
// others leave at their next phase boundary: no hang, and the first exception reaches the caller.
#pragma once

#include <atomic>
#include <barrier>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace tessera::detail {

class ThreadTeam {
 public:
  explicit ThreadTeam(std::size_t workers) : n_(workers < 1 ? 1 : workers) {}

  [[nodiscard]] std::size_t size() const noexcept { return n_; }

  /// Ends a phase: waits for every worker. Returns false when a worker failed, in which case the
  /// caller must return from the body at once.
  bool sync() {
    barrier_->arrive_and_wait();
    return !failed_.load(std::memory_order_acquire);
  }

  /// True once a worker of the current run failed.
  [[nodiscard]] bool failed() const noexcept { return failed_.load(std::memory_order_acquire); }

  /// Runs body(worker) on every worker (worker 0 on the calling thread); rethrows the first
  /// exception any worker raised. `on_failure` runs once per failing worker, after the flag is
  /// raised: it wakes workers blocked outside the barrier (in a batch queue, say).
  template <class Body, class OnFailure>
  void run(Body&& body, OnFailure&& on_failure) {
    barrier_ = std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(n_));
    failed_.store(false);
    error_ = nullptr;
    auto guarded = [&](std::size_t w) {
      try {
        body(w);
      } catch (...) {
        {
          std::lock_guard<std::mutex> lock(mutex_);
          if (!error_) error_ = std::current_exception();
        }
        failed_.store(true, std::memory_order_release);
        on_failure();
        barrier_->arrive_and_drop();
      }
    };
    std::vector<std::thread> threads;
    threads.reserve(n_ - 1);
    for (std::size_t w = 1; w < n_; ++w) threads.emplace_back(guarded, w);
    guarded(0);
    for (auto& t : threads) t.join();
    if (error_) std::rethrow_exception(error_);
  }
  template <class Body>
  void run(Body&& body) {
    run(std::forward<Body>(body), [] {});
  }

 private:
  std::size_t n_;
  std::unique_ptr<std::barrier<>> barrier_;
  std::atomic<bool> failed_{false};
  std::mutex mutex_;
  std::exception_ptr error_;
};

/// [lo, hi) of worker w when n items are cut into `parts` contiguous pieces, the remainder spread
/// one by one over the first pieces.
struct Range {
  std::size_t lo, hi;
};
inline Range share(std::size_t n, std::size_t parts, std::size_t w) {
  const std::size_t q = n / parts, r = n % parts;
  const std::size_t lo = w * q + (w < r ? w : r);
  return {lo, lo + q + (w < r ? 1 : 0)};
}

/// Like share(), but with piece boundaries on multiples of `align` elements (64 bytes of floats by
/// default), so that workers writing neighbouring pieces never share a cache line.
inline Range share_aligned(std::size_t n, std::size_t parts, std::size_t w, std::size_t align = 16) {
  const std::size_t blocks = (n + align - 1) / align;
  const Range b = share(blocks, parts, w);
  const std::size_t lo = b.lo * align, hi = b.hi * align;
  return {lo < n ? lo : n, hi < n ? hi : n};
}

}  // namespace tessera::detail
