// tessera/tasks/pool.hpp - task parallelism: many independent trainings (the folds of a
// cross-validation, the points of a grid, the members of an ensemble) at once on the threads of
// one process. tessera/tasks/mpi.hpp runs the same tasks over MPI ranks and groups of ranks.
//
// A task is a call task(Context) -> R. The pool runs `slots` tasks at a time, each on its own
// thread, and hands out the next task index to whichever slot is free first (dynamic balancing:
// uneven tasks do not wait for each other). Each slot owns `threads_per_task` cores: a Trainer
// built inside a task with `workers = 0` takes that many workers, and OpenMP kernels and an OpenMP
// BLAS on the slot's thread use that many threads, so slots x threads_per_task never exceeds the
// cores the pool was given. A task that throws is recorded with its error; the other tasks run on.
// Outcomes come back in task order, whatever order the tasks finished in.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__linux__)
#include <sched.h>
#endif

#include "tessera/core/error.hpp"

namespace tessera {

namespace detail {
/// The cores a task running on this thread may use (0: not inside a task). A Trainer with
/// `workers = 0` takes this many workers instead of one per hardware thread.
inline std::size_t& task_thread_budget() noexcept {
  thread_local std::size_t budget = 0;
  return budget;
}
/// The hardware threads this process may run on (at least 1): its CPU affinity on Linux (taskset,
/// cpusets, mpirun's binding), the machine's hardware threads elsewhere.
inline std::size_t hardware_threads() noexcept {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<std::size_t>(n);
  }
#endif
  const unsigned hw = std::thread::hardware_concurrency();
  return hw ? hw : 1;
}
}  // namespace detail

namespace tasks {

/// Where a task runs, passed to it.
struct Context {
  std::size_t index = 0;    ///< the task's index in [0, tasks)
  std::size_t slot = 0;     ///< the pool slot (thread) or rank group that runs it
  std::size_t threads = 1;  ///< cores the task may use (a Trainer's `workers = 0` takes this many)
  std::size_t ranks = 1;    ///< ranks training it together (1 on threads; the group size under MPI)
};

/// One task's result, or why it has none.
template <class R>
struct Outcome {
  std::size_t index = 0;     ///< the task's index
  std::optional<R> value{};  ///< its result, when it returned one
  std::string error{};       ///< what it threw, when it threw
  double seconds = 0.0;      ///< its wall time
  std::size_t slot = 0;      ///< the slot or rank group that ran it
  /// Whether the task returned a result.
  [[nodiscard]] bool ok() const noexcept { return value.has_value(); }
};

/// How a pool shares the cores of a process.
struct PoolOptions {
  /// Tasks at once; 0: cores / threads_per_task (at least 1).
  std::size_t slots = 0;
  /// Cores each task uses; 0: cores / slots (at least 1).
  std::size_t threads_per_task = 0;
  /// The cores the pool shares out; 0: the hardware threads of the machine (or, inside a task,
  /// that task's share).
  std::size_t cores = 0;
};

namespace detail_pool {
/// (slots, threads per task) from the options: slots x threads <= cores unless both were set.
inline std::pair<std::size_t, std::size_t> shape(const PoolOptions& o, std::size_t tasks) {
  const std::size_t budget = tessera::detail::task_thread_budget();
  const std::size_t cores = o.cores ? o.cores : (budget ? budget : tessera::detail::hardware_threads());
  std::size_t slots = o.slots, threads = o.threads_per_task;
  if (!slots && !threads) threads = 1;
  if (!slots) slots = std::max<std::size_t>(1, cores / threads);
  slots = std::max<std::size_t>(1, std::min(slots, std::max<std::size_t>(tasks, 1)));  // no idle slots
  if (!threads) threads = std::max<std::size_t>(1, cores / slots);  // the cores of the slots that run
  tessera::detail::require(threads <= 4096 && slots <= 4096, ErrorKind::invalid_argument,
                           "tasks::run: " + std::to_string(slots) + " slots of " + std::to_string(threads) +
                               " threads is above the limit of 4096 each (was a count set from a negative number?)");
  return {slots, threads};
}

/// While alive, the calling thread is a task's: its Trainers take `threads` workers for
/// `workers = 0`, and its OpenMP regions (kernels, an OpenMP BLAS) `threads` threads.
class TaskThreads {
 public:
  explicit TaskThreads(std::size_t threads) : previous_(tessera::detail::task_thread_budget()) {
    tessera::detail::task_thread_budget() = threads;
#if defined(_OPENMP)
    omp_previous_ = omp_get_max_threads();
    omp_set_num_threads(static_cast<int>(threads));
#endif
  }
  ~TaskThreads() {
    tessera::detail::task_thread_budget() = previous_;
#if defined(_OPENMP)
    omp_set_num_threads(omp_previous_);
#endif
  }
  TaskThreads(const TaskThreads&) = delete;
  TaskThreads& operator=(const TaskThreads&) = delete;

