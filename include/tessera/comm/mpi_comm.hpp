// tessera/comm/mpi_comm.hpp - collectives between processes over MPI (Open MPI), with every
// failure reported as a tessera::Error naming the call, the rank and MPI's own message. Only
// tessera/mpi.hpp and this header include <mpi.h>.
//
// No call waits forever. Every operation is posted non-blocking and completed by a polling loop
// that also watches (a) a deadline, mpi::timeout() seconds (default 300, or the environment
// variable TESSERA_MPI_TIMEOUT), and (b) a failure notice: a rank that stops (it threw, or it timed
// out) first sends a short message to every other rank of the group, and a rank waiting anywhere
// receives it and throws an Error naming the failed rank, its message, and what it was waiting in
// itself. After such a failure the group's pending operations can never complete, so the job is
// marked failed and mpi::Environment ends it with MPI_Abort (exit status 1) instead of hanging in
// MPI_Finalize. A rank that dies outright (a signal, exit without MPI_Finalize) is noticed by
// mpirun, which ends the job.
//
// Sums of large float buffers run as a ring (reduce-scatter, then all-gather) over non-blocking
// point-to-point messages: as fast as Open MPI's own MPI_Allreduce on shared memory and TCP, where
// its non-blocking MPI_Iallreduce is 2-3x slower (docs/performance.md). The ring also runs as a
// queue of buckets progressed step by step, so that gradient sums overlap the backward pass.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <limits>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "tessera/comm/mpi_job.hpp"
#include "tessera/core/checked.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/writer.hpp"

namespace tessera::mpi {

namespace detail {
inline double timeout_from_environment() {
  const char* e = std::getenv("TESSERA_MPI_TIMEOUT");
  if (!e || !*e) return 300.0;
  char* end = nullptr;
  const double v = std::strtod(e, &end);
  if (end == e || *end != '\0' || !(v > 0.0))
    throw Error(ErrorKind::invalid_argument,
                std::string("TESSERA_MPI_TIMEOUT must be a positive number of seconds, got \"") + e + "\"");
  return v;
}
inline std::atomic<double>& timeout_seconds() {
  static std::atomic<double> t{timeout_from_environment()};
  return t;
}
inline std::atomic<bool>& job_failed_flag() {
  static std::atomic<bool> b{false};
  return b;
}
/// Calls done() until it returns true (then true) or `limit` seconds pass (then false, with the
/// time waited in `waited`): a short spin, then yielding, then short sleeps, so that more ranks
/// than cores do not starve the rank being waited for.
template <class Done>
bool poll_until(Done&& done, double limit, double& waited) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  for (unsigned spin = 0;; ++spin) {
    if (done()) return true;
    if (spin < 128) continue;
    waited = std::chrono::duration<double>(clock::now() - start).count();
    if (waited > limit) return false;
    if (waited < 1e-2) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

constexpr int ring_tag = 1;          ///< tags 1 .. 2 * size of the ring's steps
constexpr int exchange_tag = 1 << 14;
}  // namespace detail

/// Seconds any collective waits for the other ranks before it throws (default 300, or
/// TESSERA_MPI_TIMEOUT). Set it on every rank, to the same value.
inline void set_timeout(double seconds) {
  if (!(seconds > 0.0))
    throw Error(ErrorKind::invalid_argument, "mpi::set_timeout: the timeout must be positive, got " + std::to_string(seconds));
  detail::timeout_seconds().store(seconds);
}
[[nodiscard]] inline double timeout() { return detail::timeout_seconds().load(); }

/// True once a rank of a group this process belongs to failed or timed out: the pending operations
/// of the group can no longer complete, and Environment ends the job with MPI_Abort.
[[nodiscard]] inline bool job_failed() noexcept { return detail::job_failed_flag().load(); }

class Communicator;

/// Initialises MPI (threads funnelled through the main thread) unless something else already did,
/// and at the end of its life finalises it - or, after a failure (job_failed()), aborts the whole
/// job with exit status 1, since the other ranks are stopped inside operations that cannot finish.
///
/// It also opens the job channel (tessera/comm/mpi_job.hpp), through which every wait of the job
/// hears of failures and of ranks that ended early, and makes writing files collective: save()
/// and History::write_* are called by every rank, rank 0 writes, and every rank returns once the
/// file is in place or throws the same Error.
class Environment {
 public:
  /// Initialises MPI with the program's `argc` and `argv` (both may be null) unless it already is, and
  /// opens the job channel; finalises it on destruction when it initialised it.
  Environment(int* argc = nullptr, char*** argv = nullptr);
  ~Environment();
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

 private:
  static bool all_ranks_arrive(detail::JobChannel& job);
  static void collective_write(const std::function<void()>& write);
  static Communicator*& job_communicator();

