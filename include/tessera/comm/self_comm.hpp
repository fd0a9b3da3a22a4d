// tessera/comm/self_comm.hpp - a communicator of one worker alone (one GPU, Reduce<ThreadAllreduce>
// on Device<Cuda>): every collective is the identity, in place, on any memory.
#pragma once

#include <cstddef>
#include <vector>

#include "tessera/comm/concepts.hpp"
#include "tessera/core/error.hpp"

namespace tessera::comm {

/// The communicator of a single lane: every collective leaves its data as it is (or copies in to out),
/// every wait returns at once.
class SelfComm {
 public:
  /// Whether the lanes share one address space: they may then pass one buffer to a collective.
  static constexpr bool shared_memory = false;
  /// This lane's rank among every lane of the group, 0 to size() - 1.
  [[nodiscard]] std::size_t rank() const noexcept { return 0; }
  /// Lanes of the group, those of every process together.
  [[nodiscard]] std::size_t size() const noexcept { return 1; }
  /// This lane's rank among the lanes of its process.
  [[nodiscard]] std::size_t local_rank() const noexcept { return 0; }
  /// Lanes of this process in the group.
  [[nodiscard]] std::size_t local_size() const noexcept { return 1; }
  /// In place only: the sum of one worker's buffer is the buffer.
  void all_reduce(const float* in, float* out, std::size_t, const char* what = "", float scale = 1.0f) const {
    detail::require(in == out && scale == 1.0f, ErrorKind::invalid_argument,
                    std::string("a communicator of one worker sums in place only (") + what + ")");
  }
  /// The sum over lanes of the n doubles of `p`, in place on every lane.
  void all_reduce(double*, std::size_t, const char* = "") const {}
  /// out[r] = the sum over lanes of in[r] for this rank's slice r of the n floats (comm::slice());
  /// returns r.
  detail::Range reduce_scatter(const float* in, float* out, std::size_t n, const char* what = "") const {
    all_reduce(in, out, n, what);
    return {0, n};
  }
  /// Every lane's `p` ends whole, rank r giving slice r of the n floats.
  void all_gather(float*, std::size_t, const char* = "") const {}
  /// Lane `root`'s n floats of `p` to every lane.
  void broadcast(float*, std::size_t, std::size_t, const char* = "") const {}
  /// Nothing to start: a single lane's sum is its own values.
  void start_all_reduce(const float*, float*, std::size_t, std::size_t, const char* = "") const {}
  /// Nothing to advance.
  void progress() const {}
  /// Nothing to complete.
  void finish(const char* = "") const {}
  /// Returns at once: a single lane.
  void barrier(const char* = "") const {}
  /// Returns at once: a single lane.
  void local_barrier(const char* = "") const {}
  /// Returns at once: a single lane cannot fail another.
  void check(const char* = "") const {}
};

static_assert(Collectives<SelfComm>);

}  // namespace tessera::comm
