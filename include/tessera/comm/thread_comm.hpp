// tessera/comm/thread_comm.hpp - the communicator of the worker threads of one process
// (Reduce<ThreadAllreduce>): collectives over buffers in shared memory, messages between threads,
// sub-groups.
//
// Every lane calls the same collective with its own buffers; each lane then handles one
// cache-aligned slice of the elements, reading every lane's buffer and writing the result in one
// pass. Sums run in lane order, so they do not depend on thread timing. Lanes may pass one shared
// output buffer (the result is then written once) and one shared parameter buffer to all_gather
// (which is then only a barrier): a replica's parameters and optimizer state exist once per
// process. Waits spin briefly, then sleep on a futex; a lane that fails aborts the group and every
// waiting lane throws Aborted.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include "tessera/comm/concepts.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/range.hpp"
#include "tessera/detail/config.hpp"
#include "tessera/detail/gradient_view.hpp"

namespace tessera::comm {

namespace detail_thread {

inline void pause() noexcept {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

/// How long a waiting lane spins before it sleeps: some microseconds while every lane of the
/// process has a core of its own, almost not at all when there are more lanes than cores (a
/// spinning lane would then take the core of the lane it waits for).
inline int spins_for(std::size_t lanes) noexcept {
  const unsigned cores = std::thread::hardware_concurrency();
  return cores == 0 || lanes <= cores ? 4000 : 16;
}

/// A barrier of n lanes that spins for a while (spins_for), then sleeps on a futex, and that an
/// abort releases (wait() then returns false).
class Barrier {
 public:
  Barrier(std::size_t n, const std::atomic<bool>& aborted, int spins) : n_(n), spins_(spins), aborted_(&aborted) {}
  [[nodiscard]] bool wait() {
    if (n_ == 1) return !aborted_->load(std::memory_order_acquire);
    const std::uint32_t g = generation_.load(std::memory_order_acquire);
    if (aborted_->load(std::memory_order_acquire)) return false;
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      count_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
      generation_.notify_all();
    } else {
      for (int spin = 0; spin < spins_ && generation_.load(std::memory_order_acquire) == g; ++spin) pause();
      while (generation_.load(std::memory_order_acquire) == g && !aborted_->load(std::memory_order_acquire))
        generation_.wait(g, std::memory_order_acquire);
    }
    return !aborted_->load(std::memory_order_acquire);
  }
  /// After the abort flag is raised: releases every waiting lane.
  void release() noexcept {
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
  }
  void reset() noexcept { count_.store(0); }

 private:
  std::size_t n_;
  int spins_;
  const std::atomic<bool>* aborted_;
  std::atomic<std::size_t> count_{0};
  std::atomic<std::uint32_t> generation_{0};
};

/// The buffers the lanes registered for one collective.
struct Registry {
  explicit Registry(std::size_t n) : in(n), out(n), doubles(n) {}
  std::vector<const float*> in;
  std::vector<float*> out;
  std::vector<double*> doubles;
};

/// What the lanes of one (sub-)group share: the barrier and the buffers registered for the
/// collective under way. Registries alternate between two: a lane that leaves a collective early
/// (one that ends without a barrier) may register for the next while a slower lane still reads
/// this one's, but cannot get further before every lane has arrived there.
struct Shared {
  Shared(std::vector<std::size_t> members, const std::atomic<bool>& aborted, int spins)
      : lanes(std::move(members)), barrier(lanes.size(), aborted, spins), registry{Registry(lanes.size()), Registry(lanes.size())},
        rounds(lanes.size(), 0), split_color(lanes.size()), split_key(lanes.size()) {}
  std::vector<std::size_t> lanes;  ///< the group lane of each rank
  Barrier barrier;
  Registry registry[2];
  std::vector<std::size_t> rounds;  ///< collectives each rank has entered
  std::vector<double> double_sum;  ///< written by rank 0, read by every lane until the next collective
  std::vector<std::size_t> split_color, split_key;
  std::map<std::size_t, Shared*> split_made;  ///< color -> sub-group, during a split
  /// After a failure, before the next run: every lane starts again at the same collective.
  void reset() {
    barrier.reset();
    std::fill(rounds.begin(), rounds.end(), 0);
  }
};

struct Message {
  std::size_t from = 0;
  int tag = 0;
  std::vector<float> data;
};

/// A lane's incoming messages.
struct Mailbox {
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<Message> queue;
};

}  // namespace detail_thread

class ThreadComm;

/// The worker threads of one process. Made once per fit; lane(w) is thread w's handle.
class ThreadGroup {
 public:
  /// A group of `lanes` threads (at least 1).
  explicit ThreadGroup(std::size_t lanes) : n_(lanes < 1 ? 1 : lanes), boxes_(n_) {
    std::vector<std::size_t> all(n_);
    for (std::size_t w = 0; w < n_; ++w) all[w] = w;
    root_ = std::make_unique<detail_thread::Shared>(std::move(all), aborted_, detail_thread::spins_for(n_));
    for (auto& b : boxes_) b = std::make_unique<detail_thread::Mailbox>();
  }
  ThreadGroup(const ThreadGroup&) = delete;
  ThreadGroup& operator=(const ThreadGroup&) = delete;

