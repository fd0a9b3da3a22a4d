// tessera/core/error.hpp - the exception kinds every user error is reported with.
#pragma once

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
};

inline const char* to_string(ErrorKind k) noexcept {
  switch (k) {
    case ErrorKind::invalid_argument: return "invalid argument";
    case ErrorKind::shape: return "shape mismatch";
    case ErrorKind::parse: return "parse error";
    case ErrorKind::io: return "I/O error";
    case ErrorKind::format: return "format error";
    case ErrorKind::runtime: return "runtime error";
  }
  return "error";
}

/// The one exception type tessera throws for user errors. `what()` is a complete sentence that
/// names what and where; `kind()` allows programmatic handling.
class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message)
      : std::runtime_error("tessera: " + message), kind_(kind) {}
  [[nodiscard]] ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

namespace detail {
[[noreturn]] inline void fail(ErrorKind kind, const std::string& message) {
  throw Error(kind, message);
}
inline void require(bool ok, ErrorKind kind, const std::string& message) {
  if (!ok) throw Error(kind, message);
}
}  // namespace detail

}  // namespace tessera
