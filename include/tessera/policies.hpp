// tessera/policies.hpp - the choices of every policy family, with their family's concept checked
// right after each is defined. Choices whose machinery needs MPI, CUDA or NCCL are declared here as
// plain tags; their implementations live in tessera/mpi.hpp, tessera/cuda.hpp, tessera/nccl.hpp.
#pragma once

#include <concepts>
#include <cstddef>

#include "tessera/core/policy.hpp"
#include "tessera/device/cpu.hpp"

namespace tessera {

// DataSplit: which samples make up each step's global batch, and how it is cut between workers.
struct Uniform { static constexpr const char* name = "Uniform"; };        ///< data order; contiguous equal shards
struct Random { static constexpr const char* name = "Random"; };          ///< seeded shuffle, redrawn each epoch
struct Stratified { static constexpr const char* name = "Stratified"; };  ///< class proportions kept per batch

// Load: how batches are assembled.
struct Sequential { static constexpr const char* name = "Sequential"; };  ///< on the training thread
struct Prefetch { static constexpr const char* name = "Prefetch"; };      ///< background producer

// Partition: what each worker holds of the model.
struct Replicate { static constexpr const char* name = "Replicate"; };    ///< the whole model
struct Columnwise { static constexpr const char* name = "Columnwise"; };  ///< tensor-parallel dense layers
// Pipeline schedules of Layerwise (tessera/partition.hpp runs them).
struct GPipe { static constexpr const char* name = "GPipe"; };        ///< fill-drain: all forwards, then all backwards
struct OneFOneB { static constexpr const char* name = "1F1B"; };      ///< one forward, one backward in the steady state
/// Pipeline stages with a schedule, on a grid of `Replicas` data-parallel pipelines (workers =
/// stages x Replicas). `Partition<Layerwise>` is `LayerwiseWith<OneFOneB, 1>`.
template <class Schedule = OneFOneB, std::size_t Replicas = 1>
struct LayerwiseWith {
  static_assert(std::same_as<Schedule, GPipe> || std::same_as<Schedule, OneFOneB>,
                "tessera: LayerwiseWith<Schedule, R> needs Schedule = GPipe or OneFOneB");
  static_assert(Replicas >= 1, "tessera: LayerwiseWith<Schedule, R> needs R >= 1 (data-parallel pipelines)");
  using schedule = Schedule;
  static constexpr std::size_t replicas = Replicas;
  static constexpr const char* name = "Layerwise";
};
using Layerwise = LayerwiseWith<>;  ///< pipeline stages, 1F1B

// Reduce: how workers combine gradients.
struct ThreadAllreduce { static constexpr const char* name = "ThreadAllreduce"; };
struct MpiAllreduce { static constexpr const char* name = "MpiAllreduce"; };
struct NcclAllreduce { static constexpr const char* name = "NcclAllreduce"; };

// Sync: when workers combine.
struct EveryStep { static constexpr const char* name = "EveryStep"; };  ///< synchronous SGD
template <std::size_t K>
struct Periodic {  ///< local SGD: parameters averaged every K steps
  static_assert(K >= 1, "tessera: Sync<Periodic<K>> needs K >= 1 (steps between parameter averaging)");
  static constexpr std::size_t period = K;
  static constexpr const char* name = "Periodic";
};
struct Sharded { static constexpr const char* name = "Sharded"; };  ///< optimizer state sharded

// Device: Cpu is defined in device/cpu.hpp; Cuda's implementation is in tessera/cuda.hpp.
struct Cuda;

template <class C> concept SplitChoice = std::same_as<C, Uniform> || std::same_as<C, Random> || std::same_as<C, Stratified>;
template <class C> concept LoadChoice = std::same_as<C, Sequential> || std::same_as<C, Prefetch>;
template <class C> concept LayerwiseChoice = std::same_as<C, LayerwiseWith<typename C::schedule, C::replicas>>;
template <class C> concept PartitionChoice = std::same_as<C, Replicate> || LayerwiseChoice<C> || std::same_as<C, Columnwise>;
template <class C> concept ReduceChoice = std::same_as<C, ThreadAllreduce> || std::same_as<C, MpiAllreduce> || std::same_as<C, NcclAllreduce>;
template <class C> concept SyncChoice = std::same_as<C, EveryStep> || std::same_as<C, Sharded> || requires { C::period; };
template <class C> concept DeviceChoice = std::same_as<C, Cpu> || std::same_as<C, Cuda>;

static_assert(SplitChoice<Uniform> && SplitChoice<Random> && SplitChoice<Stratified>);
static_assert(LoadChoice<Sequential> && LoadChoice<Prefetch>);
static_assert(PartitionChoice<Replicate> && PartitionChoice<Layerwise> && PartitionChoice<Columnwise>);
static_assert(PartitionChoice<LayerwiseWith<GPipe>> && PartitionChoice<LayerwiseWith<OneFOneB, 2>> && !PartitionChoice<GPipe>);
static_assert(ReduceChoice<ThreadAllreduce> && ReduceChoice<MpiAllreduce> && ReduceChoice<NcclAllreduce>);
static_assert(SyncChoice<EveryStep> && SyncChoice<Periodic<4>> && SyncChoice<Sharded>);
static_assert(DeviceChoice<Cpu> && DeviceChoice<Cuda>);
static_assert(Policy<DataSplit<Random>> && PolicyOf<Reduce<NcclAllreduce>, family::reduce>);

/// The resolved policy set of a Trainer: every family's choice, defaults filled in, checked.
template <class... Ps>
struct PolicySet {
  static_assert((detail::check_trainer_argument<Ps>::value && ...));
  static_assert(detail::family_count<family::data_split, Ps...> <= 1, "tessera::Trainer: more than one DataSplit<...> policy; give at most one per family");
  static_assert(detail::family_count<family::load, Ps...> <= 1, "tessera::Trainer: more than one Load<...> policy; give at most one per family");
  static_assert(detail::family_count<family::partition, Ps...> <= 1, "tessera::Trainer: more than one Partition<...> policy; give at most one per family");
  static_assert(detail::family_count<family::reduce, Ps...> <= 1, "tessera::Trainer: more than one Reduce<...> policy; give at most one per family");
  static_assert(detail::family_count<family::sync, Ps...> <= 1, "tessera::Trainer: more than one Sync<...> policy; give at most one per family");
  static_assert(detail::family_count<family::device, Ps...> <= 1, "tessera::Trainer: more than one Device<...> policy; give at most one per family");

