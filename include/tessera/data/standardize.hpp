// tessera/data/standardize.hpp - feature standardisation fitted on training data only.
#pragma once

#include <cfloat>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "tessera/data/dataset.hpp"

namespace tessera::data {

/// x' = (x - mean) / std per column; a constant column (std 0) is only centred, and so is a column
/// whose spread is too small for its inverse to be a float32 (a denormal spread): scaling it would
/// give infinities and NaNs.
class Standardizer {
 public:
  Standardizer() = default;
  /// Fitted on the columns of `x` (see fit()).
  explicit Standardizer(MatrixView x) { fit(x); }
  /// A fitted standardizer from its statistics (what a model file stores): one mean and one
  /// inverse scale per column, as many of each, at least one column, every mean finite and every
  /// inverse scale finite and > 0. Anything else is ErrorKind::invalid_argument naming the column.
  Standardizer(std::vector<float> mean, std::vector<float> inverse_scale)
      : mean_(std::move(mean)), scale_(std::move(inverse_scale)) {
    detail::require(!mean_.empty() && mean_.size() == scale_.size(), ErrorKind::invalid_argument,
                    "Standardizer: needs one mean and one inverse scale per column (at least one column), got " +
                        std::to_string(mean_.size()) + " means and " + std::to_string(scale_.size()) +
                        " inverse scales");
    for (std::size_t c = 0; c < mean_.size(); ++c) {
      detail::require(std::isfinite(mean_[c]), ErrorKind::invalid_argument,
                      "Standardizer: the mean of column " + std::to_string(c) + " is " + std::to_string(mean_[c]) +
                          ", expected a finite value");
      detail::require(std::isfinite(scale_[c]) && scale_[c] > 0.0f, ErrorKind::invalid_argument,
                      "Standardizer: the inverse scale of column " + std::to_string(c) + " is " +
                          std::to_string(scale_[c]) + ", expected a finite value > 0");
    }
  }

  /// Computes each column's mean and standard deviation over the rows of `x` (population, 1/n); returns
  /// *this. Throws Error (ErrorKind::invalid_argument) when `x` has no rows.
  Standardizer& fit(MatrixView x) {
    detail::require(x.rows > 0, ErrorKind::invalid_argument, "Standardizer::fit: no rows to fit on");
    mean_.assign(x.cols, 0.0f);
    scale_.assign(x.cols, 1.0f);
    for (std::size_t c = 0; c < x.cols; ++c) {
      double s = 0.0, ss = 0.0;
      for (std::size_t r = 0; r < x.rows; ++r) s += x(r, c);
      const double m = s / static_cast<double>(x.rows);
      for (std::size_t r = 0; r < x.rows; ++r) ss += (x(r, c) - m) * (x(r, c) - m);
      const double sd = std::sqrt(ss / static_cast<double>(x.rows));
      mean_[c] = static_cast<float>(m);
      scale_[c] = sd > 0.0 && 1.0 / sd <= FLT_MAX ? static_cast<float>(1.0 / sd) : 1.0f;
    }
    return *this;
  }

  /// Standardizes `x` in place. Throws Error: ErrorKind::invalid_argument before fit(), ErrorKind::shape
  /// when the columns differ from those fitted on.
  void transform_in_place(Matrix& x) const {
    detail::require(!mean_.empty(), ErrorKind::invalid_argument, "Standardizer::transform: fit it first");
    detail::require(x.cols() == mean_.size(), ErrorKind::shape,
                    "Standardizer::transform: fitted on " + std::to_string(mean_.size()) + " columns, got " +
                        shape_string(x.rows(), x.cols()));
    for (std::size_t r = 0; r < x.rows(); ++r)
      for (std::size_t c = 0; c < x.cols(); ++c) x(r, c) = (x(r, c) - mean_[c]) * scale_[c];
  }
  /// `d` with its features standardized (the targets unchanged); throws as transform_in_place().
  [[nodiscard]] Dataset transform(Dataset d) const {
    transform_in_place(d.features);
    return d;
  }

  /// Columns it was fitted on (0 before fit).
  [[nodiscard]] std::size_t columns() const noexcept { return mean_.size(); }
  /// Mean per column.
  [[nodiscard]] const std::vector<float>& mean() const noexcept { return mean_; }
  /// 1 / standard deviation per column (1 for constant columns).
  [[nodiscard]] const std::vector<float>& inverse_scale() const noexcept { return scale_; }

  /// The same statistics, value by value.
  friend bool operator==(const Standardizer&, const Standardizer&) = default;

 private:
  std::vector<float> mean_, scale_;
};

}  // namespace tessera::data
