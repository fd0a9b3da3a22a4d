// tessera/comm/two_level.hpp - worker threads x processes as one communicator: lane w of process p
// is rank p * W + w of P * W. A collective first combines the threads of each process in shared
// memory (comm/thread_comm.hpp), then lane 0 of each process - the thread that drives the
// process-level transport, MPI in funnelled mode - runs it across the processes, then the threads
// read the result. Reduce<MpiAllreduce> trains data-parallel on it; `Cross` is a communicator with
// one lane per process (comm::MpiLane), used by lane 0 only.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tessera/comm/concepts.hpp"
#include "tessera/comm/thread_comm.hpp"

namespace tessera::comm {

template <class Cross>
class TwoLevelComm;

/// The worker threads of this process, joined to the other processes through `Cross`.
template <class Cross>
class TwoLevelGroup {
 public:
  /// Buckets a step may start (whole layers, at least bucket_bytes each: far fewer in practice).
  static constexpr std::size_t max_buckets = 4096;

  /// `workers` threads in this process, joined to the other processes through `cross`.
  TwoLevelGroup(std::size_t workers, Cross cross)
      : local_(workers), cross_(std::move(cross)), ins_(local_.lanes(), nullptr),
        arrivals_(std::make_unique<std::atomic<std::uint64_t>[]>(max_buckets)) {
    for (std::size_t b = 0; b < max_buckets; ++b) arrivals_[b].store(0);
  }
  TwoLevelGroup(const TwoLevelGroup&) = delete;
  TwoLevelGroup& operator=(const TwoLevelGroup&) = delete;

  /// Lanes (worker threads) of this process.
  [[nodiscard]] std::size_t lanes() const noexcept { return local_.lanes(); }
  /// The handle lane `w` uses (made on the calling thread, used on lane w's).
  [[nodiscard]] TwoLevelComm<Cross> lane(std::size_t w);
  /// Processes training together.
  [[nodiscard]] std::size_t processes() const { return cross_.size(); }
  /// This process's index among them.
  [[nodiscard]] std::size_t process() const { return cross_.rank(); }
  /// The device lane `w` drives (GPU index; 0 on the CPU).
  [[nodiscard]] int device(std::size_t) const noexcept { return 0; }
  /// The process-level communicator (main thread only).
  [[nodiscard]] Cross& cross() noexcept { return cross_; }
  /// Wakes every lane of this process waiting in the group; they throw.
  void abort() noexcept { local_.abort(); }
  /// Before the lanes of a new run start. The bucket arrivals count on across runs, as each
  /// lane's step count does.
  void reset() { local_.reset(); }

 private:
  friend class TwoLevelComm<Cross>;
  ThreadGroup local_;
  Cross cross_;
  std::vector<const float*> ins_;                       ///< each lane's gradient, for bucketed sums
  std::unique_ptr<std::atomic<std::uint64_t>[]> arrivals_;  ///< per bucket: arrivals of lanes 1.. so far
};

/// One lane's handle: its thread communicator, and (lane 0) the process-level one.
template <class Cross>
class TwoLevelComm {
 public:
  /// Whether the lanes share one address space: they may then pass one buffer to a collective.
  static constexpr bool shared_memory = true;

  /// Lane of `g`: `local` among the threads, `cross` to the other processes (lane 0; nullptr on the
  /// others).
  TwoLevelComm(TwoLevelGroup<Cross>& g, ThreadComm local, Cross* cross)
      : g_(&g), local_(local), cross_(cross), procs_(g.processes()), proc_(g.process()) {}

  /// Processes in the group.
  [[nodiscard]] std::size_t processes() const noexcept { return procs_; }
  /// This lane's rank among every lane of the group, 0 to size() - 1.
  [[nodiscard]] std::size_t rank() const noexcept { return proc_ * local_.size() + local_.rank(); }
  /// Lanes of the group, those of every process together.
  [[nodiscard]] std::size_t size() const noexcept { return procs_ * local_.size(); }
  /// This lane's rank among the lanes of its process.
  [[nodiscard]] std::size_t local_rank() const noexcept { return local_.rank(); }
  /// Lanes of this process in the group.
  [[nodiscard]] std::size_t local_size() const noexcept { return local_.size(); }
  /// The threads of this process, and the process-level communicator (lane 0; null elsewhere).
  [[nodiscard]] ThreadComm& local() noexcept { return local_; }
  /// The communicator across processes (nullptr on lanes other than 0).
  [[nodiscard]] Cross* cross() noexcept { return cross_; }