  using split = detail::choice_of<family::data_split, DataSplit<Uniform>, Ps...>;
  using load = detail::choice_of<family::load, Load<Sequential>, Ps...>;
  using partition = detail::choice_of<family::partition, Partition<Replicate>, Ps...>;
  using reduce = detail::choice_of<family::reduce, Reduce<ThreadAllreduce>, Ps...>;
  using sync = detail::choice_of<family::sync, Sync<EveryStep>, Ps...>;
  using device = detail::choice_of<family::device, Device<Cpu>, Ps...>;

  static_assert(SplitChoice<split>, "tessera::Trainer: DataSplit<X> needs X = Uniform, Random or Stratified");
  static_assert(LoadChoice<load>, "tessera::Trainer: Load<X> needs X = Sequential or Prefetch");
  static_assert(PartitionChoice<partition>, "tessera::Trainer: Partition<X> needs X = Replicate, Layerwise or Columnwise");
  static_assert(ReduceChoice<reduce>, "tessera::Trainer: Reduce<X> needs X = ThreadAllreduce, MpiAllreduce or NcclAllreduce");
  static_assert(SyncChoice<sync>, "tessera::Trainer: Sync<X> needs X = EveryStep, Periodic<K> or Sharded");
  static_assert(DeviceChoice<device>, "tessera::Trainer: Device<X> needs X = Cpu or Cuda");

  static_assert(!(std::same_as<reduce, NcclAllreduce> && std::same_as<device, Cpu>),
                "tessera::Trainer: Reduce<NcclAllreduce> requires Device<Cuda>; use Reduce<ThreadAllreduce> or "
                "Reduce<MpiAllreduce>, or add Device<Cuda>");
  static_assert(!(std::same_as<sync, Sharded> && !std::same_as<partition, Replicate>),
                "tessera::Trainer: Sync<Sharded> shards the optimizer state of replicas and needs Partition<Replicate>");
  static_assert(!(requires { sync::period; } && !std::same_as<partition, Replicate>),
                "tessera::Trainer: Sync<Periodic<K>> averages whole replicas and needs Partition<Replicate>");
};

}  // namespace tessera