  /// Lanes (worker threads) of this process.
  [[nodiscard]] std::size_t lanes() const noexcept { return n_; }
  /// The handle lane `w` uses (made on the calling thread, used on lane w's).
  [[nodiscard]] ThreadComm lane(std::size_t w);

  /// Wakes every lane waiting in the group (or in a sub-group); they throw Aborted.
  void abort() noexcept {
    aborted_.store(true, std::memory_order_release);
    root_->barrier.release();
    {
      const std::lock_guard<std::mutex> lock(subs_mutex_);
      for (auto& s : subs_) s->barrier.release();
    }
    for (auto& b : boxes_) {
      { const std::lock_guard<std::mutex> lock(b->mutex); }
      b->ready.notify_all();
    }
  }
  /// True once a lane called abort().
  [[nodiscard]] bool aborted() const noexcept { return aborted_.load(std::memory_order_acquire); }
  /// Before the lanes of a new run start: no abort, no stale message.
  void reset() {
    aborted_.store(false);
    root_->reset();
    const std::lock_guard<std::mutex> lock(subs_mutex_);
    for (auto& s : subs_) s->reset();
    for (auto& b : boxes_) {
      const std::lock_guard<std::mutex> l(b->mutex);
      for (auto& m : b->queue) recycle(std::move(m.data));
      b->queue.clear();
    }
  }

 private:
  friend class ThreadComm;
  detail_thread::Shared* make_sub(std::vector<std::size_t> members) {
    auto s = std::make_unique<detail_thread::Shared>(std::move(members), aborted_, detail_thread::spins_for(n_));
    const std::lock_guard<std::mutex> lock(subs_mutex_);
    subs_.push_back(std::move(s));
    return subs_.back().get();
  }
  std::vector<float> take_buffer(std::size_t n) {
    std::vector<float> v;
    {
      const std::lock_guard<std::mutex> lock(free_mutex_);
      if (!free_.empty()) {
        v = std::move(free_.back());
        free_.pop_back();
      }
    }
    v.resize(n);
    return v;
  }
  void recycle(std::vector<float>&& v) {
    const std::lock_guard<std::mutex> lock(free_mutex_);
    free_.push_back(std::move(v));
  }

  std::size_t n_;
  std::atomic<bool> aborted_{false};
  std::unique_ptr<detail_thread::Shared> root_;
  std::mutex subs_mutex_;
  std::vector<std::unique_ptr<detail_thread::Shared>> subs_;
  std::vector<std::unique_ptr<detail_thread::Mailbox>> boxes_;
  std::mutex free_mutex_;
  std::vector<std::vector<float>> free_;
};

/// One lane's handle on a ThreadGroup (or on a sub-group made by split).
class ThreadComm {
 public:
  /// Whether the lanes share one address space: they may then pass one buffer to a collective.
  static constexpr bool shared_memory = true;

