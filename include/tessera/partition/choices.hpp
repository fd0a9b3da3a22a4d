// tessera/partition/choices.hpp - the Partition choices: what each worker holds of the model.
// `replicates` says whether the workers are data-parallel replicas of the whole model (then a
// Sync choice combines them). Their engines: engine/replicate.hpp (always there), and for
// Layerwise and Columnwise tessera/partition.hpp.
#pragma once

#include <concepts>
#include <cstddef>

namespace tessera {

/// The whole model on every worker: data parallelism.
struct Replicate {
  /// Shown in messages and progress lines.
  static constexpr const char* name = "Replicate";
  /// Every worker holds a whole replica.
  static constexpr bool replicates = true;
};

/// Megatron-style tensor-parallel dense layers (column / row pairs).
struct Columnwise {
  /// Shown in messages and progress lines.
  static constexpr const char* name = "Columnwise";
  /// Workers hold parts of the model, not replicas.
  static constexpr bool replicates = false;
};

// Pipeline schedules of Layerwise.
struct GPipe { static constexpr const char* name = "GPipe"; };    ///< fill-drain: all forwards, then all backwards
struct OneFOneB { static constexpr const char* name = "1F1B"; };  ///< one forward, one backward in the steady state
/// \var tessera::GPipe::name
/// Shown in messages and progress lines.
/// \var tessera::OneFOneB::name
/// Shown in messages and progress lines.

/// Pipeline stages with a schedule, on a grid of `Replicas` data-parallel pipelines (workers =
/// stages x Replicas). `Partition<Layerwise>` is `LayerwiseWith<OneFOneB, 1>`.
template <class Schedule = OneFOneB, std::size_t Replicas = 1>
struct LayerwiseWith {
  static_assert(std::same_as<Schedule, GPipe> || std::same_as<Schedule, OneFOneB>,
                "tessera: LayerwiseWith<Schedule, R> needs Schedule = GPipe or OneFOneB");
  static_assert(Replicas >= 1, "tessera: LayerwiseWith<Schedule, R> needs R >= 1 (data-parallel pipelines)");
  /// The micro-batch schedule, GPipe or OneFOneB.
  using schedule = Schedule;
  /// Data-parallel pipelines (workers = stages x replicas).
  static constexpr std::size_t replicas = Replicas;
  /// Shown in messages and progress lines.
  static constexpr const char* name = "Layerwise";
  /// Workers hold stages of the model, not replicas.
  static constexpr bool replicates = false;
};
using Layerwise = LayerwiseWith<>;  ///< pipeline stages, 1F1B

}  // namespace tessera
