// tessera/data/split.hpp - seeded shuffles and train/test splits.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "tessera/core/rng.hpp"
#include "tessera/data/dataset.hpp"

namespace tessera::data {

/// A permutation of [0, n) that depends only on (seed, stream, epoch): row i gets the key
/// u64(seed, stream, i, epoch) and rows are sorted by key (ties by index).
inline std::vector<std::size_t> permutation(std::size_t n, std::uint64_t seed, std::uint32_t epoch,
                                            rng::Stream stream = rng::Stream::shuffle) {
  std::vector<std::pair<std::uint64_t, std::size_t>> keyed(n);
  for (std::size_t i = 0; i < n; ++i) keyed[i] = {rng::u64(seed, stream, i, epoch), i};
  std::sort(keyed.begin(), keyed.end());
  std::vector<std::size_t> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = keyed[i].second;
  return out;
}

/// How train_test_split() splits.
struct SplitOptions {
  /// Fraction of the rows that go to the test set, in (0, 1).
  double test_fraction = 0.2;
  /// Seed of the shuffle: the same seed, the same split.
  std::uint64_t seed = 0;
  bool stratify = false;  ///< keep class proportions (targets are class indices)
};

/// Splits rows into (train, test); the test set gets round(test_fraction * rows) rows (per class
/// when stratified). Row order within each part follows the seeded permutation.
inline std::pair<Dataset, Dataset> train_test_split(const Dataset& d, SplitOptions o = {}) {
  detail::require(o.test_fraction > 0.0 && o.test_fraction < 1.0, ErrorKind::invalid_argument,
                  "train_test_split: test_fraction must be in (0, 1), got " + std::to_string(o.test_fraction));
  detail::require(d.rows() >= 2, ErrorKind::invalid_argument,
                  "train_test_split: need at least 2 rows, got " + std::to_string(d.rows()));
  const std::vector<std::size_t> perm = permutation(d.rows(), o.seed, 0, rng::Stream::split);
  std::vector<std::size_t> train, test;
  if (!o.stratify) {
    auto n_test = static_cast<std::size_t>(std::llround(o.test_fraction * static_cast<double>(d.rows())));
    n_test = std::clamp<std::size_t>(n_test, 1, d.rows() - 1);
    test.assign(perm.begin(), perm.begin() + static_cast<std::ptrdiff_t>(n_test));
    train.assign(perm.begin() + static_cast<std::ptrdiff_t>(n_test), perm.end());
  } else {
    detail::require(d.target_dim == 1, ErrorKind::invalid_argument,
                    "train_test_split: stratify needs one class label per row");
    const std::size_t k = d.num_classes();
    check_class_labels(d, k, "train_test_split");
    std::vector<std::size_t> count(k), taken(k);
    for (float v : d.targets) ++count[static_cast<std::size_t>(v)];
    for (std::size_t i : perm) {
      const auto c = static_cast<std::size_t>(d.targets[i]);
      const auto want = static_cast<std::size_t>(std::llround(o.test_fraction * static_cast<double>(count[c])));
      (taken[c]++ < want ? test : train).push_back(i);
    }
    detail::require(!train.empty() && !test.empty(), ErrorKind::invalid_argument,
                    "train_test_split: a stratified split with test_fraction " + std::to_string(o.test_fraction) +
                        " over " + std::to_string(d.rows()) + " rows in " + std::to_string(k) + " classes leaves the " +
                        (train.empty() ? "training" : "test") + " set empty (each class gives round(test_fraction x "
                        "its count) rows to the test set); use more rows per class or another test_fraction");
  }
  return {d.subset(train), d.subset(test)};
}

}  // namespace tessera::data
