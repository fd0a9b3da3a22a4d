// tessera/engine/lanes.hpp - runs one body on every lane (worker thread) of this process: lane 0
// on the calling thread, the others on threads of their own. A lane that throws calls
// `on_failure` (which wakes the lanes waiting for it: the group's abort), the others leave at
// their next wait, and the first exception reaches the caller: no hang.
#pragma once

#include <exception>
#include <mutex>
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



/// Every worker's memory report, indexed by worker (its rank in the communicator): each lane
/// gives its own through `mine(w)`, and one sum over the workers (each entry non-zero on one
/// worker: exact) gives every worker all of them. Collective across processes.
template <class Group, class Comms, class Mine>
std::vector<WorkerMemory> gather_memory(Group& group, Comms& comms, std::size_t workers, Mine&& mine) {
  const std::size_t lanes = comms.size();
  std::vector<std::vector<double>> v(lanes, std::vector<double>(4 * workers, 0.0));
  group.reset();
  run_lanes(
      lanes,
      [&](std::size_t w) {
        const WorkerMemory m = mine(w);
        double* at = v[w].data() + 4 * comms[w].rank();
        at[0] = static_cast<double>(m.parameters);
        at[1] = static_cast<double>(m.gradients);
        at[2] = static_cast<double>(m.optimizer_state);
        at[3] = static_cast<double>(m.activations);
        comms[w].all_reduce(v[w].data(), v[w].size(), "memory report");
      },
      [&] { group.abort(); });
  std::vector<WorkerMemory> out(workers);
  for (std::size_t k = 0; k < workers; ++k)
    out[k] = {static_cast<std::size_t>(v[0][4 * k]), static_cast<std::size_t>(v[0][4 * k + 1]),
              static_cast<std::size_t>(v[0][4 * k + 2]), static_cast<std::size_t>(v[0][4 * k + 3])};
  return out;
}

}  // namespace tessera::detail
