// tessera/engine/lanes.hpp - runs one body on every lane (worker thread) of this process: lane 0
// on the calling thread, the others on threads of their own. A lane that throws calls
// `on_failure` (which wakes the lanes waiting for it: the group's abort), the others leave at
// their next wait, and the first exception reaches the caller: no hang.
#pragma once

#include <exception>
#include <mutex>
#include <type_traits>
#include <thread>
#include <utility>
#include <vector>

#include "tessera/engine/common.hpp"

namespace tessera::detail {

template <class Body, class OnFailure>
void run_lanes(std::size_t lanes, Body&& body, OnFailure&& on_failure) {
  std::mutex mutex;
  std::exception_ptr first;
  auto guarded = [&](std::size_t w) {
    try {
      body(w);
    } catch (...) {
      {
        const std::lock_guard<std::mutex> lock(mutex);
        if (!first) first = std::current_exception();
      }
      on_failure();
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(lanes > 0 ? lanes - 1 : 0);
  for (std::size_t w = 1; w < lanes; ++w) threads.emplace_back(guarded, w);
  guarded(0);
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}



/// The lanes of an engine: this process's workers, each with its handle on the group's
/// communicator (made here, on the calling thread, used on the lane's own).
template <class Group>
class Lanes {
 public:
  using Comm = std::remove_cvref_t<decltype(std::declval<Group&>().lane(std::size_t{0}))>;

  explicit Lanes(Group& g) : group_(g) {
    for (std::size_t w = 0; w < g.lanes(); ++w) comms_.push_back(g.lane(w));
    workers_ = comms_[0].size();
  }

  [[nodiscard]] std::size_t size() const noexcept { return comms_.size(); }
  /// Workers of every process: the communicator's size.
  [[nodiscard]] std::size_t workers() const noexcept { return workers_; }
  [[nodiscard]] Comm& comm(std::size_t w) noexcept { return comms_[w]; }
  [[nodiscard]] const Comm& comm(std::size_t w) const noexcept { return comms_[w]; }
  [[nodiscard]] Group& group() noexcept { return group_; }

  /// Runs body(w) on every lane; a lane that fails wakes the others (the group's abort, and
  /// `wake`), and its exception reaches the caller.
  template <class Body, class Wake>
  void run(Body&& body, Wake&& wake) {
    group_.reset();
    run_lanes(size(), body, [&] {
      group_.abort();
      wake();
    });
  }
  template <class Body>
  void run(Body&& body) {
    run(std::forward<Body>(body), [] {});
  }

  /// Every worker's memory report, indexed by worker (its rank): each lane gives its own through
  /// `mine(w)`, and one sum over the workers (each entry non-zero on one worker: exact) gives
  /// every worker all of them. Collective across processes.
  template <class Mine>
  std::vector<WorkerMemory> memory(Mine&& mine) {
    std::vector<std::vector<double>> v(size(), std::vector<double>(4 * workers_, 0.0));
    run([&](std::size_t w) {
      const WorkerMemory m = mine(w);
      double* at = v[w].data() + 4 * comms_[w].rank();
      at[0] = static_cast<double>(m.parameters);
      at[1] = static_cast<double>(m.gradients);
      at[2] = static_cast<double>(m.optimizer_state);
      at[3] = static_cast<double>(m.activations);
      comms_[w].all_reduce(v[w].data(), v[w].size(), "memory report");
    });
    std::vector<WorkerMemory> out(workers_);
    for (std::size_t k = 0; k < workers_; ++k)
      out[k] = {static_cast<std::size_t>(v[0][4 * k]), static_cast<std::size_t>(v[0][4 * k + 1]),
                static_cast<std::size_t>(v[0][4 * k + 2]), static_cast<std::size_t>(v[0][4 * k + 3])};
    return out;
  }

  /// A whole-layout buffer of n values assembled from the workers' parts: `write(w, whole)` writes
  /// lane w's (disjoint) part into `whole`. In one process on the calling thread; across processes
  /// each lane writes into a zeroed copy and one sum over the workers (exact: one non-zero term per
  /// value, host memory) gives every worker the whole. Collective.
  template <class Write>
  std::vector<float> gather(std::size_t n, Write&& write, const char* what) {
    if (group_.processes() == 1) {  // every lane's part is this process's: read where it is, no sum
      std::vector<float> whole(n, 0.0f);
      for (std::size_t w = 0; w < size(); ++w) write(w, whole.data());
      return whole;
    }
    std::vector<std::vector<float>> whole(size(), std::vector<float>(n, 0.0f));
    run([&](std::size_t w) {
      write(w, whole[w].data());
      comms_[w].all_reduce(whole[w].data(), whole[w].data(), n, what);
    });
    return whole[0];
  }

 private:
  Group& group_;
  std::vector<Comm> comms_;
  std::size_t workers_ = 1;
};

}  // namespace tessera::detail