  bool owner_ = false;
  std::unique_ptr<detail::JobChannel> job_;
  std::unique_ptr<Communicator> job_comm_;
};

/// One message of an exchange(): `count` floats at `data` to or from rank `peer`, matched by `tag`
/// (below 16384).
struct Transfer {
  /// The floats sent or received.
  float* data = nullptr;
  /// Number of floats.
  std::size_t count = 0;
  /// The other rank.
  int peer = 0;
  /// Matches a send with its receive (below 16384).
  int tag = 0;
};

/// A group of ranks. Collectives are called by every rank of the group, in the same order.
class Communicator {
 public:
  /// Every process of the job.
  static Communicator world() { return Communicator(MPI_COMM_WORLD, false); }

  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  /// Takes over `o`'s communicator.
  Communicator(Communicator&& o) noexcept
      : comm_(o.comm_), owned_(o.owned_), rank_(o.rank_), size_(o.size_), notices_(std::move(o.notices_)),
        queue_(std::move(o.queue_)), scratch_(std::move(o.scratch_)), members_(std::move(o.members_)),
        contained_(o.contained_), broken_(o.broken_) {
    o.owned_ = false;
  }
  ~Communicator() {
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (finalised || job_failed()) return;  // after a failure nothing can be freed safely: the job aborts
    if (broken_) {  // a contained failure: operations may be pending, so handles and buffers are left, not freed
      kept().notices.push_back(std::move(notices_));  // its receive stays posted into it
      kept().scratch.push_back(std::move(scratch_));   // receives of a sum may still land here
      kept().rings.push_back(std::move(queue_));       // and the sums started
      return;
    }
    if (notices_) {
      MPI_Cancel(&notices_->pending);
      MPI_Wait(&notices_->pending, MPI_STATUS_IGNORE);
      MPI_Comm_free(&notices_->comm);
    }
    if (owned_) MPI_Comm_free(&comm_);
  }

  /// Keeps failures inside this group: a rank of it that fails tells only the group's ranks, which
  /// throw at their next wait of this group, and the job goes on (the tasks of a tasks:: pool on
  /// groups of ranks). Other failures of the job still reach it. Call it on every rank of the
  /// group, before the group is used.
  void contain_failures() noexcept { contained_ = true; }
  /// Whether a contained failure ended this group (nothing more can be run on it).
  [[nodiscard]] bool broken() const noexcept { return broken_; }

  /// This process's rank in the communicator.
  [[nodiscard]] int rank() const noexcept { return rank_; }
  /// Processes in the communicator.
  [[nodiscard]] int size() const noexcept { return size_; }
  /// The MPI communicator itself.
  [[nodiscard]] MPI_Comm native() const noexcept { return comm_; }

  /// In place: buf[0..n) becomes the sum over ranks. `what` names the buffer in messages.
  void all_reduce(float* buf, std::size_t n, const char* what = "buffer") const {
    if (size_ == 1 || n == 0) return;
    if (!queue_.empty())
      throw Error(ErrorKind::invalid_argument, "mpi: all_reduce on " + me() + " while started sums are pending; call finish() first");
    Ring r{buf, n, what};
    while (!advance(r)) wait_all(r.req, 2, "all_reduce", what, r.peer, n);
  }
  /// The sum over ranks of the n doubles of `buf`, in place on every rank; throws Error naming `what`
  /// when a rank failed.
  void all_reduce(double* buf, std::size_t n, const char* what = "buffer") const {
    if (size_ == 1 || n == 0) return;
    // a few values (losses, flags): MPI's own non-blocking sum
    for (std::size_t done = 0; done < n;) {
      const int count = static_cast<int>(std::min<std::size_t>(n - done, INT_MAX));
      MPI_Request q = MPI_REQUEST_NULL;
      check(MPI_Iallreduce(MPI_IN_PLACE, buf + done, count, MPI_DOUBLE, MPI_SUM, comm_, &q), "MPI_Allreduce");
      wait_all(&q, 1, "all_reduce", what, -1, n);
      done += static_cast<std::size_t>(count);
    }
  }

  /// Starts summing buf[0..n) over ranks without waiting: sums run one after another in the order
  /// started, advanced by progress() and completed by finish(). Every rank starts the same sums in
  /// the same order. The buffer must not be touched until finish() returns.
  void start_all_reduce(float* buf, std::size_t n, const char* what = "bucket") {
    if (size_ == 1 || n == 0) return;
    queue_.push_back(Ring{buf, n, what});
    progress();
  }
  /// Advances the started sums as far as they go without waiting; true when none is left.
  bool progress() {
    while (!queue_.empty()) {
      if (!advance(queue_.front())) {
        poll_notices("all_reduce", queue_.front().what);
        if (detail::JobChannel* job = detail::job_channel(); job && (++polls_ & 7) == 0) {
          const Ring& r = queue_.front();
          job->poll([&] { return doing("all_reduce", r.what, r.n); });
          watch_job(job, "all_reduce", r.what, nullptr);
        }
        return false;
      }
      queue_.pop_front();
    }
    return true;
  }
  /// Waits until every started sum is complete.
  void finish() {
    while (!queue_.empty()) {
      Ring& r = queue_.front();
      while (!advance(r)) wait_all(r.req, 2, "all_reduce", r.what, r.peer, r.n);
      queue_.pop_front();
    }
  }

  /// In place: rank r's block [bounds[r], bounds[r + 1]) of buf becomes the sum over ranks of that
  /// block (the rest of buf is left partly summed). bounds has size() + 1 entries, 0 to n.
  void reduce_scatter(float* buf, std::size_t n, std::span<const std::size_t> bounds, const char* what = "buffer") const {
    ring_phase(buf, n, bounds, 0, size_ - 1, "reduce_scatter", what);
  }
  /// In place: every rank's buf becomes whole, rank r giving its block [bounds[r], bounds[r + 1]).
  void all_gather(float* buf, std::size_t n, std::span<const std::size_t> bounds, const char* what = "buffer") const {
    ring_phase(buf, n, bounds, size_ - 1, 2 * (size_ - 1), "all_gather", what);
  }

