// tessera/detail/loss_kernels.hpp - loss value and gradient at the logits in one pass, per row.
//
// Each functor returns the row's unnormalised loss (double) and, when `grad` is set, writes the
// row's gradient times `scale` (1 / the normaliser of the whole global batch).
#pragma once

#include <cmath>
#include <cstddef>

#include "tessera/detail/launch.hpp"
#include "tessera/model/loss.hpp"

namespace tessera::detail {

struct SquaredErrorRow {
  const float* z;
  const float* y;  // cols targets per row
  float* grad;
  std::size_t cols;
  float scale;
  TESSERA_HD double operator()(std::size_t r) const {
    double s = 0.0;
    for (std::size_t j = 0; j < cols; ++j) {
      const float d = z[r * cols + j] - y[r * cols + j];
      s += static_cast<double>(d) * d;
      if (grad) grad[r * cols + j] = 2.0f * scale * d;
    }
    return s;
  }
};

/// log(1 + exp(-|z|)) + max(z, 0) - z*y: never overflows, exact for large |z|.
struct BinaryCrossEntropyRow {
  const float* z;
  const float* y;
  float* grad;
  std::size_t cols;
  float scale;
  TESSERA_HD double operator()(std::size_t r) const {
    double s = 0.0;
    for (std::size_t j = 0; j < cols; ++j) {
      const float zi = z[r * cols + j], yi = y[r * cols + j];
      const float e = std::exp(-std::fabs(zi));
      s += static_cast<double>((zi > 0.0f ? zi : 0.0f) - zi * yi + std::log1p(e));
      if (grad) {
        const float p = zi >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        grad[r * cols + j] = scale * (p - yi);
      }
    }
    return s;
  }
};

/// Softmax cross-entropy on logits: loss = logsumexp(z) - z[y], gradient = softmax(z) - onehot(y).
struct SoftmaxCrossEntropyRow {
  const float* z;
  const float* y;  // one class index per row, stored as float
  float* grad;
  std::size_t cols;
  float scale;
  TESSERA_HD double operator()(std::size_t r) const {
    const float* zr = z + r * cols;
    float m = zr[0];
    for (std::size_t j = 1; j < cols; ++j) m = zr[j] > m ? zr[j] : m;
    float sum = 0.0f;
    for (std::size_t j = 0; j < cols; ++j) sum += std::exp(zr[j] - m);
    const std::size_t label = static_cast<std::size_t>(y[r]);
    const float lse = m + std::log(sum);
    if (grad) {
      const float inv = 1.0f / sum;
      float* g = grad + r * cols;
      for (std::size_t j = 0; j < cols; ++j) g[j] = scale * (std::exp(zr[j] - m) * inv - (j == label ? 1.0f : 0.0f));
    }
    return static_cast<double>(lse) - zr[label];
  }
};

/// Number the summed row losses are divided by to give the mean loss of `rows` samples.
inline double loss_normaliser(Loss l, std::size_t rows, std::size_t cols) {
  return l == Loss::softmax_cross_entropy ? static_cast<double>(rows) : static_cast<double>(rows) * static_cast<double>(cols);
}

/// Calls f with loss `l`'s row functor (value and, when `grad` is set, scaled gradient per row).
template <class F>
decltype(auto) with_loss_row(Loss l, const float* z, const float* y, float* grad, std::size_t cols, float scale, F&& f) {
  switch (l) {
    case Loss::mean_squared_error: return f(SquaredErrorRow{z, y, grad, cols, scale});
    case Loss::binary_cross_entropy: return f(BinaryCrossEntropyRow{z, y, grad, cols, scale});
    case Loss::softmax_cross_entropy: break;
  }
  return f(SoftmaxCrossEntropyRow{z, y, grad, cols, scale});  // the last Loss (every value is a case)
}

/// Sum of the per-row losses of `rows` rows; writes the scaled gradient when `grad` is not null.
template <class Exec>
double loss_rows(Exec&& exec, Loss l, const float* z, const float* y, float* grad, std::size_t rows,
                 std::size_t cols, float scale) {
  return with_loss_row(l, z, y, grad, cols, scale, [&](auto row) { return sum_over(exec, rows, row); });
}

/// Reads the stored loss of row r.
struct ReadRowLoss {
  const double* v;
  TESSERA_HD double operator()(std::size_t r) const { return v[r]; }
};

/// Writes row r's loss to out[r] (and its gradient, as the row functor does).
template <class Row>
struct StoreRowLoss {
  Row row;
  double* out;
  TESSERA_HD void operator()(std::size_t r) const { out[r] = row(r); }
};

/// As loss_rows, but the per-row losses go to `per_row` (rows doubles, in the memory `exec` runs
/// on) instead of being summed: nothing returns to the host, so a GPU's host thread can enqueue the
/// backward pass at once and sum the losses (sum_row_losses) when the pass is enqueued.
template <class Exec>
void loss_rows_into(Exec&& exec, Loss l, const float* z, const float* y, float* grad, std::size_t rows, std::size_t cols,
                    float scale, double* per_row) {
  with_loss_row(l, z, y, grad, cols, scale,
                [&](auto row) { for_each_index(exec, rows, StoreRowLoss<decltype(row)>{row, per_row}); });
}

/// The sum of loss_rows_into's per-row losses: the same value loss_rows returns.
template <class Exec>
double sum_row_losses(Exec&& exec, const double* per_row, std::size_t rows) {
  return sum_over(exec, rows, ReadRowLoss{per_row});
}

}  // namespace tessera::detail
