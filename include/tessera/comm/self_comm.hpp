// tessera/comm/self_comm.hpp - a communicator of one worker alone (one GPU, Reduce<ThreadAllreduce>
// on Device<Cuda>): every collective is the identity, in place, on any memory.
#pragma once

#include <cstddef>
#include <vector>

#include "tessera/comm/concepts.hpp"
#include "tessera/core/error.hpp"

namespace tessera::comm {

class SelfComm {
 public:
  static constexpr bool shared_memory = false;
  [[nodiscard]] std::size_t rank() const noexcept { return 0; }
  [[nodiscard]] std::size_t size() const noexcept { return 1; }
  [[nodiscard]] std::size_t local_rank() const noexcept { return 0; }
  [[nodiscard]] std::size_t local_size() const noexcept { return 1; }
  /// In place only: the sum of one worker's buffer is the buffer.
  void all_reduce(const float* in, float* out, std::size_t, const char* what = "", float scale = 1.0f) const {
    detail::require(in == out && scale == 1.0f, ErrorKind::invalid_argument,
                    std::string("a communicator of one worker sums in place only (") + what + ")");
  }
  void all_reduce(double*, std::size_t, const char* = "") const {}
  detail::Range reduce_scatter(const float* in, float* out, std::size_t n, const char* what = "") const {
    all_reduce(in, out, n, what);
    return {0, n};
  }
  void all_gather(float*, std::size_t, const char* = "") const {}
  void broadcast(float*, std::size_t, std::size_t, const char* = "") const {}
  void start_all_reduce(const float*, float*, std::size_t, std::size_t, const char* = "") const {}
  void progress() const {}
  void finish(const char* = "") const {}
  void barrier(const char* = "") const {}
  void local_barrier(const char* = "") const {}
  void check(const char* = "") const {}
};

static_assert(Collectives<SelfComm>);

}  // namespace tessera::comm
