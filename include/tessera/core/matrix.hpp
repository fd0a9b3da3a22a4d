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
  const float* data = nullptr;
  std::size_t rows = 0, cols = 0;

  [[nodiscard]] const float* row(std::size_t r) const noexcept { return data + r * cols; }
  [[nodiscard]] float operator()(std::size_t r, std::size_t c) const noexcept { return data[r * cols + c]; }
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
  Matrix(std::size_t rows, std::size_t cols, float fill = 0.0f) : rows_(rows), cols_(cols), data_(rows * cols, fill) {}
  Matrix(std::size_t rows, std::size_t cols, std::vector<float> values) : rows_(rows), cols_(cols), data_(std::move(values)) {
    detail::require(data_.size() == rows * cols, ErrorKind::shape,
                    "Matrix(" + std::to_string(rows) + ", " + std::to_string(cols) + "): got " +
                        std::to_string(data_.size()) + " values, expected " + std::to_string(rows * cols));
  }

  [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
  [[nodiscard]] std::size_t cols() const noexcept { return cols_; }
  [[nodiscard]] std::size_t size() const noexcept { return data_.size(); }
  [[nodiscard]] float* data() noexcept { return data_.data(); }
  [[nodiscard]] const float* data() const noexcept { return data_.data(); }
  [[nodiscard]] float* row(std::size_t r) noexcept { return data_.data() + r * cols_; }
  [[nodiscard]] const float* row(std::size_t r) const noexcept { return data_.data() + r * cols_; }
  [[nodiscard]] float& operator()(std::size_t r, std::size_t c) noexcept { return data_[r * cols_ + c]; }
  [[nodiscard]] float operator()(std::size_t r, std::size_t c) const noexcept { return data_[r * cols_ + c]; }
  [[nodiscard]] std::vector<float>& values() noexcept { return data_; }
  [[nodiscard]] const std::vector<float>& values() const noexcept { return data_; }
  [[nodiscard]] MatrixView view() const noexcept { return {data_.data(), rows_, cols_}; }
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
