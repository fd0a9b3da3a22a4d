// tessera/sync/concepts.hpp - what a Sync<X> choice is: how the workers of a data-parallel fit
// combine after each step's gradient, written once against the communicator concept.
//
// The engine hands the choice one lane's step (SyncStep below): its gradient, a buffer for the
// sum, the replica it updates, and update(range, gradient) - the optimizer over a range of that
// replica. `scope` says which optimizer state a lane keeps: the whole replica (its own, local
// SGD), its slice of a replica the lanes of its process share (every process keeps all of it),
// or its slice of the one replica of all lanes (sharded: 1/N of the state per lane, ZeRO-1).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "tessera/core/range.hpp"
#include "tessera/optim/update.hpp"

namespace tessera {

enum class StateScope {
  replica,       ///< a replica per lane: parameters and state of its own
  local_slice,   ///< a replica per process, shared by its lanes: each updates its local slice
  global_slice,  ///< one replica over every lane: each keeps and updates only its global slice
};

namespace detail {

/// One lane's step, as the engine gives it to a Sync choice.
template <class Comm, class Update, class Losses>
struct SyncStep {
  Comm& comm;
  float* grad;          ///< this lane's gradient, n values
  float* sum;           ///< where a sum may go: shared by the lanes of a process, or grad itself
  float* params;        ///< the replica this lane updates (shared by the lanes of a process, or its own)
  std::size_t n;
  std::uint64_t step;   ///< this lane's steps so far, 1-based
  bool last;            ///< the fit's last step
  bool summed;          ///< the sum is already in `sum` (buckets summed during the backward pass)
  Update& update;       ///< update(Range r, G g): the optimizer over params[r], g(i) the gradient at r.lo + i
  Losses& losses;       ///< called once every lane's gradient is in: the step's loss over the lanes
};

/// An archetype of SyncStep, to check a choice against.
struct ArchetypeComm;
struct ArchetypeUpdate {
  template <class G>
  void operator()(Range, G) {}
};
struct ArchetypeLosses {
  void operator()() {}
};

}  // namespace detail

/// A Sync choice names itself, says where its optimizer state lives, and says whether it can sum
/// gradient buckets during the backward pass (`overlaps`) or only in its own step.
template <class C>
concept SyncChoice = requires {
  { C::name } -> std::convertible_to<const char*>;
  { C::scope } -> std::convertible_to<StateScope>;
  { C::overlaps } -> std::convertible_to<bool>;
  { C::period } -> std::convertible_to<std::size_t>;
};

}  // namespace tessera
