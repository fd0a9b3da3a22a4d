// tessera/split/choices.hpp - the DataSplit choices: the order in which an epoch visits the
// samples. The order depends only on (seed, epoch, data), never on the number of workers; the
// workers then take contiguous, equal shares of each global batch. A choice is any type with a
// `name` and `order(data, seed, epoch)` returning the positions (empty: the data's own order).
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "tessera/data/split.hpp"

namespace tessera {

/// The data's own order; contiguous equal shards.
struct Uniform {
  /// Shown in messages and progress lines.
  static constexpr const char* name = "Uniform";
  /// Empty: rows in file order.
  static std::vector<std::size_t> order(const data::Dataset&, std::uint64_t, std::uint32_t) { return {}; }
};

/// A permutation drawn from Philox keyed by (seed, epoch), redrawn each epoch.
struct Random {
  /// Shown in messages and progress lines.
  static constexpr const char* name = "Random";
  /// A permutation of the rows drawn from `seed` and `epoch`.
  static std::vector<std::size_t> order(const data::Dataset& d, std::uint64_t seed, std::uint32_t epoch) {
    return data::permutation(d.rows(), seed, epoch);
  }
};

/// Each class shuffled (keyed by seed and epoch), its i-th sample of count placed at the
/// fractional position (i + u) / count, u a seeded jitter in [0, 1); sorting by position
/// interleaves the classes, so that any window of the order keeps their proportions.
struct Stratified {
  /// Shown in messages and progress lines.
  static constexpr const char* name = "Stratified";
  /// A permutation of the rows from `seed` and `epoch` that deals each class evenly over the workers.
  static std::vector<std::size_t> order(const data::Dataset& d, std::uint64_t seed, std::uint32_t epoch) {
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
};

}  // namespace tessera