  /// Lane `rank` of `g`; made by ThreadGroup::lane().
  ThreadComm(ThreadGroup& g, detail_thread::Shared& s, std::size_t rank) : g_(&g), s_(&s), rank_(rank) {}

  /// This lane's rank among every lane of the group, 0 to size() - 1.
  [[nodiscard]] std::size_t rank() const noexcept { return rank_; }
  /// Lanes of the group, those of every process together.
  [[nodiscard]] std::size_t size() const noexcept { return s_->lanes.size(); }
  /// This lane's rank among the lanes of its process.
  [[nodiscard]] std::size_t local_rank() const noexcept { return rank_; }
  /// Lanes of this process in the group.
  [[nodiscard]] std::size_t local_size() const noexcept { return size(); }
  /// The lane of the whole ThreadGroup this handle belongs to.
  [[nodiscard]] std::size_t group_lane() const noexcept { return s_->lanes[rank_]; }

  /// Returns once every lane of the group has called it (`what` names the wait in messages); throws when
  /// the group failed.
  void barrier(const char* = "barrier") { sync(); }
  /// Returns once every lane of this process has called it.
  void local_barrier(const char* = "barrier") { sync(); }
  /// Throws when the group failed; returns at once otherwise.
  void check(const char* = "") const {
    if (g_->aborted()) throw detail::Aborted{};
  }

  /// out = scale * (sum over lanes of in), in lane order; each lane computes its slice.
  void all_reduce(const float* in, float* out, std::size_t n, const char* = "", float scale = 1.0f) {
    if (size() == 1) {
      if (in != out) std::copy(in, in + n, out);
      if (scale != 1.0f) for (std::size_t i = 0; i < n; ++i) out[i] *= scale;
      return;
    }
    sum_slice(enter(in, out), n, scale, /*every_out=*/true);
    sync();
  }
  /// In place over doubles (losses, flags): every lane ends with the same sum, in lane order.
  void all_reduce(double* p, std::size_t n, const char* what = "") {
    all_reduce(p, n, what, [](double*, std::size_t) {});
  }
  /// The same, with `between(sum, n)` run by rank 0 on the sum before the lanes read it (a
  /// two-level communicator sums across processes there).
  template <class Between>
  void all_reduce(double* p, std::size_t n, const char*, Between&& between) {
    if (size() == 1) {
      between(p, n);
      return;
    }
    detail_thread::Registry& reg = next_registry();
    reg.doubles[rank_] = p;
    sync();
    if (rank_ == 0) {
      s_->double_sum.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        double v = reg.doubles[0][i];
        for (std::size_t k = 1; k < size(); ++k) v += reg.doubles[k][i];
        s_->double_sum[i] = v;
      }
      between(s_->double_sum.data(), n);
    }
    sync();
    std::copy(s_->double_sum.begin(), s_->double_sum.begin() + static_cast<std::ptrdiff_t>(n), p);
  }
  /// out[slice] = sum over lanes of in[slice], for this lane's slice; returns the slice.
  detail::Range reduce_scatter(const float* in, float* out, std::size_t n, const char* = "") {
    const detail::Range r = slice(n, size(), rank_);
    if (size() == 1) {
      if (in != out) std::copy(in, in + n, out);
      return r;
    }
    sum_slice(enter(in, out), n, 1.0f, /*every_out=*/false);
    sync();  // no lane reuses its input before every slice is summed
    return r;
  }
  /// True: on threads the sum and the update that reads it are one pass (reduce_apply()).
  [[nodiscard]] bool can_reduce_apply() const noexcept { return true; }
  /// Calls f(slice, gradient) with gradient(i) the sum over lanes of in[slice.lo + i], without
  /// writing the sum anywhere: a reduce-scatter fused into what consumes it (the optimizer
  /// update), one pass instead of two. The inputs must stay untouched until the lanes' next
  /// collective.
  template <class F>
  void reduce_apply(const float* in, std::size_t n, const char*, F&& f) {
    const detail::Range r = slice(n, size(), rank_);
    if (size() == 1) {
      f(r, detail::GradientOf{in + r.lo});
      return;
    }
    const detail_thread::Registry& reg = enter(in, nullptr);
    if (size() == 2) {
      f(r, detail::GradientSum2{reg.in[0] + r.lo, reg.in[1] + r.lo});
    } else {
      f(r, SumOfN{reg.in.data(), size(), r.lo});
    }
  }
  /// Every lane's p whole: lane r gives slice r. Lanes sharing one buffer only wait.
  void all_gather(float* p, std::size_t n, const char* = "") {
    if (size() == 1) return;
    const detail_thread::Registry& reg = enter(p, p);
    if (!shared_out(reg)) {
      const detail::Range r = slice(n, size(), rank_);
      for (std::size_t k = 0; k < size(); ++k)
        if (k != rank_) std::copy(p + r.lo, p + r.hi, reg.out[k] + r.lo);
    }
    sync();
  }
  /// root's p to every lane.
  void broadcast(float* p, std::size_t n, std::size_t root, const char* = "") {
    if (size() == 1) return;
    const detail_thread::Registry& reg = enter(p, p);
    const detail::Range r = slice(n, size(), rank_);
    for (std::size_t k = 0; k < size(); ++k)
      if (reg.out[k] != reg.out[root]) std::copy(reg.out[root] + r.lo, reg.out[root] + r.hi, reg.out[k] + r.lo);
    sync();
  }

