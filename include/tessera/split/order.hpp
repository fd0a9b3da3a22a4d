// tessera/split/order.hpp - the order in which an epoch visits the samples under each DataSplit
// choice. The order depends only on (seed, epoch, data), never on the number of workers; the
// workers then take contiguous, equal shares of each global batch.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <type_traits>
#include <vector>

#include "tessera/data/split.hpp"
#include "tessera/policies.hpp"

namespace tessera::detail {

/// Stratified order: each class is shuffled (keyed by seed and epoch), and its i-th sample of
/// count is placed at the fractional position (i + u) / count, u a seeded jitter in [0, 1); sorting
/// by position interleaves the classes so that any window of the order keeps their proportions.
inline std::vector<std::size_t> stratified_order(const data::Dataset& d, std::uint64_t seed, std::uint32_t epoch) {
  const std::size_t k = d.num_classes();
  data::check_class_labels(d, k, "DataSplit<Stratified>");
  const std::vector<std::size_t> perm = data::permutation(d.rows(), seed, epoch);
  std::vector<std::size_t> count(k), seen(k);
  for (float v : d.targets) ++count[static_cast<std::size_t>(v)];
  std::vector<std::pair<double, std::size_t>> keyed(d.rows());
  for (std::size_t j = 0; j < perm.size(); ++j) {
    const std::size_t i = perm[j], c = static_cast<std::size_t>(d.targets[i]);
    const double u = rng::uniform(seed, rng::Stream::split, i, epoch + 1);
    keyed[j] = {(static_cast<double>(seen[c]++) + u) / static_cast<double>(count[c]), i};
  }
  std::sort(keyed.begin(), keyed.end());
  std::vector<std::size_t> out(d.rows());
  for (std::size_t j = 0; j < keyed.size(); ++j) out[j] = keyed[j].second;
  return out;
}

/// The sample order of `epoch` (0-based); an empty vector means the data set's own order.
template <class Split>
std::vector<std::size_t> epoch_order(const data::Dataset& d, std::uint64_t seed, std::uint32_t epoch) {
  if constexpr (std::is_same_v<Split, Random>) {
    return data::permutation(d.rows(), seed, epoch);
  } else if constexpr (std::is_same_v<Split, Stratified>) {
    return stratified_order(d, seed, epoch);
  } else {
    return {};
  }
}

}  // namespace tessera::detail
