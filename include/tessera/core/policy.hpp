// tessera/core/policy.hpp - the policy families of Trainer. A policy is a small type whose member
// typedef `tessera_family` says which family it belongs to (Kokkos style); the choice it wraps is
// `choice`. Trainer sorts its arguments by family, fills defaults and rejects strangers.
#pragma once

#include <concepts>
#include <type_traits>

namespace tessera {

namespace family {
struct data_split {};
struct load {};
struct partition {};
struct reduce {};
struct sync {};
struct device {};
}  // namespace family

/// Family DataSplit: which rows each worker trains on in each epoch; `Choice` is Uniform, Random or
/// Stratified (tessera/split/choices.hpp).
template <class Choice> struct DataSplit { using tessera_family = family::data_split; using choice = Choice; };
/// Family Load: how a worker's batches are prepared; `Choice` is Sequential or Prefetch
/// (tessera/load/choices.hpp).
template <class Choice> struct Load { using tessera_family = family::load; using choice = Choice; };
/// Family Partition: how the model is laid out over workers; `Choice` is Replicate, Layerwise,
/// LayerwiseWith or Columnwise (tessera/partition/choices.hpp).
template <class Choice> struct Partition { using tessera_family = family::partition; using choice = Choice; };
/// Family Reduce: how gradients are summed over workers; `Choice` is ThreadAllreduce, MpiAllreduce
/// or NcclAllreduce (tessera/reduce/choices.hpp).
template <class Choice> struct Reduce { using tessera_family = family::reduce; using choice = Choice; };
/// Family Sync: when replicas agree; `Choice` is EveryStep, Periodic<K> or Sharded
/// (tessera/sync/sync.hpp).
template <class Choice> struct Sync { using tessera_family = family::sync; using choice = Choice; };
/// Family Device: where kernels run; `Choice` is Cpu or Cuda (tessera/device/).
template <class Choice> struct Device { using tessera_family = family::device; using choice = Choice; };

/// \typedef tessera::DataSplit::tessera_family
/// The family tag, family::data_split.
/// \typedef tessera::DataSplit::choice
/// The wrapped choice, `Choice`.
/// \typedef tessera::Load::tessera_family
/// The family tag, family::load.
/// \typedef tessera::Load::choice
/// The wrapped choice, `Choice`.
/// \typedef tessera::Partition::tessera_family
/// The family tag, family::partition.
/// \typedef tessera::Partition::choice
/// The wrapped choice, `Choice`.
/// \typedef tessera::Reduce::tessera_family
/// The family tag, family::reduce.
/// \typedef tessera::Reduce::choice
/// The wrapped choice, `Choice`.
/// \typedef tessera::Sync::tessera_family
/// The family tag, family::sync.
/// \typedef tessera::Sync::choice
/// The wrapped choice, `Choice`.
/// \typedef tessera::Device::tessera_family
/// The family tag, family::device.
/// \typedef tessera::Device::choice
/// The wrapped choice, `Choice`.

/// Any type that names a tessera policy family.
template <class P>
concept Policy = requires { typename P::tessera_family; typename P::choice; };

template <class P, class Family>
concept PolicyOf = Policy<P> && std::same_as<typename P::tessera_family, Family>;

namespace detail {

template <class Family, class... Ps>
inline constexpr int family_count = (0 + ... + int(PolicyOf<Ps, Family>));

/// The choice of the one policy of `Family` among Ps, or Default's when there is none.
template <class Family, class Default, class... Ps>
struct pick_policy { using type = Default; };
template <class Family, class Default, class P, class... Ps>
struct pick_policy<Family, Default, P, Ps...> {
  using type = std::conditional_t<PolicyOf<P, Family>, P, typename pick_policy<Family, Default, Ps...>::type>;
};
template <class Family, class Default, class... Ps>
using choice_of = typename pick_policy<Family, Default, Ps...>::type::choice;

/// Instantiated for every Trainer argument: names the offending type when it is not a policy.
template <class P>
struct check_trainer_argument {
  static_assert(Policy<P>,
                "tessera::Trainer: argument is not a tessera policy; expected DataSplit<...>, Load<...>, "
                "Partition<...>, Reduce<...>, Sync<...> or Device<...>");
  static constexpr bool value = true;
};

}  // namespace detail
}  // namespace tessera
