// tessera/data/folds.hpp - k-fold cross-validation splits, plain and stratified, seeded.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "tessera/data/dataset.hpp"
#include "tessera/data/split.hpp"

namespace tessera::data {

/// How kfold() splits the rows.
struct KFold {
  /// Number of folds, at least 2 and at most the rows (per class when stratified).
  std::size_t k = 5;
  /// Seed of the shuffle: the same seed, the same folds.
  std::uint64_t seed = 0;
  /// Keep each class's share in every fold (targets are class indices).
  bool stratify = false;
};

/// One fold: the rows it tests on and the rows it trains on (row indices, ascending).
struct Fold {
  /// Rows trained on (every row not in `test`).
  std::vector<std::size_t> train;
  /// Rows tested on.
  std::vector<std::size_t> test;
};

/// Which fold (0 .. k-1) tests each row. Plain: the rows in seeded random order, cut into k
/// consecutive parts whose sizes differ by at most one (the first rows % k parts one larger).
/// Stratified: each class's rows in that order, dealt to the folds in turn, each class starting
/// at the fold after the one where the previous class ended, so that fold sizes differ by at most
/// one and each class's counts per fold by at most one.
inline std::vector<std::size_t> fold_of_rows(const Dataset& d, const KFold& o) {
  const std::size_t n = d.rows();
  detail::require(o.k >= 2, ErrorKind::invalid_argument, "kfold: k must be at least 2, got " + std::to_string(o.k));
  detail::require(o.k <= n, ErrorKind::invalid_argument,
          "kfold: " + std::to_string(o.k) + " folds of " + std::to_string(n) + " rows (each fold needs a row)");
  const std::vector<std::size_t> perm = permutation(n, o.seed, 0, rng::Stream::split);
  std::vector<std::size_t> fold(n);
  if (!o.stratify) {
    const std::size_t base = n / o.k, extra = n % o.k;
    std::size_t at = 0;
    for (std::size_t f = 0; f < o.k; ++f)
      for (std::size_t i = 0; i < base + (f < extra ? 1 : 0); ++i) fold[perm[at++]] = f;
    return fold;
  }
  detail::require(d.target_dim == 1, ErrorKind::invalid_argument, "kfold: stratify needs one class label per row");
  const std::size_t classes = d.num_classes();
  check_class_labels(d, classes, "kfold");
  std::vector<std::vector<std::size_t>> by_class(classes);
  for (std::size_t i : perm) by_class[static_cast<std::size_t>(d.targets[i])].push_back(i);
  std::size_t next = 0;
  for (const auto& rows : by_class)
    for (std::size_t r : rows) {
      fold[r] = next;
      next = (next + 1) % o.k;
    }
  return fold;
}

/// The k folds of `d`: fold f tests on the rows fold_of_rows gives f and trains on all others.
/// Throws Error (ErrorKind::invalid_argument) for k < 2, more folds than rows, or stratified folds
/// of data without class labels.
inline std::vector<Fold> kfold(const Dataset& d, const KFold& o) {
  const std::vector<std::size_t> of = fold_of_rows(d, o);
  std::vector<Fold> folds(o.k);
  for (std::size_t r = 0; r < of.size(); ++r)
    for (std::size_t f = 0; f < o.k; ++f) (f == of[r] ? folds[f].test : folds[f].train).push_back(r);
  return folds;
}

}  // namespace tessera::data
