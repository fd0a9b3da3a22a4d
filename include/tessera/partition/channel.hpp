// tessera/partition/channel.hpp - point-to-point messages between the worker threads of one
// process: a FIFO channel from one sender to one receiver, carrying float buffers tagged with a
// micro-batch number. A send never blocks; a receive blocks until a message arrives or the team
// fails, in which case it throws detail::Aborted so that the worker leaves through ThreadTeam's
// failure path (no hang). Buffers travel by move and come back to the channel for reuse, so a
// steady-state pipeline allocates nothing.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "tessera/core/error.hpp"

namespace tessera::detail {

/// Thrown out of a blocking wait when another worker failed; the first worker's error is the one
/// the caller of the fit sees.
struct Aborted : std::exception {
  [[nodiscard]] const char* what() const noexcept override { return "tessera: a worker of the team failed"; }
};

/// The team's failure flag, shared by every blocking point outside the team's barrier.
class FailureFlag {
 public:
  [[nodiscard]] bool raised() const noexcept { return raised_.load(std::memory_order_acquire); }
  void raise() noexcept { raised_.store(true, std::memory_order_release); }
  void reset() noexcept { raised_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> raised_{false};
};

struct Message {
  std::size_t tag = 0;      ///< the micro-batch
  std::size_t rows = 0;
  std::vector<float> data;  ///< rows x width values
};

class Channel {
 public:
  Channel(const FailureFlag& failed, std::string name) : failed_(&failed), name_(std::move(name)) {}
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  /// A buffer of n floats to fill and send (reused from earlier messages when possible).
  std::vector<float> buffer(std::size_t n) {
    std::vector<float> v;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        v = std::move(free_.back());
        free_.pop_back();
      }
    }
    v.resize(n);
    return v;
  }
  /// Returns a received buffer for reuse.
  void recycle(std::vector<float>&& v) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(std::move(v));
  }

  void send(Message m) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(m));
    }
    ready_.notify_one();
  }

  /// The next message; `tag` is the micro-batch the receiver expects and `count` its floats (a
  /// mismatch is a schedule error and throws). Throws Aborted when the team failed while waiting.
  Message recv(std::size_t tag, std::size_t count) {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [&] { return !queue_.empty() || failed_->raised(); });
    if (queue_.empty()) throw Aborted{};
    Message m = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    require(m.tag == tag, ErrorKind::runtime,
            name_ + ": expected micro-batch " + std::to_string(tag) + ", received " + std::to_string(m.tag));
    require(m.data.size() == count, ErrorKind::shape,
            name_ + ": micro-batch " + std::to_string(tag) + " should carry " + std::to_string(count) +
                " values, it carries " + std::to_string(m.data.size()));
    return m;
  }

  /// Wakes a receiver blocked here (call after raising the failure flag).
  void wake() {
    { std::lock_guard<std::mutex> lock(mutex_); }
    ready_.notify_all();
  }

  /// Drops queued messages (before a new step after a failure, or on reuse).
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& m : queue_) free_.push_back(std::move(m.data));
    queue_.clear();
  }

  [[nodiscard]] const std::string& name() const noexcept { return name_; }

 private:
  const FailureFlag* failed_;
  std::string name_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Message> queue_;
  std::vector<std::vector<float>> free_;
};

}  // namespace tessera::detail