  /// Copies `root`'s buf[0..n) to every rank.
  void broadcast(float* buf, std::size_t n, int root = 0, const char* what = "buffer") const {
    if (root < 0 || root >= size_) check(MPI_ERR_ROOT, "MPI_Bcast");
    for (std::size_t done = 0; done < n;) {
      const int count = static_cast<int>(std::min<std::size_t>(n - done, INT_MAX));
      MPI_Request q = MPI_REQUEST_NULL;
      check(MPI_Ibcast(buf + done, count, MPI_FLOAT, root, comm_, &q), "MPI_Bcast");
      wait_all(&q, 1, "broadcast", what, root, n);
      done += static_cast<std::size_t>(count);
    }
  }

  /// A barrier without the time limit, for ranks that may wait while others work as long as their
  /// work takes (the end of a task pool); a failure or a rank that left the program still ends it.
  void barrier_unbounded(const char* what) const {
    MPI_Request q = MPI_REQUEST_NULL;
    check(MPI_Ibarrier(comm_, &q), "MPI_Barrier");
    unsigned polls = 0;
    waiting("barrier", what, -1, 0, [&] {
      int done = 0;
      check(MPI_Test(&q, &done, MPI_STATUS_IGNORE), "MPI_Test");
      // a rank that may wait as long as others work leaves them the cores: after the first
      // thousand polls it sleeps a millisecond between them
      if (!done && ++polls > 1000) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      return done != 0;
    }, std::numeric_limits<double>::infinity());
  }

  /// Copies `root`'s string to every rank.
  [[nodiscard]] std::string broadcast_text(const std::string& value, int root, const char* what) const {
    if (root < 0 || root >= size_) check(MPI_ERR_ROOT, "MPI_Bcast");
    std::uint64_t len = value.size();
    broadcast_bytes(&len, sizeof len, root, what);
    std::string s = rank_ == root ? value : std::string(static_cast<std::size_t>(len), '\0');
    for (std::size_t at = 0; at < s.size(); at += std::size_t{1} << 30)
      broadcast_bytes(s.data() + at, std::min<std::size_t>(std::size_t{1} << 30, s.size() - at), root, what);
    return s;
  }

  /// Returns once every rank has called it; throws Error naming `what` when a rank failed.
  void barrier(const char* what = "barrier") const {
    MPI_Request q = MPI_REQUEST_NULL;
    check(MPI_Ibarrier(comm_, &q), "MPI_Barrier");
    wait_all(&q, 1, "barrier", what, -1, 0);
  }

  /// Point-to-point: posts every receive and send, then waits for all of them. Each pair of ranks
  /// must post matching transfers (same tag and count).
  void exchange(std::span<const Transfer> sends, std::span<const Transfer> recvs, const char* what) const {
    std::vector<MPI_Request> q;
    q.reserve(sends.size() + recvs.size());
    for (const Transfer& t : recvs) {
      q.push_back(MPI_REQUEST_NULL);
      check(MPI_Irecv(t.data, count_of(t.count), MPI_FLOAT, t.peer, detail::exchange_tag + t.tag, comm_, &q.back()),
            "MPI_Irecv");
    }
    for (const Transfer& t : sends) {
      q.push_back(MPI_REQUEST_NULL);
      check(MPI_Isend(t.data, count_of(t.count), MPI_FLOAT, t.peer, detail::exchange_tag + t.tag, comm_, &q.back()),
            "MPI_Isend");
    }
    const int peer = recvs.empty() ? (sends.empty() ? -1 : sends.front().peer) : recvs.front().peer;
    wait_all(q.data(), static_cast<int>(q.size()), "exchange", what, peer, 0);
  }

  /// Splits the group into sub-groups: ranks with the same `color` form one, ordered by `key`
  /// (e.g. data-parallel replicas x pipeline stages).
  [[nodiscard]] Communicator split(int color, int key) const {
    barrier("split");  // every rank is here: the blocking split below cannot wait forever
    MPI_Comm sub = MPI_COMM_NULL;
    check(MPI_Comm_split(comm_, color, key, &sub), "MPI_Comm_split");
    return Communicator(sub, true);
  }

  /// The ranks of this group that share this rank's machine (MPI_COMM_TYPE_SHARED), ordered as
  /// here: e.g. to give each rank of a node its own GPU.
  [[nodiscard]] Communicator node() const {
    barrier("node split");  // every rank is here: the blocking split below cannot wait forever
    MPI_Comm sub = MPI_COMM_NULL;
    check(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &sub), "MPI_Comm_split_type");
    return Communicator(sub, true);
  }

  /// Copies `root`'s bytes buf[0..n) to every rank (n below 2^31: an id, a small record).
  void broadcast_bytes(void* buf, std::size_t n, int root, const char* what) const {
    if (root < 0 || root >= size_) check(MPI_ERR_ROOT, "MPI_Bcast");
    MPI_Request q = MPI_REQUEST_NULL;
    check(MPI_Ibcast(buf, count_of(n), MPI_BYTE, root, comm_, &q), "MPI_Bcast");
    wait_all(&q, 1, "broadcast", what, root, n);
  }

  /// Every rank says whether it can go on with `what` (`problem` empty) or why not. When any
  /// cannot, every rank throws the same Error, naming the first rank that cannot, its reason, and
  /// how many others cannot: no rank goes on alone into a collective that would wait for it.
  void all_ready(const std::string& what, const std::string& problem) const {
    const int mine = problem.empty() ? 0 : 1;
    std::vector<int> all(static_cast<std::size_t>(size_));
    MPI_Request q = MPI_REQUEST_NULL;
    check(MPI_Iallgather(&mine, 1, MPI_INT, all.data(), 1, MPI_INT, comm_, &q), "MPI_Allgather");
    wait_all(&q, 1, "all_ready", what.c_str(), -1, 0);
    const auto first = std::find(all.begin(), all.end(), 1);
    if (first == all.end()) return;
    const int who = static_cast<int>(first - all.begin());
    const auto others = std::count(all.begin(), all.end(), 1) - 1;
    const std::string why = broadcast_string(problem, who);
    throw Error(ErrorKind::runtime, what + ": rank " + std::to_string(who) + " of " + std::to_string(size_) +
                                        " cannot take part: " + why +
                                        (others > 0 ? " (and " + std::to_string(others) + " other rank(s) cannot either)"
                                                    : std::string()));
  }

