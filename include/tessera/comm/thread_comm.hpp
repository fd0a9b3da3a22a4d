// tessera/comm/thread_comm.hpp - collectives between the worker threads of one ThreadTeam, over
// buffers in shared memory. Every worker calls the same collective with its own buffer; each
// worker then handles one cache-aligned slice of the elements, reading all buffers and writing
// the result into all of them in one pass. The sum runs in worker order, so it does not depend on
// thread timing.
#pragma once

#include <cstddef>
#include <vector>

#include "tessera/detail/config.hpp"
#include "tessera/reduce/thread_team.hpp"

namespace tessera::detail {

class ThreadComm {
 public:
  explicit ThreadComm(ThreadTeam& team) : team_(team), bufs_(team.size(), nullptr) {}

  [[nodiscard]] std::size_t size() const noexcept { return team_.size(); }

  /// In place: every worker's buf[0..count) becomes scale * (sum over workers). Returns false
  /// when a worker of the team failed (the caller must return).
  bool all_reduce(std::size_t w, float* buf, std::size_t count, float scale = 1.0f) {
    bufs_[w] = buf;
    if (!team_.sync()) return false;  // every buffer registered and complete
    const Range r = share_aligned(count, size(), w);
    const std::size_t n = size();
    if (n == 2) {  // the common case, unrolled so that the loop vectorises
      float* TESSERA_RESTRICT a = bufs_[0];
      float* TESSERA_RESTRICT b = bufs_[1];
      TESSERA_SIMD
      for (std::size_t i = r.lo; i < r.hi; ++i) a[i] = b[i] = scale * (a[i] + b[i]);
    } else {
      for (std::size_t i = r.lo; i < r.hi; ++i) {
        float s = 0.0f;
        for (std::size_t k = 0; k < n; ++k) s += bufs_[k][i];
        s *= scale;
        for (std::size_t k = 0; k < n; ++k) bufs_[k][i] = s;
      }
    }
    return team_.sync();  // nobody reads or reuses a buffer before every slice is written
  }

  /// Copies worker `root`'s buffer into every worker's buffer.
  bool broadcast(std::size_t w, float* buf, std::size_t count, std::size_t root = 0) {
    bufs_[w] = buf;
    if (!team_.sync()) return false;
    const Range r = share_aligned(count, size(), w);
    for (std::size_t k = 0; k < size(); ++k)
      if (k != root)
        for (std::size_t i = r.lo; i < r.hi; ++i) bufs_[k][i] = bufs_[root][i];
    return team_.sync();
  }

 private:
  ThreadTeam& team_;
  std::vector<float*> bufs_;
};

}  // namespace tessera::detail