  /// Every lane's p (or the one p they share) becomes scale * root's p.
  void scale_from(float* p, std::size_t n, std::size_t root, float scale = 1.0f) {
    if (size() == 1) {
      if (scale != 1.0f) for (std::size_t i = 0; i < n; ++i) p[i] *= scale;
      return;
    }
    const detail_thread::Registry& reg = enter(p, p);
    const detail::Range r = slice(n, size(), rank_);
    const float* from = reg.out[root];
    for (std::size_t i = r.lo; i < r.hi; ++i) {
      const float v = scale * from[i];
      for (std::size_t k = 0; k < size(); ++k)
        if (k == 0 || reg.out[k] != reg.out[k - 1]) reg.out[k][i] = v;
    }
    sync();
  }
  /// Every lane's p becomes root's p (n doubles).
  void copy_from(double* p, std::size_t n, std::size_t root) {
    if (size() == 1) return;
    detail_thread::Registry& reg = next_registry();
    reg.doubles[rank_] = p;
    sync();
    if (rank_ != root && p != reg.doubles[root]) std::copy(reg.doubles[root], reg.doubles[root] + n, p);
    sync();
  }

  /// Threads share memory: a sum started during the backward pass would only wait for the other
  /// lanes; ranges are summed at finish(), over the whole buffers.
  void start_all_reduce(const float* in, float* out, std::size_t lo, std::size_t hi, const char* = "") {
    if (!pending_in_) {
      pending_in_ = in;
      pending_out_ = out;
      pending_hi_ = 0;
    }
    pending_hi_ = std::max(pending_hi_, hi);
    (void)lo;
  }
  /// Advances the sums started by start_all_reduce().
  void progress() {}
  /// Completes every sum started by start_all_reduce().
  void finish(const char* what = "") {
    if (!pending_in_) return;
    all_reduce(pending_in_, pending_out_, pending_hi_, what);
    pending_in_ = nullptr;
  }

