// tessera/comm/mpi_lane.hpp - MPI ranks as tessera communicators: MpiLane (one process, one lane:
// the Communicator concept over mpi::Communicator), MpiGroup (one worker per process: the
// partitioned engines across ranks) and MpiThreadsGroup (worker threads in every process: the
// data-parallel engine across ranks, comm/two_level.hpp). Only the MPI headers include this.
#pragma once

#include <algorithm>
#include <deque>
#include <mutex>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tessera/comm/concepts.hpp"
#include "tessera/comm/mpi_comm.hpp"
#include "tessera/comm/two_level.hpp"

namespace tessera::comm {

/// This process as one lane of an MPI communicator. Copies share the communicator and the
/// messages in flight; the lane's thread is the one that drives MPI (funnelled).
class MpiLane {
 public:
  /// Whether the lanes share one address space: they may then pass one buffer to a collective.
  static constexpr bool shared_memory = false;

  /// A lane on the processes of `c`, one lane per process.
  explicit MpiLane(std::shared_ptr<mpi::Communicator> c) : c_(std::move(c)), mail_(std::make_shared<Mail>()) {
    mail_->comm = c_.get();
  }

  /// This lane's rank among every lane of the group, 0 to size() - 1.
  [[nodiscard]] std::size_t rank() const { return static_cast<std::size_t>(c_->rank()); }
  /// Lanes of the group, those of every process together.
  [[nodiscard]] std::size_t size() const { return static_cast<std::size_t>(c_->size()); }
  /// This lane's rank among the lanes of its process.
  [[nodiscard]] std::size_t local_rank() const noexcept { return 0; }
  /// Lanes of this process in the group.
  [[nodiscard]] std::size_t local_size() const noexcept { return 1; }
  /// The MPI communicator it uses.
  [[nodiscard]] mpi::Communicator& native() const noexcept { return *c_; }

  /// Returns once every lane of the group has called it (`what` names the wait in messages); throws when
  /// the group failed.
  void barrier(const char* what = "barrier") { c_->barrier(what); }
  /// Returns once every lane of this process has called it.
  void local_barrier(const char* = "") {}
  /// Throws when the group failed; returns at once otherwise.
  void check(const char* what = "") { c_->check_notices("a wait", what); }

  /// out = scale x the sum over lanes of `in`, n floats (in == out allowed; shared-memory lanes may pass
  /// one `out`).
  void all_reduce(const float* in, float* out, std::size_t n, const char* what = "buffer", float scale = 1.0f) {
    if (in != out) std::copy(in, in + n, out);
    c_->all_reduce(out, n, what);
    if (scale != 1.0f) for (std::size_t i = 0; i < n; ++i) out[i] *= scale;
  }
  /// The sum over lanes of the n doubles of `p`, in place on every lane.
  void all_reduce(double* p, std::size_t n, const char* what = "values") { c_->all_reduce(p, n, what); }
  /// out[r] = the sum over lanes of in[r] for this rank's slice r of the n floats (comm::slice());
  /// returns r.
  detail::Range reduce_scatter(const float* in, float* out, std::size_t n, const char* what = "buffer") {
    if (in != out) std::copy(in, in + n, out);
    reduce_scatter_blocks(out, n, even_blocks(n), what);
    return slice(n, size(), rank());
  }
  /// Every lane's `p` ends whole, rank r giving slice r of the n floats.
  void all_gather(float* p, std::size_t n, const char* what = "buffer") { all_gather_blocks(p, n, even_blocks(n), what); }
  /// Lane `root`'s n floats of `p` to every lane.
  void broadcast(float* p, std::size_t n, std::size_t root, const char* what = "buffer") {
    c_->broadcast(p, n, static_cast<int>(root), what);
  }
  /// Rank r's block [bounds[r], bounds[r + 1]) of p summed over the ranks.
  void reduce_scatter_blocks(float* p, std::size_t n, std::span<const std::size_t> bounds, const char* what) {
    c_->reduce_scatter(p, n, bounds, what);
  }
  /// Like all_gather(), rank r giving [bounds[r], bounds[r + 1]) of the n floats.
  void all_gather_blocks(float* p, std::size_t n, std::span<const std::size_t> bounds, const char* what) {
    c_->all_gather(p, n, bounds, what);
  }

