// tessera/sync/sync.hpp - the shipped Sync choices: EveryStep (synchronous SGD on summed
// gradients), Periodic<K> (local SGD: each lane steps alone, replicas averaged every K steps) and
// Sharded (ZeRO-1: reduce-scatter the gradients, each lane updates its slice of the parameters
// and keeps only that slice's optimizer state, all-gather the parameters).
#pragma once

#include <cstddef>

#include "tessera/comm/concepts.hpp"
#include "tessera/sync/concepts.hpp"

namespace tessera {

/// Every step, the gradients of every lane are summed and every replica takes the same update.
/// Lanes of one process share one replica and update a slice of it each; on threads the sum and
/// the update are one pass (the communicator's reduce_apply).
struct EveryStep {
  /// Shown in messages and progress lines.
  static constexpr const char* name = "EveryStep";
  /// Each lane updates a slice of its process's replica.
  static constexpr StateScope scope = StateScope::local_slice;
  /// Gradient sums may start during the backward pass.
  static constexpr bool overlaps = true;
  /// Not periodic.
  static constexpr std::size_t period = 0;

  /// One step of lane state `s`: sums the gradients and updates.
  template <class S>
  static void step(S& s) {
    auto& c = s.comm;
    if (!s.summed) {
      if constexpr (requires { c.reduce_apply(s.grad, s.n, "", [](detail::Range, detail::GradientOf) {}); }) {
        if (c.can_reduce_apply()) {
          c.reduce_apply(s.grad, s.n, "gradients", [&](detail::Range r, auto sum) { s.update(r, sum); });
          s.losses();
          c.all_gather(s.params, s.n, "parameters");  // one shared replica: only a barrier
          return;
        }
      }
      c.all_reduce(s.grad, s.sum, s.n, "gradients");
    }
    s.losses();
    const detail::Range mine = comm::slice(s.n, c.local_size(), c.local_rank());
    s.update(mine, detail::GradientOf{s.sum + mine.lo});
    c.local_barrier("parameters");  // the replica complete before any lane reads it
  }
};

/// Local SGD: each lane trains its own replica on its share; every K steps (and at the end) the
/// replicas are averaged.
template <std::size_t K>
struct Periodic {
  static_assert(K >= 1, "tessera: Sync<Periodic<K>> needs K >= 1 (steps between parameter averaging)");
  /// Shown in messages and progress lines.
  static constexpr const char* name = "Periodic";
  /// Each lane updates its own replica.
  static constexpr StateScope scope = StateScope::replica;
  /// No overlap with the backward pass.
  static constexpr bool overlaps = false;
  /// Replicas are averaged every K steps.
  static constexpr std::size_t period = K;

  /// One step of lane state `s`: a local update, and every K steps the average of the replicas.
  template <class S>
  static void step(S& s) {
    s.update(detail::Range{0, s.n}, detail::GradientOf{s.grad});
    if (s.step % K == 0 || s.last)
      s.comm.all_reduce(s.params, s.params, s.n, "parameters (local SGD)", 1.0f / static_cast<float>(s.comm.size()));
  }
};

/// ZeRO-1: the gradients are reduce-scattered, each lane updates its global slice of the one
/// replica with the optimizer state of that slice only (1/N of it per lane), and the parameters
/// are all-gathered.
struct Sharded {
  /// Shown in messages and progress lines.
  static constexpr const char* name = "Sharded";
  /// Each lane updates its slice of the whole parameter buffer (the optimizer state is sharded).
  static constexpr StateScope scope = StateScope::global_slice;
  /// No overlap with the backward pass.
  static constexpr bool overlaps = false;
  /// Not periodic.
  static constexpr std::size_t period = 0;

  /// One step of lane state `s`: reduce-scatter, update of this lane's slice, all-gather.
  template <class S>
  static void step(S& s) {
    auto& c = s.comm;
    const detail::Range mine = s.summed ? comm::slice(s.n, c.size(), c.rank()) : c.reduce_scatter(s.grad, s.sum, s.n, "gradients");
    s.losses();
    s.update(mine, detail::GradientOf{s.sum + mine.lo});
    c.all_gather(s.params, s.n, "parameters");
  }
};

static_assert(SyncChoice<EveryStep> && SyncChoice<Periodic<4>> && SyncChoice<Sharded>);

}  // namespace tessera