  /// Checks that every rank passes the same `value` for `what` (a model signature, the data
  /// dimensions...). On a mismatch every rank throws the same Error, naming the first rank that
  /// differs from rank 0 and the fields that differ (a value is read as fields separated by
  /// " | "), so no rank goes on to wait in a collective alone.
  void agree(const std::string& what, const std::string& value) const {
    const std::uint64_t mine = tessera::detail::fnv1a(value.data(), value.size());
    std::vector<std::uint64_t> all(static_cast<std::size_t>(size_));
    MPI_Request q = MPI_REQUEST_NULL;
    check(MPI_Iallgather(&mine, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, comm_, &q), "MPI_Allgather");
    wait_all(&q, 1, "agree", what.c_str(), -1, 0);
    int differs = -1;
    for (int r = 1; r < size_ && differs < 0; ++r)
      if (all[static_cast<std::size_t>(r)] != all[0]) differs = r;
    if (differs < 0) return;
    const std::string first = broadcast_string(value, 0), other = broadcast_string(value, differs);
    throw Error(ErrorKind::invalid_argument, "ranks disagree on the " + what + ": " + difference(first, other, differs));
  }

  /// Throws, as a wait of this group would, when another rank of the group has sent a failure
  /// notice; returns at once otherwise. For waits outside MPI (a GPU stream, say) that must not
  /// outlast a failed rank. `op` and `what` name that wait in the message.
  void check_notices(const char* op, const char* what) const { poll_notices(op, what); }