  /// Starts the sum over lanes of in[lo, hi) into out[lo, hi); neither may be touched before finish().
  void start_all_reduce(const float* in, float* out, std::size_t lo, std::size_t hi, const char* what = "bucket") {
    if (in != out) std::copy(in + lo, in + hi, out + lo);
    c_->start_all_reduce(out + lo, hi - lo, what);
  }
  /// Advances the sums started by start_all_reduce().
  void progress() { c_->progress(); }
  /// Completes every sum started by start_all_reduce().
  void finish(const char* = "") { c_->finish(); }

  /// A buffer of `n` floats for send(), a recycled one when there is one.
  [[nodiscard]] std::vector<float> buffer(std::size_t n) {
    reap();
    std::vector<float> v;
    if (!mail_->free.empty()) {
      v = std::move(mail_->free.back());
      mail_->free.pop_back();
    }
    v.resize(n);
    return v;
  }
  /// Gives a received buffer back for reuse.
  void recycle(std::vector<float>&& v) { mail_->free.push_back(std::move(v)); }
  /// Posted at once; the buffer is kept until the message has left (messages between two ranks
  /// arrive in the order sent).
  void send(std::size_t peer, int tag, std::vector<float>&& data, const char* = "") {
    mail_->pending.push_back({MPI_REQUEST_NULL, std::move(data), static_cast<int>(peer)});
    auto& p = mail_->pending.back();
    p.request = c_->start_send({p.data.data(), p.data.size(), p.peer, tag});
    reap();
  }
  /// Blocks until the message `tag` of `count` floats from lane `peer` arrives; throws when the group
  /// failed.
  std::vector<float> recv(std::size_t peer, int tag, std::size_t count, const char* what = "message") {
    std::vector<float> data = buffer(count);
    const mpi::Transfer t{data.data(), count, static_cast<int>(peer), tag};
    c_->exchange({}, std::span<const mpi::Transfer>(&t, 1), what);
    return data;
  }
  /// Waits until every posted send has left.
  void flush(const char* what = "message") {
    for (auto& p : mail_->pending) c_->wait(std::span<MPI_Request>(&p.request, 1), what, p.peer);
    for (auto& p : mail_->pending) mail_->free.push_back(std::move(p.data));
    mail_->pending.clear();
  }

  /// The sub-group of the lanes passing the same `color`, ranked by `key`; every lane calls it.
  MpiLane split(std::size_t color, std::size_t key) {
    return MpiLane(std::make_shared<mpi::Communicator>(c_->split(static_cast<int>(color), static_cast<int>(key))));
  }

 private:
  struct Pending {
    MPI_Request request;
    std::vector<float> data;
    int peer;
  };
  struct Mail {
    std::deque<Pending> pending;
    std::vector<std::vector<float>> free;
    const mpi::Communicator* comm = nullptr;  // alive as long as a lane holding this mail is
    ~Mail() {
      // a completed exchange leaves nothing pending; after a failure the job aborts, and after a
      // failure kept inside the group the sends are left unfinished
      if (pending.empty() || mpi::job_failed()) return;
      if (comm && comm->broken()) {  // sends of a failed task may be in flight: their buffers stay
        static std::mutex m;
        static std::vector<std::deque<Pending>> kept;
        const std::lock_guard<std::mutex> lock(m);
        kept.push_back(std::move(pending));
        return;
      }
      int finalised = 0;
      MPI_Finalized(&finalised);
      if (!finalised)
        for (auto& p : pending) MPI_Wait(&p.request, MPI_STATUS_IGNORE);
    }
  };
  void reap() {
    while (!mail_->pending.empty() && c_->test(std::span<MPI_Request>(&mail_->pending.front().request, 1))) {
      mail_->free.push_back(std::move(mail_->pending.front().data));
      mail_->pending.pop_front();
    }
  }
  [[nodiscard]] std::vector<std::size_t> even_blocks(std::size_t n) const {
    std::vector<std::size_t> b(size() + 1, 0);
    for (std::size_t r = 0; r < size(); ++r) b[r + 1] = slice(n, size(), r).hi;
    return b;
  }

