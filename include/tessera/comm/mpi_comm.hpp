// tessera/comm/mpi_comm.hpp - collectives between processes over MPI (Open MPI), with every
// failure reported as a tessera::Error naming the call, the rank and MPI's own message. Only
// tessera/mpi.hpp and this header include <mpi.h>.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>
#include <vector>

#include "tessera/core/error.hpp"

namespace tessera::mpi {

/// Initialises MPI (threads funnelled through the main thread) unless something else already did,
/// and finalises it at the end of its life if it initialised it.
class Environment {
 public:
  Environment(int* argc = nullptr, char*** argv = nullptr) {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (!initialised) {
      int provided = 0;
      if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        throw Error(ErrorKind::runtime, "MPI_Init_thread failed");
      owner_ = true;
    }
  }
  ~Environment() {
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (owner_ && !finalised) MPI_Finalize();
  }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

 private:
  bool owner_ = false;
};

/// A group of ranks. Collectives are called by every rank of the group, in the same order.
class Communicator {
 public:
  /// Every process of the job.
  static Communicator world() { return Communicator(MPI_COMM_WORLD, false); }

  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  Communicator(Communicator&& o) noexcept : comm_(o.comm_), owned_(o.owned_), rank_(o.rank_), size_(o.size_) {
    o.owned_ = false;
  }
  ~Communicator() {
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (owned_ && !finalised) MPI_Comm_free(&comm_);
  }

  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept { return size_; }
  [[nodiscard]] MPI_Comm native() const noexcept { return comm_; }

  /// In place: buf[0..n) becomes the sum over ranks (in chunks below INT_MAX elements).
  void all_reduce(float* buf, std::size_t n) const { chunked(buf, n, MPI_FLOAT, "MPI_Allreduce"); }
  void all_reduce(double* buf, std::size_t n) const { chunked(buf, n, MPI_DOUBLE, "MPI_Allreduce"); }

  /// Copies `root`'s buf[0..n) to every rank.
  void broadcast(float* buf, std::size_t n, int root = 0) const {
    for (std::size_t done = 0; done < n;) {
      const int count = static_cast<int>(std::min<std::size_t>(n - done, INT_MAX));
      check(MPI_Bcast(buf + done, count, MPI_FLOAT, root, comm_), "MPI_Bcast");
      done += static_cast<std::size_t>(count);
    }
  }

  void barrier() const { check(MPI_Barrier(comm_), "MPI_Barrier"); }

  /// Splits the group into sub-groups: ranks with the same `color` form one, ordered by `key`
  /// (e.g. data-parallel replicas x pipeline stages).
  [[nodiscard]] Communicator split(int color, int key) const {
    MPI_Comm sub = MPI_COMM_NULL;
    check(MPI_Comm_split(comm_, color, key, &sub), "MPI_Comm_split");
    return Communicator(sub, true);
  }

  /// Checks that every rank passes the same `value` for `what` (a model signature, the data
  /// dimensions...). On a mismatch every rank throws the same Error, naming the first rank that
  /// differs from rank 0 and both values, so no rank goes on to wait in a collective alone.
  void agree(const std::string& what, const std::string& value) const {
    const std::uint64_t mine = hash(value);
    std::vector<std::uint64_t> all(static_cast<std::size_t>(size_));
    check(MPI_Allgather(&mine, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, comm_), "MPI_Allgather");
    int differs = -1;
    for (int r = 1; r < size_ && differs < 0; ++r)
      if (all[static_cast<std::size_t>(r)] != all[0]) differs = r;
    if (differs < 0) return;
    const std::string first = broadcast_string(value, 0), other = broadcast_string(value, differs);
    throw Error(ErrorKind::invalid_argument, "ranks disagree on the " + what + ": rank 0 has \"" + first + "\", rank " +
                                                 std::to_string(differs) + " has \"" + other + "\"");
  }

 private:
  Communicator(MPI_Comm c, bool owned) : comm_(c), owned_(owned) {
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);  // errors come back as codes, then as Error
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }

  void check(int code, const char* call) const {
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    throw Error(ErrorKind::runtime, std::string(call) + " failed on rank " + std::to_string(rank_) + " of " +
                                        std::to_string(size_) + ": " + std::string(text, static_cast<std::size_t>(len)));
  }

  template <class T>
  void chunked(T* buf, std::size_t n, MPI_Datatype type, const char* call) const {
    for (std::size_t done = 0; done < n;) {
      const int count = static_cast<int>(std::min<std::size_t>(n - done, INT_MAX));
      check(MPI_Allreduce(MPI_IN_PLACE, buf + done, count, type, MPI_SUM, comm_), call);
      done += static_cast<std::size_t>(count);
    }
  }

  std::string broadcast_string(const std::string& value, int root) const {
    std::uint64_t len = value.size();
    check(MPI_Bcast(&len, 1, MPI_UINT64_T, root, comm_), "MPI_Bcast");
    std::string s = rank_ == root ? value : std::string(static_cast<std::size_t>(len), '\0');
    check(MPI_Bcast(s.data(), static_cast<int>(len), MPI_CHAR, root, comm_), "MPI_Bcast");
    return s;
  }

  static std::uint64_t hash(const std::string& s) {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  bool owned_ = false;
  int rank_ = 0, size_ = 1;
};

}  // namespace tessera::mpi
