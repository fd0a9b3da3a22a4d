// tessera/core/error.hpp - the exception kinds every user error is reported with.
#pragma once

#include <mutex>
#include <stdexcept>
#include <string>

namespace tessera {

/// What went wrong, so that callers can branch without parsing messages.
enum class ErrorKind {
  invalid_argument,  ///< a parameter out of its domain (negative batch size, empty layer list)
  shape,             ///< dimensions that do not fit together (features vs. model input)
  parse,             ///< malformed text input; the message names file:line:column
  io,                ///< a file that cannot be opened, read or written
  format,            ///< a binary file that is truncated, foreign or corrupted
  runtime,           ///< a failure while running (numerical breakdown, worker failure)
  resource,          ///< more memory than this process has (checked before a fit's first step)
};

inline const char* to_string(ErrorKind k) noexcept {
  switch (k) {
    case ErrorKind::invalid_argument: return "invalid argument";
    case ErrorKind::shape: return "shape mismatch";
    case ErrorKind::parse: return "parse error";
    case ErrorKind::io: return "I/O error";
    case ErrorKind::format: return "format error";
    case ErrorKind::runtime: return "runtime error";
    case ErrorKind::resource: return "not enough resources";
  }
  return "error";
}

namespace detail {
/// The message of the last Error this process raised: a rank of an MPI job that ends early (its
/// program caught the error and returned) passes it on to the ranks still waiting for it.
struct LastError {
  std::mutex mutex;
  std::string text;
};
inline LastError& last_error_record() {
  static LastError e;
  return e;
}
}  // namespace detail

/// The one exception type tessera throws for user errors. `what()` is a complete sentence that
/// names what and where; `kind()` allows programmatic handling.
class Error : public std::runtime_error {
 public:
  /// An error of `kind`; what() is "tessera: " followed by `message`.
  Error(ErrorKind kind, const std::string& message)
      : std::runtime_error("tessera: " + message), kind_(kind) {
    detail::LastError& last = detail::last_error_record();
    const std::lock_guard<std::mutex> lock(last.mutex);
    last.text = message.substr(0, 900);
  }
  /// What kind of error this is.
  [[nodiscard]] ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

/// The message of the last tessera::Error raised in this process (empty if none), without the
/// "tessera: " prefix.
inline std::string last_error() {
  detail::LastError& last = detail::last_error_record();
  const std::lock_guard<std::mutex> lock(last.mutex);
  return last.text;
}

namespace detail {
/// An error every rank (or GPU) of a job raises at the same step with the same message (the global
/// loss became NaN, say): no rank waits for another, so the ranks need not be told.
class CollectiveError : public Error {
 public:
  using Error::Error;
};

[[noreturn]] inline void fail(ErrorKind kind, const std::string& message) {
  throw Error(kind, message);
}
inline void require(bool ok, ErrorKind kind, const std::string& message) {
  if (!ok) throw Error(kind, message);
}
}  // namespace detail

}  // namespace tessera