  /// Tells every other rank of the group that this rank stops, with `message` (this rank's error).
  /// They throw at their next wait instead of waiting for this rank forever. Marks the job failed.
  void notify_failure(const std::string& message) const noexcept {
    detail::JobChannel* job = contained_ ? nullptr : detail::job_channel();
    if (contained_) broken_ = true;
    else detail::job_failed_flag().store(true);
    // the job channel reaches every rank, whatever it waits in; a rank that only heard of another's
    // failure need not tell anyone again
    if (job && job->failed_from() < 0) job->post_failure(message);
    // the text outlives this call: a send not complete within the wait below still reads it
    // (after a failure the job ends; a contained one leaves it, a few hundred bytes per failure)
    const std::string& text = kept().texts.emplace_back(message.substr(0, detail::notice_length - 1));
    std::vector<MPI_Request> q;
    if (notices_ && size_ > 1)
      for (int r = 0; r < size_; ++r) {
        if (r == rank_) continue;
        q.push_back(MPI_REQUEST_NULL);
        MPI_Isend(text.c_str(), static_cast<int>(text.size() + 1), MPI_CHAR, r, 0, notices_->comm, &q.back());
      }
    // short messages leave at once (to live ranks in microseconds); wait a quarter of a second in
    // all, not more, for a rank that may be stuck or gone
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(250);
    int done = q.empty();
    while (!done && std::chrono::steady_clock::now() < until) {
      MPI_Testall(static_cast<int>(q.size()), q.data(), &done, MPI_STATUSES_IGNORE);
      if (!done) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    if (job) job->drain(until);
  }

  /// Floats per reduce-scatter message (256 KiB: what arrives is added from L2).
  static constexpr std::size_t segment = std::size_t{1} << 17;

  /// Posts one point-to-point send of t (tag below 16384, matched by a receive in exchange()) and
  /// returns without waiting; t.data must stay untouched until test() or wait() says it completed.
  [[nodiscard]] MPI_Request start_send(const Transfer& t) const {
    MPI_Request q = MPI_REQUEST_NULL;
    check(MPI_Isend(t.data, count_of(t.count), MPI_FLOAT, t.peer, detail::exchange_tag + t.tag, comm_, &q), "MPI_Isend");
    return q;
  }
  /// True when every request of q completed (completed ones become MPI_REQUEST_NULL); never waits.
  [[nodiscard]] bool test(std::span<MPI_Request> q) const {
    int done = 0;
    check(MPI_Testall(static_cast<int>(q.size()), q.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
    return done != 0;
  }
  /// Waits until every request of q completes, with the timeout and the failure notices of every
  /// other wait; `what` and `peer` name it in messages.
  void wait(std::span<MPI_Request> q, const char* what, int peer) const {
    wait_all(q.data(), static_cast<int>(q.size()), "send", what, peer, 0);
  }

 private:
  struct Notices {
    MPI_Comm comm = MPI_COMM_NULL;
    MPI_Request pending = MPI_REQUEST_NULL;
    char text[detail::notice_length] = {};
    int from = -1;  ///< the rank whose notice arrived, once one did
  };

  /// One ring all-reduce in flight: 2 (size - 1) steps of one send to the next rank and one receive
  /// from the previous one; the first size - 1 steps add what arrives (reduce-scatter), the others
  /// copy it (all-gather).
  struct Ring {
    float* buf = nullptr;
    std::size_t n = 0;
    const char* what = "";
    int step = -1;  ///< -1: not posted yet
    std::size_t segment = 0;
    int peer = -1;  ///< the rank this step receives from
    MPI_Request req[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    int first = 0, last = -1;        ///< the steps [first, last) to run: all of them, or one phase
    std::vector<std::size_t> bounds;  ///< size + 1 block boundaries (rank r's block r); empty: even chunks
    Ring(float* b, std::size_t count, const char* w) : buf(b), n(count), what(w) {}
  };

  /// What stays allocated until the process ends because MPI may still read or write it: the
  /// failure channels, notice texts, scratch buffers and started sums of groups a contained
  /// failure ended.
  struct Kept {
    std::vector<std::unique_ptr<Notices>> notices;
    std::deque<std::string> texts;
    std::vector<std::vector<float>> scratch;
    std::vector<std::deque<Ring>> rings;
  };
  static Kept& kept() {
    static Kept k;
    return k;
  }


  Communicator(MPI_Comm c, bool owned) : comm_(c), owned_(owned) {
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);  // errors come back as codes, then as Error
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    {  // the world ranks of this group, to tell whether a rank that left the program was one of its own
      MPI_Group group = MPI_GROUP_NULL, world = MPI_GROUP_NULL;
      MPI_Comm_group(comm_, &group);
      MPI_Comm_group(MPI_COMM_WORLD, &world);
      std::vector<int> local(static_cast<std::size_t>(size_));
      for (int r = 0; r < size_; ++r) local[static_cast<std::size_t>(r)] = r;
      members_.assign(local.size(), MPI_UNDEFINED);
      MPI_Group_translate_ranks(group, size_, local.data(), world, members_.data());
      MPI_Group_free(&group);
      MPI_Group_free(&world);
    }
    // a private channel for failure notices, with a receive always posted
    auto n = std::make_unique<Notices>();
    MPI_Request q = MPI_REQUEST_NULL;
    check(MPI_Comm_idup(comm_, &n->comm, &q), "MPI_Comm_idup");
    wait_all(&q, 1, "communicator set-up", "failure channel", -1, 0);
    MPI_Comm_set_errhandler(n->comm, MPI_ERRORS_RETURN);
    check(MPI_Irecv(n->text, detail::notice_length, MPI_CHAR, MPI_ANY_SOURCE, 0, n->comm, &n->pending), "MPI_Irecv");
    notices_ = std::move(n);
  }

  static int count_of(std::size_t n) {
    if (n > static_cast<std::size_t>(INT_MAX))
      throw Error(ErrorKind::invalid_argument, "mpi: a message of " + std::to_string(n) + " floats is over MPI's limit of " +
                                                   std::to_string(INT_MAX) + " elements");
    return static_cast<int>(n);
  }

  [[nodiscard]] std::pair<std::size_t, std::size_t> chunk(std::size_t n, int c) const {
    const auto parts = static_cast<std::size_t>(size_), k = static_cast<std::size_t>(c);
    const std::size_t q = n / parts, r = n % parts, lo = k * q + std::min(k, r);
    return {lo, lo + q + (k < r ? 1 : 0)};
  }

  /// Completes the ring's current step if its messages are done (adding for the reduce-scatter
  /// steps) and posts the next one. True when the whole sum is complete.
  bool advance(Ring& r) const {
    if (r.last < 0) r.last = 2 * (size_ - 1);
    // reduce-scatter steps go in segments, so that what arrives is added while still in cache;
    // every rank cuts every chunk the same way (segments past a chunk's end are empty messages)
    const std::size_t segments = (longest_chunk(r) + segment - 1) / segment;
    if (r.step >= 0) {
      int done = 0;
      check(MPI_Testall(2, r.req, &done, MPI_STATUSES_IGNORE), "MPI_Testall");
      if (!done) return false;
      if (r.step < size_ - 1) {  // reduce-scatter: add the received piece into ours
        const auto [lo, hi] = piece(r, (rank_ - r.step - 1 + 2 * size_) % size_, r.segment);
        add(r.buf + lo, scratch_.data(), hi - lo);
      }
    }
    if (r.step < 0) {
      r.step = r.first;
      r.segment = 0;
    } else if (r.step >= size_ - 1 || ++r.segment >= segments) {
      r.segment = 0;
      ++r.step;
    }
    if (r.step >= r.last) return true;
    const int next = (rank_ + 1) % size_, prev = (rank_ + size_ - 1) % size_;
    r.peer = prev;
    std::pair<std::size_t, std::size_t> send, recv;
    float* recv_into = nullptr;
    if (r.step < size_ - 1) {
      send = piece(r, (rank_ - r.step + size_) % size_, r.segment);
      recv = piece(r, (rank_ - r.step - 1 + 2 * size_) % size_, r.segment);
      if (scratch_.size() < segment) scratch_.resize(std::min(segment, longest_chunk(r)));
      recv_into = scratch_.data();
    } else {
      const int s = r.step - (size_ - 1);
      send = chunk(r, (rank_ + 1 - s + size_) % size_);
      recv = chunk(r, (rank_ - s + size_) % size_);
      recv_into = r.buf + recv.first;
    }
    const int tag = detail::ring_tag + r.step;
    check(MPI_Irecv(recv_into, count_of(recv.second - recv.first), MPI_FLOAT, prev, tag, comm_, &r.req[0]), "MPI_Irecv");
    check(MPI_Isend(r.buf + send.first, count_of(send.second - send.first), MPI_FLOAT, next, tag, comm_, &r.req[1]),
          "MPI_Isend");
    return false;
  }

  /// Chunk c of the ring: an even share, or - with block boundaries - block c - 1, so that the
  /// reduce-scatter phase leaves rank r with block r (the phase leaves it with chunk r + 1).
  [[nodiscard]] std::pair<std::size_t, std::size_t> chunk(const Ring& r, int c) const {
    if (r.bounds.empty()) return chunk(r.n, c);
    const auto b = static_cast<std::size_t>((c + size_ - 1) % size_);
    return {r.bounds[b], r.bounds[b + 1]};
  }
  [[nodiscard]] std::size_t longest_chunk(const Ring& r) const {
    if (r.bounds.empty()) return chunk(r.n, 0).second;
    std::size_t m = 0;
    for (std::size_t b = 0; b + 1 < r.bounds.size(); ++b) m = std::max(m, r.bounds[b + 1] - r.bounds[b]);
    return m;
  }

  /// Segment `k` of chunk `c`: empty past the chunk's end.
  [[nodiscard]] std::pair<std::size_t, std::size_t> piece(const Ring& r, int c, std::size_t k) const {
    const auto [lo, hi] = chunk(r, c);
    const std::size_t a = std::min(hi, lo + k * segment);
    return {a, std::min(hi, a + segment)};
  }

  /// One phase of a ring over blocks: checks the boundaries, runs the steps [first, last).
  void ring_phase(float* buf, std::size_t n, std::span<const std::size_t> bounds, int first, int last, const char* op,
                  const char* what) const {
    if (size_ == 1) return;
    if (bounds.size() != static_cast<std::size_t>(size_) + 1 || bounds.front() != 0 || bounds.back() != n ||
        !std::is_sorted(bounds.begin(), bounds.end()))
      throw Error(ErrorKind::invalid_argument, std::string("mpi: ") + op + " on " + me() + ": " +
                                                   std::to_string(bounds.size()) + " block boundaries for " +
                                                   std::to_string(size_) + " ranks and " + std::to_string(n) +
                                                   " values (need ranks + 1, from 0 to the count, in order)");
    if (!queue_.empty())
      throw Error(ErrorKind::invalid_argument, "mpi: " + std::string(op) + " on " + me() +
                                                   " while started sums are pending; call finish() first");
    Ring r{buf, n, what};
    r.first = first;
    r.last = last;
    r.bounds.assign(bounds.begin(), bounds.end());
    while (!advance(r)) wait_all(r.req, 2, op, what, r.peer, n);
  }

  static void add(float* __restrict d, const float* __restrict s, std::size_t n) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) d[i] += s[i];
  }

  /// Waits until every request completes; throws on a failure notice or after timeout().
  void wait_all(MPI_Request* q, int n, const char* op, const char* what, int peer, std::size_t count) const {
    waiting(op, what, peer, count, [&] {
      int done = 0;
      check(MPI_Testall(n, q, &done, MPI_STATUSES_IGNORE), "MPI_Testall");
      return done != 0;
    });
  }
  template <class Done>
  void waiting(const char* op, const char* what, int peer, std::size_t count, Done&& done,
               double limit = -1.0) const {
    double waited = 0.0;
    detail::JobChannel* job = detail::job_channel();
    std::optional<std::chrono::steady_clock::time_point> member_left;  // when a member's departure was seen
    unsigned calls = 0;
    const auto done_or_notice = [&] {
      if (done()) return true;
      poll_notices(op, what);  // throws when another rank failed
      if (job && (++calls & 7) == 0) {
        job->poll([&] { return doing(op, what, count); });
        watch_job(job, op, what, &member_left);
      }
      return false;
    };
    if (!detail::poll_until(done_or_notice, limit < 0.0 ? timeout() : limit, waited))
      timed_out(op, what, peer, count, waited);
  }

  [[nodiscard]] std::string me() const { return "rank " + std::to_string(rank_) + " of " + std::to_string(size_); }
  /// "rank 2" for a rank of this group; its world rank beside it when the two differ.
  [[nodiscard]] std::string member(int r) const {
    const int w = members_[static_cast<std::size_t>(r)];
    return "rank " + std::to_string(r) + (w != r ? " (world rank " + std::to_string(w) + ")" : std::string());
  }

  static std::string describe(const char* op, const char* what, std::size_t count) {
    std::string s = op;
    if (count) s += " of " + std::to_string(count) + " values";
    if (what && *what) s += std::string(" (") + what + ")";
    return s;
  }
  /// What this rank answers a census with while it waits.
  [[nodiscard]] std::string doing(const char* op, const char* what, std::size_t count) const {
    return "waits in " + describe(op, what, count);
  }

  /// Throws when the job channel has a failure notice, or when a rank of this group has left the
  /// program and this wait has not completed within a short grace since (the operation may
  /// still complete with what that rank sent before it left; after the grace it cannot).
  void watch_job(detail::JobChannel* job, const char* op, const char* what,
                 std::optional<std::chrono::steady_clock::time_point>* member_left) const {
    const int my_world = members_[static_cast<std::size_t>(rank_)];
    if (job->failed_from() >= 0 && job->failed_from() != my_world) {
      detail::job_failed_flag().store(true);
      const auto it = std::find(members_.begin(), members_.end(), job->failed_from());
      const std::string who = it != members_.end() ? member(static_cast<int>(it - members_.begin()))
                                                   : "world rank " + std::to_string(job->failed_from());
      throw Error(ErrorKind::runtime, me() + " stops: " + who + " failed (" + job->failure() +
                                          "); this rank was waiting in " + describe(op, what, 0));
    }
    if (!member_left || job->departures() == 0) return;
    int gone = -1;
    for (int r = 0; r < size_ && gone < 0; ++r)
      if (r != rank_ && job->departed().count(members_[static_cast<std::size_t>(r)])) gone = r;
    if (gone < 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (!*member_left) *member_left = now;
    const double grace = std::min(timeout() / 2, 3.0);  // shorter than the departed rank waits at its end
    if (std::chrono::duration<double>(now - **member_left).count() < grace) return;
    detail::job_failed_flag().store(true);
    throw Error(ErrorKind::runtime, me() + " stops: " + member(gone) + " has left the program (" +
                                        job->departed().at(members_[static_cast<std::size_t>(gone)]) +
                                        ") and can take part in nothing more; this rank was waiting in " +
                                        describe(op, what, 0));
  }

  void poll_notices(const char* op, const char* what) const {
    if (!notices_) return;
    if (notices_->from < 0) {
      int flag = 0;
      MPI_Status st;
      MPI_Test(&notices_->pending, &flag, &st);
      if (!flag) return;
      notices_->from = st.MPI_SOURCE;
      notices_->text[detail::notice_length - 1] = '\0';
    }
    if (contained_) broken_ = true;
    else detail::job_failed_flag().store(true);
    throw Error(ErrorKind::runtime, me() + " stops: rank " + std::to_string(notices_->from) + " failed (" +
                                        notices_->text + "); this rank was waiting in " + describe(op, what, 0));
  }

  /// Which ranks of this group did not arrive: asked over the job channel, the ranks inside a
  /// tessera wait answer what they wait in; the others are stuck in their own work, or gone.
  [[nodiscard]] std::string missing_ranks(const char* op, const char* what, std::size_t count) const {
    detail::JobChannel* job = detail::job_channel();
    if (!job) return "";
    const double limit = std::min(2.0, std::max(0.25, timeout() / 4));
    const auto answers = job->census(members_, limit, [&] { return doing(op, what, count); });
    std::string absent, present;
    int missing = 0;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      const int w = members_[static_cast<std::size_t>(r)];
      if (job->departed().count(w)) {
        absent += (absent.empty() ? "" : ", ") + member(r) + " (it has left the program: " + job->departed().at(w) + ")";
        ++missing;
      } else if (const auto a = answers.find(w); a != answers.end()) {
        present += (present.empty() ? "" : "; ") + member(r) + " " + a->second;
      } else {
        absent += (absent.empty() ? "" : ", ") + member(r);
        ++missing;
      }
    }
    if (missing == 0) return ": every other rank is waiting too (" + present + ")";
    return std::string(": ") + (missing == 1 ? "" : "ranks ") + absent + (missing == 1 ? " did" : " did") +
           " not arrive" + (present.empty() ? "" : " (" + present + ")");
  }

  [[noreturn]] void timed_out(const char* op, const char* what, int peer, std::size_t count, double waited) const {
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.1f", waited);
    std::string who = missing_ranks(op, what, count);
    if (who.empty() && peer >= 0) who = " (it waited for rank " + std::to_string(peer) + ", its neighbour in the operation)";
    const std::string msg = me() + " waited " + secs + " s in " + describe(op, what, count) +
                            " without every rank arriving" + who +
                            "; a rank has stopped or is stuck (the limit is mpi::set_timeout() or TESSERA_MPI_TIMEOUT)";
    notify_failure("timed out: " + msg);
    throw Error(ErrorKind::runtime, msg);
  }

  /// The fields of two set-up descriptions that differ (fields separated by " | ").
  static std::string difference(const std::string& first, const std::string& other, int rank) {
    const auto fields = [](const std::string& s) {
      std::vector<std::string> f;
      for (std::size_t at = 0;;) {
        const std::size_t bar = s.find(" | ", at);
        f.push_back(s.substr(at, bar == std::string::npos ? std::string::npos : bar - at));
        if (bar == std::string::npos) return f;
        at = bar + 3;
      }
    };
    const auto a = fields(first), b = fields(other);
    const std::string r = std::to_string(rank);
    if (a.size() != b.size())
      return "rank 0 has \"" + first + "\", rank " + r + " has \"" + other + "\"";
    std::string da, db, which;
    std::size_t n = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (a[i] == b[i]) continue;
      da += (n ? " | " : "") + a[i];
      db += (n ? " | " : "") + b[i];
      which += (n ? ", " : "") + std::to_string(i + 1);
      ++n;
    }
    return "rank 0 has \"" + da + "\", rank " + r + " has \"" + db + "\" (field" + (n > 1 ? "s " : " ") + which +
           " of " + std::to_string(a.size()) + " differ" + (n > 1 ? "" : "s") + "; the rest agree)";
  }