  /// A buffer of `n` floats for send(), a recycled one when there is one.
  [[nodiscard]] std::vector<float> buffer(std::size_t n) { return g_->take_buffer(n); }
  /// Gives a received buffer back for reuse.
  void recycle(std::vector<float>&& v) { g_->recycle(std::move(v)); }
  /// Sends `data` to rank `peer` of this group; never blocks.
  void send(std::size_t peer, int tag, std::vector<float>&& data, const char* = "") {
    detail_thread::Mailbox& box = *g_->boxes_[s_->lanes[peer]];
    {
      const std::lock_guard<std::mutex> lock(box.mutex);
      box.queue.push_back({group_lane(), tag, std::move(data)});
    }
    box.ready.notify_all();
  }
  /// The message of `tag` from rank `peer`, of `count` floats; throws Aborted when the group
  /// failed while waiting, and an Error when the message does not have `count` floats.
  std::vector<float> recv(std::size_t peer, int tag, std::size_t count, const char* what = "") {
    detail_thread::Mailbox& box = *g_->boxes_[group_lane()];
    const std::size_t from = s_->lanes[peer];
    std::unique_lock<std::mutex> lock(box.mutex);
    auto match = box.queue.end();
    box.ready.wait(lock, [&] {
      match = std::find_if(box.queue.begin(), box.queue.end(), [&](const auto& m) { return m.from == from && m.tag == tag; });
      return match != box.queue.end() || g_->aborted();
    });
    if (match == box.queue.end()) throw detail::Aborted{};
    std::vector<float> data = std::move(match->data);
    box.queue.erase(match);
    lock.unlock();
    detail::require(data.size() == count, ErrorKind::shape,
                    std::string(what) + ": the message of tag " + std::to_string(tag) + " from rank " +
                        std::to_string(peer) + " carries " + std::to_string(data.size()) + " values, expected " +
                        std::to_string(count));
    return data;
  }

  /// Lanes of one color form a sub-group, ranked by key (ties by rank).
  ThreadComm split(std::size_t color, std::size_t key) {
    s_->split_color[rank_] = color;
    s_->split_key[rank_] = key;
    sync();
    std::vector<std::pair<std::size_t, std::size_t>> mine;  // (key, rank) of my color
    for (std::size_t k = 0; k < size(); ++k)
      if (s_->split_color[k] == color) mine.emplace_back(s_->split_key[k], k);
    std::sort(mine.begin(), mine.end());
    std::size_t my_rank = 0;
    for (std::size_t i = 0; i < mine.size(); ++i)
      if (mine[i].second == rank_) my_rank = i;
    if (my_rank == 0) {  // the first of each color makes its sub-group
      std::vector<std::size_t> members;
      for (const auto& m : mine) members.push_back(s_->lanes[m.second]);
      detail_thread::Shared* sub = g_->make_sub(std::move(members));
      const std::lock_guard<std::mutex> lock(g_->subs_mutex_);
      s_->split_made[color] = sub;
    }
    sync();
    detail_thread::Shared* sub = nullptr;
    {
      const std::lock_guard<std::mutex> lock(g_->subs_mutex_);
      sub = s_->split_made.at(color);
    }
    sync();
    if (rank_ == 0) s_->split_made.clear();
    return ThreadComm(*g_, *sub, my_rank);
  }

  /// The group it belongs to.
  [[nodiscard]] ThreadGroup& group() const noexcept { return *g_; }

 private:
  struct SumOfN {
    const float* const* in;
    std::size_t n, lo;
    float operator()(std::size_t i) const {
      float v = in[0][lo + i];
      for (std::size_t k = 1; k < n; ++k) v += in[k][lo + i];
      return v;
    }
  };

