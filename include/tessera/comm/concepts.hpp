// tessera/comm/concepts.hpp - what a communicator is to tessera's engines.
//
// An engine runs one lane (a thread) per worker of this process; each lane holds a handle of the
// group's communicator and is its rank `rank()` of `size()` (every worker of every process).
// Lanes whose buffers live in one address space - worker threads of one process - are its local
// lanes (`local_rank()` of `local_size()`); `shared_memory` says whether they may pass the same
// buffer to a collective and read each other's results there.
//
// Completion model: stream order. A collective is ordered after all the work the calling lane
// enqueued on its device before the call, and before all the work it enqueues after the call
// returns. Host-blocking transports (threads, MPI) meet this by synchronising the lane's device
// (a no-op on the CPU) and completing before they return; stream-ordered ones (NCCL) enqueue on
// their own stream, ordered by events. start_all_reduce() returns at once; its buffer may not be
// touched before finish() (progress() advances host-driven transports meanwhile). So one engine
// is written once for threads, MPI and NCCL.
//
// Failure: a lane that throws calls its group's abort(); every lane waiting in the group (a
// barrier, a receive, a started sum) then throws Aborted. The group tells other processes
// through fail(), called by the trainer on the thread that drives MPI.
#pragma once

#include <concepts>
#include <cstddef>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/range.hpp"

namespace tessera {

namespace detail {
/// Thrown out of a wait when another lane of the group failed; the first lane's error is the one
/// the fit reports.
struct Aborted : std::exception {
  [[nodiscard]] const char* what() const noexcept override { return "tessera: a worker of the team failed"; }
};
}  // namespace detail

namespace comm {

/// The slice of n values that rank r of `size` owns in reduce_scatter and all_gather: contiguous,
/// in rank order, boundaries on multiples of 16 floats (64 bytes) so that lanes writing
/// neighbouring slices never share a cache line.
inline detail::Range slice(std::size_t n, std::size_t size, std::size_t r) { return detail::share_aligned(n, size, r); }

/// The collectives a data-parallel engine needs, on one lane's handle.
///   all_reduce(in, out, n, what, scale): out = scale * sum over lanes of in (in == out allowed;
///     lanes of a shared-memory group may pass one `out`, which then holds the result once)
///   all_reduce(p, n, what) on doubles: in place, every lane
///   reduce_scatter(in, out, n, what) -> Range r: out[r] = sum over lanes of in[r], r = slice of
///     this rank (out is a whole-size buffer; shared-memory lanes may share it)
///   all_gather(p, n, what): every lane's p ends whole, rank r giving slice r
///   broadcast(p, n, root, what): root's p to every lane
///   start_all_reduce(in, out, lo, hi, what), progress(), finish(): sums of ranges started while
///     the backward pass goes on, complete at finish()
///   barrier(what), check(what) (throws when the group failed)
template <class C>
concept Collectives = requires(C& c, const C& cc, float* f, const float* cf, double* d, std::size_t n, const char* what) {
  { cc.rank() } -> std::convertible_to<std::size_t>;
  { cc.size() } -> std::convertible_to<std::size_t>;
  { cc.local_rank() } -> std::convertible_to<std::size_t>;
  { cc.local_size() } -> std::convertible_to<std::size_t>;
  { C::shared_memory } -> std::convertible_to<bool>;
  c.all_reduce(cf, f, n, what, 1.0f);
  c.all_reduce(d, n, what);
  { c.reduce_scatter(cf, f, n, what) } -> std::same_as<detail::Range>;
  c.all_gather(f, n, what);
  c.broadcast(f, n, n, what);
  c.start_all_reduce(cf, f, n, n, what);
  c.progress();
  c.finish(what);
  c.barrier(what);
  c.check(what);
};

/// Messages between two lanes, for pipelines: send never blocks (the buffer travels by move),
/// recv blocks until the message of `tag` from `peer` arrives (or the group failed); buffers come
/// back through recycle() so a steady state allocates nothing.
template <class C>
concept PointToPoint = requires(C& c, std::vector<float> v, std::size_t n, int tag, const char* what) {
  { c.buffer(n) } -> std::same_as<std::vector<float>>;
  c.send(n, tag, std::move(v), what);
  { c.recv(n, tag, n, what) } -> std::same_as<std::vector<float>>;
  c.recycle(std::move(v));
};

/// Sub-groups: every lane calls split with a color and a key; lanes of one color form a group,
/// ranked by key (a pipeline's stages, the replicas of one stage).
template <class C>
concept Splittable = requires(C& c, std::size_t color, std::size_t key) {
  { c.split(color, key) } -> std::same_as<C>;
};

/// A communicator every engine can use.
template <class C>
concept Communicator = Collectives<C> && PointToPoint<C> && Splittable<C>;

/// What a Reduce<X> choice makes for a fit: the lanes of this process and their communicator.
///   lanes(), lane(w): the handle lane w uses (made on the calling thread, used on lane w's)
///   processes(), process(): the processes training together and this one's index
///   device(w): the device lane w drives (GPU index; 0 on the CPU)
///   agree(what, value): every process passes the same value, or every one throws naming the
///     fields that differ (main thread, before the lanes start)
///   broadcast(p, n): process 0's p to every process (main thread)
///   sum(p, n, what): doubles summed over processes (main thread)
///   abort(): wakes every lane of this process waiting in the group (any thread)
///   reset(): before the lanes of a new run start
///   fail(message): this process stops; the other processes are told (main thread)
template <class G>
concept Group = requires(G& g, const G& cg, std::size_t w, float* f, double* d, std::size_t n, const std::string& s) {
  { cg.lanes() } -> std::convertible_to<std::size_t>;
  g.lane(w);
  { cg.processes() } -> std::convertible_to<std::size_t>;
  { cg.process() } -> std::convertible_to<std::size_t>;
  { cg.device(w) } -> std::convertible_to<int>;
  g.agree(s, s);
  g.broadcast(f, n);
  g.sum(d, n, "what");
  g.abort();
  g.reset();
  g.fail(s);
};

}  // namespace comm
}  // namespace tessera
