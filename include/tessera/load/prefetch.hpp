// tessera/load/prefetch.hpp - Load<Prefetch>: a background producer prepares the batches of the
// next steps while the workers train on the current one. Memory is bounded by `depth` slots; an
// exception in the producer reaches every consumer waiting for a batch, and destroying the
// prefetcher (also on an early exit) stops and joins the producer: no deadlock either way.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "tessera/core/error.hpp"

namespace tessera::detail {

template <class Batch>
class Prefetcher {
 public:
  /// produce(step, batch) fills `batch` for step `step`, for step = first .. last-1 in order;
  /// each batch is used by `consumers` readers, each of which calls release(step) when done.
  Prefetcher(std::size_t first, std::size_t last, std::size_t consumers, std::function<void(std::size_t, Batch&)> produce,
             std::size_t depth = 2)
      : first_(first), steps_(last), consumers_(consumers), depth_(depth < 1 ? 1 : depth), produce_(std::move(produce)),
        slots_(depth_), ready_(depth_, none), users_(depth_, 0) {
    producer_ = std::thread([this] { run(); });
  }
  /// Steps 0 .. steps-1.
  Prefetcher(std::size_t steps, std::size_t consumers, std::function<void(std::size_t, Batch&)> produce,
             std::size_t depth = 2)
      : Prefetcher(0, steps, consumers, std::move(produce), depth) {}
  ~Prefetcher() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
    }
    cv_.notify_all();
    producer_.join();
  }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  /// The batch of `step`, once produced; rethrows the producer's exception if it failed.
  const Batch& acquire(std::size_t step) {
    std::unique_lock<std::mutex> lock(m_);
    cv_.wait(lock, [&] { return error_ || ready_[step % depth_] == step; });
    if (ready_[step % depth_] != step) std::rethrow_exception(error_);
    return slots_[step % depth_];
  }

  /// Wakes every waiting consumer with an error and stops the producer: called when a consumer
  /// fails, so that the others cannot wait for a batch whose slot will never be freed.
  void abort() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
      if (!error_) error_ = std::make_exception_ptr(Error(ErrorKind::runtime, "Load<Prefetch>: stopped because a worker failed"));
    }
    cv_.notify_all();
  }

  /// One consumer is done with `step`'s batch; the last one frees the slot for the producer.
  void release(std::size_t step) {
    {
      std::lock_guard<std::mutex> lock(m_);
      if (++users_[step % depth_] < consumers_) return;
      users_[step % depth_] = 0;
      ready_[step % depth_] = none;
    }
    cv_.notify_all();
  }

 private:
  static constexpr std::size_t none = static_cast<std::size_t>(-1);

  void run() {
    for (std::size_t s = first_; s < steps_; ++s) {
      const std::size_t k = s % depth_;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return stop_ || ready_[k] == none; });
        if (stop_) return;
      }
      try {
        produce_(s, slots_[k]);  // the slot is free: no consumer reads it now
      } catch (...) {
        {
          std::lock_guard<std::mutex> lock(m_);
          error_ = std::current_exception();
        }
        cv_.notify_all();
        return;
      }
      {
        std::lock_guard<std::mutex> lock(m_);
        ready_[k] = s;
      }
      cv_.notify_all();
    }
  }

  std::size_t first_, steps_, consumers_, depth_;
  std::function<void(std::size_t, Batch&)> produce_;
  std::vector<Batch> slots_;
  std::vector<std::size_t> ready_;  ///< step held by each slot, or none
  std::vector<std::size_t> users_;  ///< consumers done with each slot's step
  std::mutex m_;
  std::condition_variable cv_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread producer_;
};

}  // namespace tessera::detail