  void sync() {
    if (!s_->barrier.wait()) throw detail::Aborted{};
  }
  /// The registry of this lane's next collective.
  detail_thread::Registry& next_registry() { return s_->registry[s_->rounds[rank_]++ % 2]; }
  /// Registers this lane's buffers and waits until every lane has: the registry to read.
  const detail_thread::Registry& enter(const float* in, float* out) {
    detail_thread::Registry& reg = next_registry();
    reg.in[rank_] = in;
    reg.out[rank_] = out;
    sync();  // every buffer registered and complete
    return reg;
  }
  [[nodiscard]] bool shared_out(const detail_thread::Registry& reg) const noexcept {
    for (std::size_t k = 1; k < size(); ++k)
      if (reg.out[k] != reg.out[0]) return false;
    return true;
  }
  /// This lane's slice of the sum of every input, into every distinct output (or only its own).
  void sum_slice(const detail_thread::Registry& reg, std::size_t n, float scale, bool every_out) {
    const detail::Range r = slice(n, size(), rank_);
    const std::size_t L = size();
    const bool one_out = !every_out || shared_out(reg);
    float* const mine = reg.out[rank_];
    if (L == 2 && one_out) {
      const float* TESSERA_RESTRICT a = reg.in[0];
      const float* TESSERA_RESTRICT b = reg.in[1];
      float* TESSERA_RESTRICT o = mine;
      if (scale == 1.0f) {
        TESSERA_SIMD
        for (std::size_t i = r.lo; i < r.hi; ++i) o[i] = a[i] + b[i];
      } else {
        TESSERA_SIMD
        for (std::size_t i = r.lo; i < r.hi; ++i) o[i] = scale * (a[i] + b[i]);
      }
      return;
    }
    if (L == 2 && reg.in[0] == reg.out[0] && reg.in[1] == reg.out[1]) {  // in place in both: one pass
      float* TESSERA_RESTRICT a = reg.out[0];
      float* TESSERA_RESTRICT b = reg.out[1];
      TESSERA_SIMD
      for (std::size_t i = r.lo; i < r.hi; ++i) a[i] = b[i] = scale * (a[i] + b[i]);
      return;
    }
    for (std::size_t i = r.lo; i < r.hi; ++i) {
      float v = reg.in[0][i];
      for (std::size_t k = 1; k < L; ++k) v += reg.in[k][i];
      v *= scale;
      if (one_out) {
        mine[i] = v;
      } else {
        for (std::size_t k = 0; k < L; ++k) reg.out[k][i] = v;
      }
    }
  }

  ThreadGroup* g_;
  detail_thread::Shared* s_;
  std::size_t rank_;
  const float* pending_in_ = nullptr;
  float* pending_out_ = nullptr;
  std::size_t pending_hi_ = 0;
};

inline ThreadComm ThreadGroup::lane(std::size_t w) { return ThreadComm(*this, *root_, w); }

static_assert(Communicator<ThreadComm>);

}  // namespace tessera::comm

namespace tessera::comm {

/// The worker threads of one process training alone (Reduce<ThreadAllreduce>): the Group of a fit.
class LocalGroup : public ThreadGroup {
 public:
  /// A group of `lanes` threads in this one process.
  using ThreadGroup::ThreadGroup;
  /// Processes training together.
  [[nodiscard]] std::size_t processes() const noexcept { return 1; }
  /// This process's index among them.
  [[nodiscard]] std::size_t process() const noexcept { return 0; }
  /// The device lane `w` drives (GPU index; 0 on the CPU).
  [[nodiscard]] int device(std::size_t) const noexcept { return 0; }
  /// Every process passes the same value for `what`, or every one throws Error naming what differs.
  void agree(const std::string&, const std::string&) {}
  /// Process 0's n floats of `p` to every process.
  void broadcast(float*, std::size_t) {}
  /// The n doubles of `p` summed over the processes, in place.
  void sum(double*, std::size_t, const char*) {}
  /// This process stops; the other processes are told, with `message`.
  void fail(const std::string&) noexcept {}
};

static_assert(Group<LocalGroup>);

}  // namespace tessera::comm