  /// Returns once every lane of this process has called it.
  void local_barrier(const char* what = "barrier") { local_.barrier(what); }
  /// Returns once every lane of the group has called it (`what` names the wait in messages); throws when
  /// the group failed.
  void barrier(const char* what = "barrier") {
    local_.barrier(what);
    if (cross_) cross_->barrier(what);
    local_.barrier(what);
  }
  /// Throws when the group failed; returns at once otherwise.
  void check(const char* what = "") {
    local_.check(what);
    if (cross_) cross_->check(what);
  }

  /// out = scale x the sum over lanes of `in`, n floats (in == out allowed; shared-memory lanes may pass
  /// one `out`).
  void all_reduce(const float* in, float* out, std::size_t n, const char* what = "", float scale = 1.0f) {
    if (processes() == 1) return local_.all_reduce(in, out, n, what, scale);
    local_.all_reduce(in, out, n, what, 1.0f);  // each distinct out holds this process's sum
    if (cross_) cross_->all_reduce(out, out, n, what, 1.0f);
    local_.barrier(what);
    local_.scale_from(out, n, 0, scale);  // lane 0's result (and scale) into every distinct out
  }
  /// The sum over lanes of the n doubles of `p`, in place on every lane.
  void all_reduce(double* p, std::size_t n, const char* what = "") {
    local_.all_reduce(p, n, what, [&](double* sum, std::size_t count) {
      if (cross_ && processes() > 1) cross_->all_reduce(sum, count, what);
    });
  }
  /// On the threads of one process the sum and the update that reads it are one pass.
  [[nodiscard]] bool can_reduce_apply() const noexcept { return processes() == 1; }
  /// Sums `in` over the lanes and calls `f` on this lane's slice of the sum, in one pass (one process
  /// only: see can_reduce_apply()).
  template <class F>
  void reduce_apply(const float* in, std::size_t n, const char* what, F&& f) {
    local_.reduce_apply(in, n, what, std::forward<F>(f));
  }
  /// `out` must be one buffer shared by the lanes of this process.
  detail::Range reduce_scatter(const float* in, float* out, std::size_t n, const char* what = "") {
    if (processes() == 1) return local_.reduce_scatter(in, out, n, what);
    local_.all_reduce(in, out, n, what, 1.0f);
    if (cross_) {
      const std::vector<std::size_t> b = blocks(n);
      cross_->reduce_scatter_blocks(out, n, b, what);
    }
    local_.barrier(what);
    return slice(n, size(), rank());
  }
  /// `p` must be one buffer shared by the lanes of this process.
  void all_gather(float* p, std::size_t n, const char* what = "") {
    if (processes() == 1) return local_.all_gather(p, n, what);
    local_.barrier(what);  // every lane's slice written
    if (cross_) {
      const std::vector<std::size_t> b = blocks(n);
      cross_->all_gather_blocks(p, n, b, what);
    }
    local_.barrier(what);
  }
  /// From rank `root`, which must be lane 0 of its process.
  void broadcast(float* p, std::size_t n, std::size_t root, const char* what = "") {
    if (processes() == 1) return local_.broadcast(p, n, root, what);
    detail::require(root % local_size() == 0, ErrorKind::invalid_argument,
                    std::string("broadcast across processes from rank ") + std::to_string(root) +
                        ", which is not the first worker of its process");
    local_.barrier(what);
    if (cross_) cross_->broadcast(p, n, root / local_size(), what);
    local_.scale_from(p, n, 0);  // lane 0's buffer into every distinct one
  }

