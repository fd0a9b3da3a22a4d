// tessera/core/matrix.hpp - a row-major float32 matrix on the host and a non-owning view of one.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"

namespace tessera {

/// Non-owning, read-only view of `rows` x `cols` floats stored row-major.
struct MatrixView {
  /// First element of row 0 (not owned).
  const float* data = nullptr;
  ///@{
  /// Number of rows and of columns.
  std::size_t rows = 0, cols = 0;
  ///@}

  /// Row `r` (`cols` floats); not bounds-checked.
  [[nodiscard]] const float* row(std::size_t r) const noexcept { return data + r * cols; }
  /// Element (r, c); not bounds-checked.
  [[nodiscard]] float operator()(std::size_t r, std::size_t c) const noexcept { return data[r * cols + c]; }
  /// Number of elements, rows x cols.
  [[nodiscard]] std::size_t size() const noexcept { return rows * cols; }
  /// Rows [first, first + count) as a view.
  [[nodiscard]] MatrixView slice(std::size_t first, std::size_t count) const noexcept {
    return {data + first * cols, count, cols};
  }
};

/// Owning row-major float32 matrix.
class Matrix {
 public:
  Matrix() = default;
  /// A rows x cols matrix with every element `fill`.
  Matrix(std::size_t rows, std::size_t cols, float fill = 0.0f) : rows_(rows), cols_(cols), data_(rows * cols, fill) {}
  /// A rows x cols matrix holding `values` row-major. Throws Error (ErrorKind::shape) unless
  /// values.size() == rows * cols.
  Matrix(std::size_t rows, std::size_t cols, std::vector<float> values) : rows_(rows), cols_(cols), data_(std::move(values)) {
    detail::require(data_.size() == rows * cols, ErrorKind::shape,
                    "Matrix(" + std::to_string(rows) + ", " + std::to_string(cols) + "): got " +
                        std::to_string(data_.size()) + " values, expected " + std::to_string(rows * cols));
  }

  /// Number of rows.
  [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
  /// Number of columns.
  [[nodiscard]] std::size_t cols() const noexcept { return cols_; }
  /// Number of elements, rows() x cols().
  [[nodiscard]] std::size_t size() const noexcept { return data_.size(); }
  /// The elements, row-major.
  [[nodiscard]] float* data() noexcept { return data_.data(); }
  /// The elements, row-major.
  [[nodiscard]] const float* data() const noexcept { return data_.data(); }
  /// Row `r` (cols() floats); not bounds-checked.
  [[nodiscard]] float* row(std::size_t r) noexcept { return data_.data() + r * cols_; }
  /// Row `r` (cols() floats); not bounds-checked.
  [[nodiscard]] const float* row(std::size_t r) const noexcept { return data_.data() + r * cols_; }
  /// Element (r, c); not bounds-checked.
  [[nodiscard]] float& operator()(std::size_t r, std::size_t c) noexcept { return data_[r * cols_ + c]; }
  /// Element (r, c); not bounds-checked.
  [[nodiscard]] float operator()(std::size_t r, std::size_t c) const noexcept { return data_[r * cols_ + c]; }
  /// The storage itself, row-major (keep its size rows() x cols()).
  [[nodiscard]] std::vector<float>& values() noexcept { return data_; }
  /// The storage itself, row-major.
  [[nodiscard]] const std::vector<float>& values() const noexcept { return data_; }
  /// A read-only view of this matrix; valid while the matrix lives and is not resized.
  [[nodiscard]] MatrixView view() const noexcept { return {data_.data(), rows_, cols_}; }
  /// The same as view().
  operator MatrixView() const noexcept { return view(); }  // NOLINT: a matrix is usable wherever a view is

 private:
  std::size_t rows_ = 0, cols_ = 0;
  std::vector<float> data_;
};

/// "rows x cols", for messages.
inline std::string shape_string(std::size_t rows, std::size_t cols) {
  return std::to_string(rows) + " x " + std::to_string(cols);
}

}  // namespace tessera