 private:
  std::size_t previous_;
  int omp_previous_ = 1;
};

/// Runs task(context) into `out`, recording its time and, when it throws, its error.
template <class R, class F>
void run_one(F& task, const Context& c, Outcome<R>& out) {
  const auto t0 = std::chrono::steady_clock::now();
  out.index = c.index;
  out.slot = c.slot;
  try {
    TaskThreads scope(c.threads);
    out.value.emplace(task(c));
  } catch (const std::exception& e) {
    out.error = e.what();
  } catch (...) {
    out.error = "an exception that is not a std::exception";
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace detail_pool

/// The result type of a task function F.
template <class F>
using result_of = std::remove_cvref_t<std::invoke_result_t<F&, const Context&>>;

/// Runs tasks 0 .. count-1 (task(Context) -> R) on the threads of this process and returns their
/// outcomes in task order. A task that throws leaves its error in its outcome; the others run on.
/// With one slot the tasks run one after another on the calling thread; with more, each slot is a
/// thread of its own.
/// Throws Error (ErrorKind::invalid_argument) only for a task count above 2^40.
template <class F, class R = result_of<F>>
std::vector<Outcome<R>> run(std::size_t count, F&& task, PoolOptions options = {}) {
  tessera::detail::require(count <= (std::size_t{1} << 40), ErrorKind::invalid_argument,
                           "tasks::run: " + std::to_string(count) + " tasks is above the limit of 2^40");
  const std::pair<std::size_t, std::size_t> shape = detail_pool::shape(options, count);
  const std::size_t slots = shape.first, threads = shape.second;  // (captured below: not a structured binding)
  std::vector<Outcome<R>> out(count);
  std::atomic<std::size_t> next{0};
  const auto work = [&](std::size_t slot) {
    for (std::size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < count;) {
      Context c;
      c.index = i;
      c.slot = slot;
      c.threads = threads;
      detail_pool::run_one<R>(task, c, out[i]);
    }
  };
  if (slots == 1) {  // one after another on the calling thread
    work(0);
    return out;
  }
  std::vector<std::thread> pool;  // every slot a thread of its own; the caller waits
  pool.reserve(slots);
  try {
    for (std::size_t s = 0; s < slots; ++s) pool.emplace_back(work, s);
  } catch (const std::system_error& e) {  // no more threads: the started slots take no new task
    next.store(count);
    for (auto& t : pool) t.join();
    throw Error(ErrorKind::resource, "tasks::run: cannot start slot " + std::to_string(pool.size()) + " of " +
                                         std::to_string(slots) + " (" + e.what() + "); use fewer slots");
  }
  for (auto& t : pool) t.join();
  return out;
}

// ---- results across processes: a task's result travels as bytes

/// How a result type travels between processes (tasks over MPI ranks): arithmetic types,
/// std::string, std::vector of a codec type, std::pair, and any type that specialises Codec
/// with `static void write(std::string&, const T&)` and `static T read(std::string_view&)`.
template <class T, class = void>
struct Codec;

namespace detail_codec {
[[noreturn]] inline void short_input(const char* what) {
  throw Error(ErrorKind::format, std::string("tasks::Codec: a task result ends early (reading ") + what + ")");
}
template <class T>
void put(std::string& out, const T& v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}
template <class T>
T take(std::string_view& in, const char* what) {
  if (in.size() < sizeof(T)) short_input(what);
  T v;
  std::memcpy(&v, in.data(), sizeof(T));
  in.remove_prefix(sizeof(T));
  return v;
}
}  // namespace detail_codec

/// Numbers and enumerations: their bytes.
template <class T>
struct Codec<T, std::enable_if_t<(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) || std::is_enum_v<T>>> {
  /// Appends v's bytes.
  static void write(std::string& out, const T& v) { detail_codec::put(out, v); }
  /// Takes a value off the front of `in`; Error (format) when too few bytes are left.
  static T read(std::string_view& in) { return detail_codec::take<T>(in, "a number"); }
};

/// Booleans: one byte, 0 or 1.
template <>
struct Codec<bool> {
  /// Appends 0 or 1.
  static void write(std::string& out, bool v) { out.push_back(v ? '\1' : '\0'); }
  /// Takes one byte, which must be 0 or 1; Error (format) otherwise.
  static bool read(std::string_view& in) {
    const auto b = detail_codec::take<std::uint8_t>(in, "a flag");
    if (b > 1) throw Error(ErrorKind::format, "tasks::Codec: a flag byte is " + std::to_string(b) + ", expected 0 or 1");
    return b == 1;
  }
};

/// Strings: a length, then the bytes.
template <>
struct Codec<std::string> {
  /// Appends the length and the bytes.
  static void write(std::string& out, const std::string& s) {
    detail_codec::put<std::uint64_t>(out, s.size());
    out += s;
  }
  /// Takes a string off the front of `in`; Error (format) when it ends early.
  static std::string read(std::string_view& in) {
    const auto n = detail_codec::take<std::uint64_t>(in, "a string's length");
    if (n > in.size()) detail_codec::short_input("a string");
    std::string s(in.substr(0, static_cast<std::size_t>(n)));
    in.remove_prefix(static_cast<std::size_t>(n));
    return s;
  }
};

/// Lists: a count, then each element.
template <class T>
struct Codec<std::vector<T>> {
  /// Appends the count and the elements.
  static void write(std::string& out, const std::vector<T>& v) {
    detail_codec::put<std::uint64_t>(out, v.size());
    for (const T& x : v) Codec<T>::write(out, x);
  }
  /// Takes a list off the front of `in`; Error (format) when it ends early.
  static std::vector<T> read(std::string_view& in) {
    const auto n = detail_codec::take<std::uint64_t>(in, "a list's length");
    if (n > in.size()) detail_codec::short_input("a list");  // every element takes at least one byte
    std::vector<T> v;  // grown as elements are read, never sized by the count alone
    for (std::uint64_t i = 0; i < n; ++i) v.push_back(Codec<T>::read(in));
    return v;
  }
};

/// Pairs: the first, then the second.
template <class A, class B>
struct Codec<std::pair<A, B>> {
  /// Appends both.
  static void write(std::string& out, const std::pair<A, B>& p) {
    Codec<A>::write(out, p.first);
    Codec<B>::write(out, p.second);
  }
  /// Takes a pair off the front of `in`.
  static std::pair<A, B> read(std::string_view& in) {
    A a = Codec<A>::read(in);
    return {std::move(a), Codec<B>::read(in)};
  }
};

/// Whether results of type T can travel between processes.
template <class T>
concept Transferable = requires(std::string& out, const T& v, std::string_view& in) {
  Codec<T>::write(out, v);
  { Codec<T>::read(in) } -> std::convertible_to<T>;
};

/// Outcomes as bytes (how a group of ranks reports its tasks): a count, then per outcome its
/// index, slot, seconds, error and, when it has one, its value.
template <class R>
  requires Transferable<R>
std::string encode_outcomes(const std::vector<Outcome<R>>& done) {
  std::string out;
  Codec<std::uint64_t>::write(out, done.size());
  for (const Outcome<R>& o : done) {
    Codec<std::uint64_t>::write(out, o.index);
    Codec<std::uint64_t>::write(out, o.slot);
    Codec<double>::write(out, o.seconds);
    Codec<std::string>::write(out, o.error);
    Codec<bool>::write(out, o.ok());
    if (o.ok()) Codec<R>::write(out, *o.value);
  }
  return out;
}

/// Reads outcomes written by encode_outcomes into `all` (one slot per task), marking each in
/// `seen`. Throws Error (ErrorKind::format) for bytes that end early, an index past `all`, a task
/// reported twice, or bytes left over.
template <class R>
  requires Transferable<R>
void decode_outcomes(std::string_view in, std::vector<Outcome<R>>& all, std::vector<bool>& seen) {
  tessera::detail::require(seen.size() == all.size(), ErrorKind::invalid_argument,
                           "tasks::decode_outcomes: one mark per task needed");
  const auto n = Codec<std::uint64_t>::read(in);
  tessera::detail::require(n <= in.size(), ErrorKind::format,
                           "tasks::Codec: a task result ends early (reading " + std::to_string(n) + " outcomes)");
  for (std::uint64_t k = 0; k < n; ++k) {
    Outcome<R> o;
    const auto index = Codec<std::uint64_t>::read(in);
    tessera::detail::require(index < all.size() && !seen[static_cast<std::size_t>(index)], ErrorKind::format,
                             "tasks::run_on_ranks: a group reported task " + std::to_string(index) +
                                 (index < all.size() ? " twice" : ", which does not exist"));
    o.index = static_cast<std::size_t>(index);
    o.slot = static_cast<std::size_t>(Codec<std::uint64_t>::read(in));
    o.seconds = Codec<double>::read(in);
    o.error = Codec<std::string>::read(in);
    if (Codec<bool>::read(in)) o.value.emplace(Codec<R>::read(in));
    seen[o.index] = true;
    all[o.index] = std::move(o);
  }
  tessera::detail::require(in.empty(), ErrorKind::format,
                           "tasks::Codec: " + std::to_string(in.size()) + " bytes after the last outcome");
}

}  // namespace tasks
}  // namespace tessera
