// tessera/data/dataset.hpp - an in-memory data set: float32 features, row-major, and targets
// (a class index or target_dim values per row).
#pragma once

#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "tessera/core/matrix.hpp"

namespace tessera::data {

/// Which part of a larger data set a Dataset holds: shard `index` of `count`, rows
/// [first_row, first_row + rows()) of `total_rows`. count == 1: the whole data set. A sharded
/// Dataset is what one rank of Reduce<MpiAllreduce> trains on (data::read_binary_shard).
struct Shard {
  ///@{
  /// This shard's index and the number of shards.
  std::size_t index = 0, count = 1;
  ///@}
  ///@{
  /// This shard's first row in the whole data set and the whole data set's rows.
  std::size_t first_row = 0, total_rows = 0;
  ///@}
};

/// Rows [first, first + count) of `total` that shard `index` of `count` holds: contiguous blocks,
/// the remainder spread one by one over the first shards (sizes differ by at most one row).
inline std::pair<std::size_t, std::size_t> shard_rows(std::size_t total, std::size_t index, std::size_t count) {
  const std::size_t q = total / count, r = total % count;
  const std::size_t lo = index * q + (index < r ? index : r);
  return {lo, lo + q + (index < r ? 1 : 0)};
}

/// Features and targets, one row per sample, with the column names when read from a file.
struct Dataset {
  Matrix features;                         ///< rows x cols, row-major
  std::vector<float> targets;              ///< rows x target_dim
  /// Targets per row (1 for a class index or a scalar; more for several outputs).
  std::size_t target_dim = 1;
  std::vector<std::string> feature_names;  ///< empty or one per column
  /// Name of the target column, empty when unknown.
  std::string target_name;
  Shard shard;                             ///< the whole data set unless read as a shard

  Dataset() = default;
  /// Features `x` with targets `y`, `tdim` per row. Throws Error (ErrorKind::shape) unless y.size() ==
  /// x.rows() * tdim and tdim > 0.
  Dataset(Matrix x, std::vector<float> y, std::size_t tdim = 1) : features(std::move(x)), targets(std::move(y)), target_dim(tdim) {
    detail::require(tdim > 0 && targets.size() == features.rows() * tdim, ErrorKind::shape,
                    "Dataset: " + std::to_string(features.rows()) + " rows need " +
                        std::to_string(features.rows() * tdim) + " targets (" + std::to_string(tdim) +
                        " per row), got " + std::to_string(targets.size()));
  }

  /// Number of samples held (of this shard when sharded).
  [[nodiscard]] std::size_t rows() const noexcept { return features.rows(); }
  /// Number of features.
  [[nodiscard]] std::size_t cols() const noexcept { return features.cols(); }
  /// True when it holds no rows.
  [[nodiscard]] bool empty() const noexcept { return features.rows() == 0; }
  /// True when it is one shard of several (see Shard).
  [[nodiscard]] bool sharded() const noexcept { return shard.count > 1; }
  /// Rows of the whole data set: total_rows for a shard, rows() otherwise.
  [[nodiscard]] std::size_t total_rows() const noexcept { return sharded() ? shard.total_rows : rows(); }
  /// The features as a view.
  [[nodiscard]] MatrixView x() const noexcept { return features.view(); }
  /// The targets, row-major, target_dim per row.
  [[nodiscard]] std::span<const float> y() const noexcept { return targets; }

  /// Number of classes when the targets are class indices: 1 + the largest label. Every label
  /// must be an integer in [0, 2^24) (float32 holds every integer up to there exactly); any other
  /// value (negative, fractional, NaN, infinite, huge) is an Error naming its row.
  [[nodiscard]] std::size_t num_classes() const {
    float m = -1.0f;
    for (std::size_t i = 0; i < targets.size(); ++i) {
      const float v = targets[i];
      if (!(v >= 0.0f && v < 16777216.0f) || v != std::floor(v))
        detail::fail(ErrorKind::invalid_argument,
                     "Dataset::num_classes: row " + std::to_string(i / target_dim) + " has label " + std::to_string(v) +
                         ", expected an integer class index in [0, 2^24)");
      m = v > m ? v : m;
    }
    return static_cast<std::size_t>(m + 1.0f);
  }

  /// The rows named by `index`, in that order.
  [[nodiscard]] Dataset subset(std::span<const std::size_t> index) const {
    Dataset out;
    out.features = Matrix(index.size(), cols());
    out.targets.resize(index.size() * target_dim);
    out.target_dim = target_dim;
    out.feature_names = feature_names;
    out.target_name = target_name;
    for (std::size_t i = 0; i < index.size(); ++i) {
      detail::require(index[i] < rows(), ErrorKind::invalid_argument,
                      "Dataset::subset: row " + std::to_string(index[i]) + " out of range (" + std::to_string(rows()) + " rows)");
      std::copy(features.row(index[i]), features.row(index[i]) + cols(), out.features.row(i));
      std::copy(targets.begin() + static_cast<std::ptrdiff_t>(index[i] * target_dim),
                targets.begin() + static_cast<std::ptrdiff_t>((index[i] + 1) * target_dim),
                out.targets.begin() + static_cast<std::ptrdiff_t>(i * target_dim));
    }
    return out;
  }
};

/// Checks that every target is a class index in [0, classes): an integer, not NaN.
inline void check_class_labels(const Dataset& d, std::size_t classes, const std::string& where) {
  for (std::size_t r = 0; r < d.targets.size(); ++r) {
    const float v = d.targets[r];
    if (!(v >= 0.0f) || v != std::floor(v) || v >= static_cast<float>(classes))
      detail::fail(ErrorKind::invalid_argument,
                   where + ": row " + std::to_string(r / d.target_dim) + " has label " + std::to_string(v) +
                       ", expected an integer class in [0, " + std::to_string(classes) + ")");
  }
}

}  // namespace tessera::data
