// Trainer's policy composition: any order, defaults filled, one choice per family.
#include <catch2/catch.hpp>

#include <type_traits>

#include "tessera/policies.hpp"

using namespace tessera;

template <class... Ps>
constexpr bool resolves_to() {
  using S = PolicySet<Ps...>;
  return std::is_same_v<typename S::split, Random> && std::is_same_v<typename S::load, Prefetch> &&
         std::is_same_v<typename S::reduce, MpiAllreduce> && std::is_same_v<typename S::sync, Periodic<4>> &&
         std::is_same_v<typename S::partition, Replicate> && std::is_same_v<typename S::device, Cpu>;
}

// Every permutation of four policies resolves to the same set (compile-time).
static_assert(resolves_to<DataSplit<Random>, Load<Prefetch>, Reduce<MpiAllreduce>, Sync<Periodic<4>>>());
static_assert(resolves_to<Load<Prefetch>, DataSplit<Random>, Reduce<MpiAllreduce>, Sync<Periodic<4>>>());
static_assert(resolves_to<Reduce<MpiAllreduce>, Load<Prefetch>, DataSplit<Random>, Sync<Periodic<4>>>());
static_assert(resolves_to<Sync<Periodic<4>>, Reduce<MpiAllreduce>, Load<Prefetch>, DataSplit<Random>>());
static_assert(resolves_to<DataSplit<Random>, Sync<Periodic<4>>, Load<Prefetch>, Reduce<MpiAllreduce>>());
static_assert(resolves_to<Load<Prefetch>, Sync<Periodic<4>>, Reduce<MpiAllreduce>, DataSplit<Random>>());
static_assert(resolves_to<Reduce<MpiAllreduce>, DataSplit<Random>, Sync<Periodic<4>>, Load<Prefetch>>());
static_assert(resolves_to<Sync<Periodic<4>>, DataSplit<Random>, Reduce<MpiAllreduce>, Load<Prefetch>>());
static_assert(resolves_to<Partition<Replicate>, Device<Cpu>, Sync<Periodic<4>>, DataSplit<Random>,
                          Reduce<MpiAllreduce>, Load<Prefetch>>());
static_assert(resolves_to<Device<Cpu>, Load<Prefetch>, Partition<Replicate>, Reduce<MpiAllreduce>, Sync<Periodic<4>>,
                          DataSplit<Random>>());

TEST_CASE("defaults fill every family that is not given", "[policy]") {
  using S = PolicySet<>;
  STATIC_REQUIRE(std::is_same_v<S::split, Uniform>);
  STATIC_REQUIRE(std::is_same_v<S::load, Sequential>);
  STATIC_REQUIRE(std::is_same_v<S::partition, Replicate>);
  STATIC_REQUIRE(std::is_same_v<S::reduce, ThreadAllreduce>);
  STATIC_REQUIRE(std::is_same_v<S::sync, EveryStep>);
  STATIC_REQUIRE(std::is_same_v<S::device, Cpu>);
  using T = PolicySet<Sync<Sharded>, DataSplit<Stratified>>;
  STATIC_REQUIRE(std::is_same_v<T::sync, Sharded>);
  STATIC_REQUIRE(std::is_same_v<T::split, Stratified>);
  STATIC_REQUIRE(std::is_same_v<T::reduce, ThreadAllreduce>);
}

TEST_CASE("policies name their family", "[policy]") {
  STATIC_REQUIRE(PolicyOf<DataSplit<Uniform>, family::data_split>);
  STATIC_REQUIRE(PolicyOf<Device<Cuda>, family::device>);
  STATIC_REQUIRE_FALSE(Policy<int>);
  STATIC_REQUIRE_FALSE(Policy<Uniform>);  // a choice alone is not a policy
  STATIC_REQUIRE(Periodic<8>::period == 8);
}
