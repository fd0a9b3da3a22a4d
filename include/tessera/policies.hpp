// tessera/policies.hpp - every policy family's concept, the shipped choices (each checked against
// its family's concept right after it is included), and PolicySet: a Trainer's resolved choices
// with the one table of rules that refuses, when the Trainer type is named, every combination
// that cannot run.
//
// The concepts are structural: a type of the user's that has what a family asks for is a choice
// of that family (a DataSplit with `name` and `order(data, seed, epoch)`, say). Choices whose
// machinery needs MPI, CUDA or NCCL are plain tags here; their machinery comes with
// tessera/mpi.hpp, tessera/cuda.hpp and tessera/nccl.hpp.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tessera/core/policy.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/device/cpu.hpp"
#include "tessera/load/choices.hpp"
#include "tessera/partition/choices.hpp"
#include "tessera/reduce/choices.hpp"
#include "tessera/split/choices.hpp"
#include "tessera/sync/sync.hpp"

namespace tessera {

// Device: Cpu is defined in device/cpu.hpp; Cuda's definition is in tessera/cuda.hpp.
struct Cuda;

template <class C>
concept SplitChoice = requires(const data::Dataset& d, std::uint64_t seed, std::uint32_t epoch) {
  { C::name } -> std::convertible_to<const char*>;
  { C::order(d, seed, epoch) } -> std::same_as<std::vector<std::size_t>>;
};
template <class C>
concept LoadChoice = requires {
  { C::name } -> std::convertible_to<const char*>;
  { C::prefetch } -> std::convertible_to<bool>;
};
template <class C>
concept LayerwiseChoice = std::same_as<C, LayerwiseWith<typename C::schedule, C::replicas>>;
template <class C>
concept PartitionChoice = requires {
  { C::name } -> std::convertible_to<const char*>;
  { C::replicates } -> std::convertible_to<bool>;
};
template <class C>
concept ReduceChoice = requires {
  { C::name } -> std::convertible_to<const char*>;
  { C::across_processes } -> std::convertible_to<bool>;
  { C::gpu } -> std::convertible_to<bool>;
};
/// Cuda is complete only with tessera/cuda.hpp; any other device is checked structurally.
template <class C>
concept DeviceChoice = std::same_as<C, Cuda> || DeviceType<C>;

static_assert(SplitChoice<Uniform> && SplitChoice<Random> && SplitChoice<Stratified>);
static_assert(LoadChoice<Sequential> && LoadChoice<Prefetch>);
static_assert(PartitionChoice<Replicate> && PartitionChoice<Layerwise> && PartitionChoice<Columnwise>);
static_assert(PartitionChoice<LayerwiseWith<GPipe>> && PartitionChoice<LayerwiseWith<OneFOneB, 2>> && !PartitionChoice<GPipe>);
static_assert(ReduceChoice<ThreadAllreduce> && ReduceChoice<MpiAllreduce> && ReduceChoice<NcclAllreduce>);
static_assert(SyncChoice<EveryStep> && SyncChoice<Periodic<4>> && SyncChoice<Sharded>);
static_assert(DeviceChoice<Cpu> && DeviceChoice<Cuda>);
static_assert(Policy<DataSplit<Random>> && PolicyOf<Reduce<NcclAllreduce>, family::reduce>);

namespace detail {
template <class D>
inline constexpr bool is_gpu = std::same_as<D, Cuda>;
}  // namespace detail

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

  /// The DataSplit given, or DataSplit<Uniform>.
  using split = detail::choice_of<family::data_split, DataSplit<Uniform>, Ps...>;
  /// The Load given, or Load<Sequential>.
  using load = detail::choice_of<family::load, Load<Sequential>, Ps...>;
  /// The Partition given, or Partition<Replicate>.
  using partition = detail::choice_of<family::partition, Partition<Replicate>, Ps...>;
  /// The Reduce given, or Reduce<ThreadAllreduce>.
  using reduce = detail::choice_of<family::reduce, Reduce<ThreadAllreduce>, Ps...>;
  /// The Sync given, or Sync<EveryStep>.
  using sync = detail::choice_of<family::sync, Sync<EveryStep>, Ps...>;
  /// The Device given, or Device<Cpu>.
  using device = detail::choice_of<family::device, Device<Cpu>, Ps...>;

  static_assert(SplitChoice<split>, "tessera::Trainer: DataSplit<X> needs X = Uniform, Random or Stratified, or a type "
                                    "with `name` and a static `order(const data::Dataset&, std::uint64_t seed, "
                                    "std::uint32_t epoch)` returning std::vector<std::size_t>");
  static_assert(LoadChoice<load>, "tessera::Trainer: Load<X> needs X = Sequential or Prefetch, or a type with `name` "
                                  "and `static constexpr bool prefetch`");
  static_assert(PartitionChoice<partition>, "tessera::Trainer: Partition<X> needs X = Replicate, Layerwise or "
                                            "Columnwise, or a type with `name` and `static constexpr bool replicates`");
  static_assert(ReduceChoice<reduce>, "tessera::Trainer: Reduce<X> needs X = ThreadAllreduce, MpiAllreduce or "
                                      "NcclAllreduce, or a type with `name`, `across_processes` and `gpu`");
  static_assert(SyncChoice<sync>, "tessera::Trainer: Sync<X> needs X = EveryStep, Periodic<K> or Sharded, or a type "
                                  "with `name`, `scope`, `overlaps` and `period` (sync/concepts.hpp)");
  static_assert(DeviceChoice<device>, "tessera::Trainer: Device<X> needs X = Cpu or Cuda, or a type that models "
                                      "tessera::DeviceType (device/concepts.hpp)");

  // ---- the rules: every combination that cannot run, refused here, once -------------------------
  /// True when the device is a GPU.
  static constexpr bool gpu = detail::is_gpu<device>;
  static_assert(!(reduce::gpu && !gpu),
                "tessera::Trainer: Reduce<NcclAllreduce> requires Device<Cuda>; use Reduce<ThreadAllreduce> or "
                "Reduce<MpiAllreduce>, or add Device<Cuda>");
  static_assert(!(gpu && reduce::across_processes && !reduce::gpu),
                "tessera::Trainer: Device<Cuda> trains with Reduce<ThreadAllreduce> (one GPU) or Reduce<NcclAllreduce> "
                "(several); Reduce<MpiAllreduce> is CPU-only");
  static_assert(!(std::same_as<sync, Sharded> && !partition::replicates),
                "tessera::Trainer: Sync<Sharded> shards the optimizer state of replicas and needs Partition<Replicate>");
  static_assert(!(sync::period != 0 && !partition::replicates),
                "tessera::Trainer: Sync<Periodic<K>> averages whole replicas and needs Partition<Replicate>");
  static_assert(!(load::prefetch && !partition::replicates),
                "tessera::Trainer: Load<Prefetch> gathers the batches of data-parallel replicas; Partition<Layerwise> "
                "and Partition<Columnwise> read each micro-batch's rows where they are used: use Load<Sequential>");
  static_assert(!(gpu && !partition::replicates),
                "tessera::Trainer: Device<Cuda> trains with Partition<Replicate> in this version; Partition<Layerwise> "
                "and Partition<Columnwise> are CPU-only");
  static_assert(!(gpu && sync::period != 0),
                "tessera::Trainer: Device<Cuda> trains with Sync<EveryStep> or Sync<Sharded>; Sync<Periodic<K>> is "
                "CPU-only");
};

}  // namespace tessera