  std::shared_ptr<mpi::Communicator> c_;
  std::shared_ptr<Mail> mail_;
};

static_assert(Communicator<MpiLane>);

namespace detail_mpi {
/// What every process group over MPI_COMM_WORLD (or the communicator of an mpi::Scope) does on
/// the main thread.
class World {
 public:
  World() : world_(main_thread_communicator()) {}
  [[nodiscard]] std::size_t processes() const { return static_cast<std::size_t>(world_->size()); }
  [[nodiscard]] std::size_t process() const { return static_cast<std::size_t>(world_->rank()); }
  void agree(const std::string& what, const std::string& value) { world_->agree(what, value); }
  void broadcast(float* p, std::size_t n) { world_->broadcast(p, n, 0, "initial parameters"); }
  void sum(double* p, std::size_t n, const char* what) { world_->all_reduce(p, n, what); }
  /// `message` names this rank when it starts with "rank "; otherwise it is prefixed with it.
  void fail(const std::string& message) noexcept {
    if (mpi::job_failed()) return;
    world_->notify_failure(message.rfind("rank ", 0) == 0 ? message : "rank " + std::to_string(world_->rank()) + ": " + message);
  }
  [[nodiscard]] const std::shared_ptr<mpi::Communicator>& communicator() const noexcept { return world_; }

 private:
  /// MPI runs funnelled through the thread that initialised it: a fit across ranks started on
  /// another thread (a slot of tasks::run, say) is refused before it calls MPI.
  static std::shared_ptr<mpi::Communicator> main_thread_communicator() {
    int main = 0;
    MPI_Is_thread_main(&main);
    if (!main)
      throw Error(ErrorKind::invalid_argument,
                  "a fit across MPI ranks must run on the thread that initialised MPI (MPI is funnelled through it); "
                  "tasks::run runs its tasks on threads of their own: train tasks across ranks with "
                  "tasks::run_on_ranks, or give tasks::run a trainer on threads");
    return mpi::current();
  }
  std::shared_ptr<mpi::Communicator> world_;
};
}  // namespace detail_mpi

/// One worker per process of MPI_COMM_WORLD (the partitioned engines across ranks).
class MpiGroup : public detail_mpi::World {
 public:
  MpiGroup() : lane_(communicator()) {}
  /// Lanes (worker threads) of this process.
  [[nodiscard]] std::size_t lanes() const noexcept { return 1; }
  /// The handle lane `w` uses (made on the calling thread, used on lane w's).
  [[nodiscard]] MpiLane lane(std::size_t) const { return lane_; }
  /// The device lane `w` drives (GPU index; 0 on the CPU).
  [[nodiscard]] int device(std::size_t) const noexcept { return 0; }
  /// Wakes every lane of this process waiting in the group; they throw.
  void abort() noexcept {}
  /// Clears a failure, before the lanes of a new run start.
  void reset() {}

 private:
  MpiLane lane_;
};

/// `workers` threads in every process of MPI_COMM_WORLD (the data-parallel engine across ranks).
class MpiThreadsGroup : public detail_mpi::World, public TwoLevelGroup<MpiLane> {
 public:
  /// `workers` threads in this process, joined to the other processes over MPI.
  explicit MpiThreadsGroup(std::size_t workers) : TwoLevelGroup<MpiLane>(workers, MpiLane(communicator())) {}
  using TwoLevelGroup<MpiLane>::lanes;
  using TwoLevelGroup<MpiLane>::lane;
  using TwoLevelGroup<MpiLane>::device;
  using TwoLevelGroup<MpiLane>::abort;
  using TwoLevelGroup<MpiLane>::reset;
  using detail_mpi::World::processes;
  using detail_mpi::World::process;
};

static_assert(Group<MpiGroup> && Group<MpiThreadsGroup>);

}  // namespace tessera::comm