  /// A bucket [lo, hi) of every lane's `in` is final on this lane. Lane 0 waits until every lane
  /// of the process has finished it, sums it into `out` (one buffer shared by the lanes) and
  /// starts its sum across the processes; the other lanes return at once.
  void start_all_reduce(const float* in, float* out, std::size_t lo, std::size_t hi, const char* what = "") {
    if (processes() == 1) return local_.start_all_reduce(in, out, lo, hi, what);
    const std::size_t b = bucket_++;
    detail::require(b < TwoLevelGroup<Cross>::max_buckets, ErrorKind::invalid_argument,
                    "more than 4096 gradient buckets in one step; give a larger bucket size");
    if (b == 0) ++steps_;
    g_->ins_[local_rank()] = in;
    if (!cross_) {
      g_->arrivals_[b].fetch_add(1, std::memory_order_release);
      return;
    }
    const std::uint64_t others = (local_size() - 1) * steps_;
    for (unsigned spin = 0; g_->arrivals_[b].load(std::memory_order_acquire) < others; ++spin) {
      local_.check(what);
      cross_->progress();
      if (spin > 64) std::this_thread::yield();
    }
    for (std::size_t i = lo; i < hi; ++i) {
      float v = g_->ins_[0][i];
      for (std::size_t k = 1; k < local_size(); ++k) v += g_->ins_[k][i];
      out[i] = v;
    }
    cross_->start_all_reduce(out, out, lo, hi, what);
  }
  /// Advances the sums started by start_all_reduce().
  void progress() {
    if (cross_) cross_->progress();
  }
  /// Every started sum complete, in the shared `out`, for every lane.
  void finish(const char* what = "") {
    if (processes() == 1) return local_.finish(what);
    bucket_ = 0;
    if (cross_) cross_->finish(what);
    local_.barrier(what);
  }

  /// A buffer of `n` floats for send(), a recycled one when there is one.
  [[nodiscard]] std::vector<float> buffer(std::size_t n) { return cross_ && local_size() == 1 ? cross_->buffer(n) : local_.buffer(n); }
  /// Gives a received buffer back for reuse.
  void recycle(std::vector<float>&& v) {
    if (cross_ && local_size() == 1) cross_->recycle(std::move(v));
    else local_.recycle(std::move(v));
  }
  /// Messages go between the threads of one process, or between processes of one thread each.
  void send(std::size_t peer, int tag, std::vector<float>&& data, const char* what = "") {
    if (local_size() == 1) return cross_->send(peer, tag, std::move(data), what);
    local_.send(local_peer(peer), tag, std::move(data), what);
  }
  /// Blocks until the message `tag` of `count` floats from lane `peer` arrives; throws when the group
  /// failed.
  std::vector<float> recv(std::size_t peer, int tag, std::size_t count, const char* what = "") {
    if (local_size() == 1) return cross_->recv(peer, tag, count, what);
    return local_.recv(local_peer(peer), tag, count, what);
  }
  /// The sub-group of the lanes passing the same `color`, ranked by `key`; every lane calls it.
  TwoLevelComm split(std::size_t color, std::size_t key) {
    if (processes() == 1) return TwoLevelComm(*g_, local_.split(color, key), cross_);
    detail::require(local_size() == 1, ErrorKind::invalid_argument,
                    "sub-groups across processes of several worker threads each are not supported; run one worker "
                    "per process");
    auto sub = std::make_shared<Cross>(cross_->split(color, key));
    TwoLevelComm c(*g_, local_, sub.get());
    c.sub_ = sub;
    c.procs_ = sub->size();
    c.proc_ = sub->rank();
    return c;
  }

 private:
  /// Process-level blocks: process p's is the union of its lanes' slices.
  [[nodiscard]] std::vector<std::size_t> blocks(std::size_t n) const {
    const std::size_t W = local_size(), P = processes();
    std::vector<std::size_t> b(P + 1, 0);
    for (std::size_t p = 0; p < P; ++p) b[p + 1] = slice(n, P * W, p * W + W - 1).hi;
    return b;
  }
  [[nodiscard]] std::size_t local_peer(std::size_t peer) const {
    detail::require(peer / local_size() == proc_, ErrorKind::invalid_argument,
                    "a message from rank " + std::to_string(rank()) + " to rank " + std::to_string(peer) +
                        ", a worker thread of another process: messages between processes need one worker per process");
    return peer % local_size();
  }

  TwoLevelGroup<Cross>* g_;
  ThreadComm local_;
  Cross* cross_;
  std::shared_ptr<Cross> sub_;  ///< a sub-group across processes (one worker each) owns its communicator
  std::size_t procs_, proc_;
  std::size_t bucket_ = 0;
  std::uint64_t steps_ = 0;
};

template <class Cross>
TwoLevelComm<Cross> TwoLevelGroup<Cross>::lane(std::size_t w) {
  return TwoLevelComm<Cross>(*this, local_.lane(w), w == 0 ? &cross_ : nullptr);
}

}  // namespace tessera::comm