  void check(int code, const char* call) const {
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    throw Error(ErrorKind::runtime, std::string(call) + " failed on " + me() + ": " +
                                        std::string(text, static_cast<std::size_t>(len)));
  }

  std::string broadcast_string(const std::string& value, int root) const {
    std::uint64_t len = value.size();
    MPI_Request q = MPI_REQUEST_NULL;
    check(MPI_Ibcast(&len, 1, MPI_UINT64_T, root, comm_, &q), "MPI_Bcast");
    wait_all(&q, 1, "broadcast", "length of a description", root, 0);
    std::string s = rank_ == root ? value : std::string(static_cast<std::size_t>(len), '\0');
    check(MPI_Ibcast(s.data(), static_cast<int>(len), MPI_CHAR, root, comm_, &q), "MPI_Bcast");
    wait_all(&q, 1, "broadcast", "a description", root, 0);
    return s;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  bool owned_ = false;
  int rank_ = 0, size_ = 1;
  std::unique_ptr<Notices> notices_;
  std::deque<Ring> queue_;
  mutable std::vector<float> scratch_;
  std::vector<int> members_;  ///< the world rank of each rank of this group
  unsigned polls_ = 0;
  bool contained_ = false;       ///< failures stay in this group (contain_failures)
  mutable bool broken_ = false;  ///< a contained failure ended it

  friend class Environment;
};

namespace detail {
inline std::shared_ptr<Communicator>& scoped_communicator() {
  thread_local std::shared_ptr<Communicator> c;
  return c;
}
}  // namespace detail

/// While alive, the fits and evaluations of this thread run over `c` (a group of ranks) instead of
/// MPI_COMM_WORLD: what a tasks:: pool sets around each task it runs on a group of ranks.
class Scope {
 public:
  /// Fits on this thread use `c` until the scope ends.
  explicit Scope(std::shared_ptr<Communicator> c) : previous_(std::move(detail::scoped_communicator())) {
    detail::scoped_communicator() = std::move(c);
  }
  ~Scope() { detail::scoped_communicator() = std::move(previous_); }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  std::shared_ptr<Communicator> previous_;
};

/// The communicator fits on this thread train over: an mpi::Scope's, or a new one over
/// MPI_COMM_WORLD (collective: every rank calls it).
inline std::shared_ptr<Communicator> current() {
  if (const auto& c = detail::scoped_communicator()) return c;
  return std::make_shared<Communicator>(Communicator::world());
}

// ---- Environment --------------------------------------------------------------------------------

inline Communicator*& Environment::job_communicator() {
  static Communicator* c = nullptr;
  return c;
}

inline Environment::Environment(int* argc, char*** argv) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      throw Error(ErrorKind::runtime, "MPI_Init_thread failed");
    owner_ = true;
  }
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  tessera::detail::this_process_writes().store(rank == 0);  // only rank 0 writes files
  if (!detail::job_channel()) {
    job_ = std::make_unique<detail::JobChannel>(MPI_COMM_WORLD);
    detail::job_channel() = job_.get();
    job_comm_.reset(new Communicator(job_->comm(), false));  // the job's own collectives: file writes
    job_communicator() = job_comm_.get();
    tessera::detail::file_write_runner().store(&Environment::collective_write);
  }
}

