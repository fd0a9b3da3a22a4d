// tessera/detail/least_squares.hpp - the fused least-squares gradient: X^T (X w + b - y) and the
// squared-error sum in one pass that reads X once.
//
// The rows are cut into fixed blocks; each block writes a partial (d gradient entries, the bias
// gradient, the loss) and the partials are summed column by column in block order. The result
// therefore does not depend on how many threads ran the blocks.
#pragma once

#include <cstddef>

#include "tessera/detail/launch.hpp"

namespace tessera::detail {

struct LeastSquaresBlock {
  const float* x;  // n x d, row-major
  const float* w;  // d
  float bias;
  const float* y;  // n
  float* partial;  // blocks x (d + 2)
  std::size_t n, d, block;

  TESSERA_HD void operator()(std::size_t blk) const {
    float* TESSERA_RESTRICT g = partial + blk * (d + 2);
    for (std::size_t j = 0; j < d; ++j) g[j] = 0.0f;
    float gb = 0.0f, loss = 0.0f;
    const std::size_t lo = blk * block, hi = lo + block < n ? lo + block : n;
    for (std::size_t r = lo; r < hi; ++r) {
      const float* TESSERA_RESTRICT xr = x + r * d;
      float dot = 0.0f;
      TESSERA_SIMD_SUM(dot)
      for (std::size_t j = 0; j < d; ++j) dot += xr[j] * w[j];
      const float res = dot + bias - y[r];
      TESSERA_SIMD
      for (std::size_t j = 0; j < d; ++j) g[j] += res * xr[j];
      gb += res;
      loss += res * res;
    }
    g[d] = gb;
    g[d + 1] = loss;
  }
};

/// Column j of the partials summed over blocks in block order, times `scale` (loss unscaled).
struct SumPartials {
  const float* partial;
  float* out;  // d + 2
  std::size_t blocks, width;
  float scale;
  TESSERA_HD void operator()(std::size_t j) const {
    double s = 0.0;
    for (std::size_t b = 0; b < blocks; ++b) s += partial[b * width + j];
    out[j] = j + 1 == width ? static_cast<float>(s) : static_cast<float>(s * scale);
  }
};

inline constexpr std::size_t least_squares_block_rows = 2048;

inline std::size_t least_squares_scratch(std::size_t n, std::size_t d) {
  return ((n + least_squares_block_rows - 1) / least_squares_block_rows) * (d + 2);
}

/// out[0..d) = scale * X^T r, out[d] = scale * sum(r), returns sum(r^2), with r = X w + b - y.
/// `scratch` holds least_squares_scratch(n, d) floats, `out` d + 2 floats.
template <class Exec>
void least_squares_gradient(Exec&& exec, const float* x, const float* w, float bias, const float* y, std::size_t n,
                            std::size_t d, float scale, float* scratch, float* out) {
  const std::size_t blocks = (n + least_squares_block_rows - 1) / least_squares_block_rows;
  for_each_index(exec, blocks, LeastSquaresBlock{x, w, bias, y, scratch, n, d, least_squares_block_rows});
  for_each_index(exec, d + 2, SumPartials{scratch, out, blocks, d + 2, scale});
}

}  // namespace tessera::detail
