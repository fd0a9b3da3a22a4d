// tessera/load/choices.hpp - the Load choices: how a step's batches are assembled. A choice is any
// type with a `name` and `prefetch` (whether a background producer gathers the next steps' rows).
#pragma once

namespace tessera {

/// On the training threads, as each step needs them.
struct Sequential {
  /// Shown in messages and progress lines.
  static constexpr const char* name = "Sequential";
  /// Batches are gathered when needed.
  static constexpr bool prefetch = false;
};

/// A background producer gathers the next steps' rows (double-buffered); on a GPU the copies to
/// the device overlap the step before.
struct Prefetch {
  /// Shown in messages and progress lines.
  static constexpr const char* name = "Prefetch";
  /// Batches are gathered ahead by a background thread.
  static constexpr bool prefetch = true;
};

}  // namespace tessera