inline Environment::~Environment() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (job_) {
    tessera::detail::file_write_runner().store(nullptr);
    job_communicator() = nullptr;
  }
  if (finalised || (!owner_ && !job_)) return;
  if (!owner_) {  // MPI belongs to someone else: only close the channel
    job_comm_.reset();
    detail::job_channel() = nullptr;
    job_.reset();
    return;
  }
  if (job_) {
    // The ranks still waiting in an operation this rank will never join stop at once (after a
    // short grace), naming it and the error its program may have caught.
    std::string text = "rank " + std::to_string(job_->rank()) + " reached the end of its program";
    if (const std::string e = tessera::last_error(); !e.empty()) text += "; its last tessera error: " + e;
    if (!job_failed()) job_->announce_departure(text);
  }
  // Every rank must reach the end before any finalises: a rank waiting in MPI_Finalize cannot be
  // told that another failed, and a rank that finalises early leaves the others waiting.
  if (!job_failed() && !(job_ && all_ranks_arrive(*job_))) detail::job_failed_flag().store(true);
  if (job_failed()) {
    if (job_) job_->abandon();
    (void)job_comm_.release();  // nothing can be freed safely now: the job aborts
    std::fflush(stdout);
    std::fflush(stderr);
    // the other ranks received the notice too: let them write their own message first
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  job_comm_.reset();
  detail::job_channel() = nullptr;
  job_.reset();
  MPI_Finalize();
}

inline bool Environment::all_ranks_arrive(detail::JobChannel& job) {
  MPI_Request q = MPI_REQUEST_NULL;
  if (MPI_Ibarrier(job.comm(), &q) != MPI_SUCCESS) return false;
  double limit = 300.0;
  try {
    limit = timeout();
  } catch (const Error&) {  // an unreadable TESSERA_MPI_TIMEOUT: keep the default here
  }
  bool ok = true;
  double waited = 0.0;
  const bool arrived = detail::poll_until(
      [&] {
        int done = 0;
        ok = MPI_Test(&q, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS;
        job.poll([] { return std::string("reached the end of its program"); });
        if (job.failed_from() >= 0) ok = false;  // another rank failed: the job ends with an abort
        return !ok || done != 0;
      },
      limit, waited);
  if (arrived) return ok;
  std::fprintf(stderr,
               "tessera: rank %d of %d reached the end of the program and waited %.1f s for the other ranks; "
               "ending the job\n",
               job.rank(), job.size(), waited);
  return false;
}

inline void Environment::collective_write(const std::function<void()>& write) {
  Communicator* c = job_communicator();
  if (!c) {
    write();
    return;
  }
  // rank 0 writes; every rank learns whether the file is complete, or why not
  char status[detail::notice_length] = {};
  if (c->rank() == 0) {
    status[0] = 1;
    try {
      write();
    } catch (const Error& e) {
      status[0] = 2;
      status[1] = static_cast<char>(e.kind());
      std::snprintf(status + 2, sizeof status - 2, "%s", e.what() + 9);
    } catch (const std::exception& e) {
      status[0] = 2;
      status[1] = static_cast<char>(ErrorKind::io);
      std::snprintf(status + 2, sizeof status - 2, "%s", e.what());
    }
  }
  c->broadcast_bytes(status, sizeof status, 0, "completion of a file write");
  status[sizeof status - 1] = '\0';
  if (status[0] != 1)
    throw Error(static_cast<ErrorKind>(status[1]),
                std::string(status + 2) + " (rank 0 writes the files of an MPI job; every rank reports its failure)");
}

}  // namespace tessera::mpi
