// tessera/detail/least_squares.hpp - the fused least-squares gradient: X^T (X w + b - y) and the
// squared-error sum in one pass that reads X once.
//
// The rows are cut into fixed blocks; each block writes a partial (d gradient entries, the bias
// gradient, the loss) and the partials are summed column by column in block order. The result
// therefore does not depend on how many threads ran the blocks.
#pragma once

#include <cstddef>

#include "tessera/detail/launch.hpp"

#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDA_ARCH__)
#include <immintrin.h>
#define TESSERA_LEAST_SQUARES_AVX2 1
#endif

namespace tessera::detail {

/// Sum of `lanes` floats by halving (a tree the compiler turns into vector adds).
template <std::size_t Lanes>
TESSERA_HD inline float lane_sum(float* a) {
  for (std::size_t h = Lanes / 2; h >= 1; h /= 2)
    for (std::size_t k = 0; k < h; ++k) a[k] += a[k + h];
  return a[0];
}

struct LeastSquaresBlock {
  const float* x;  // n x d, row-major
  const float* w;  // d
  const float* bias;  // 1, beside w: read where the system runs (device memory on a GPU)
  const float* y;  // n
  float* partial;  // blocks x (d + 2)
  std::size_t n, d, block;

  static constexpr std::size_t lanes = 16;  // one AVX-512 register, two AVX2 registers
  static constexpr std::size_t rows = 4;    // rows in flight: four independent dot products

  /// Residuals of the Count rows starting at row r: x_r . w + b - y_r. Count is a constant, so
  /// the Count x lanes accumulators stay in registers.
  template <std::size_t Count>
  TESSERA_HD void residuals(std::size_t r, float b, float* res) const {
    float acc[Count][lanes] = {};
    const std::size_t full = d / lanes * lanes;
    for (std::size_t j = 0; j < full; j += lanes)
      for (std::size_t q = 0; q < Count; ++q) {
        const float* TESSERA_RESTRICT xr = x + (r + q) * d + j;
        const float* TESSERA_RESTRICT wj = w + j;
        TESSERA_SIMD
        for (std::size_t k = 0; k < lanes; ++k) acc[q][k] += xr[k] * wj[k];
      }
    for (std::size_t q = 0; q < Count; ++q) {
      for (std::size_t j = full; j < d; ++j) acc[q][0] += x[(r + q) * d + j] * w[j];
      res[q] = lane_sum<lanes>(acc[q]) + b - y[r + q];
    }
  }

#if defined(TESSERA_LEAST_SQUARES_AVX2)
  /// Rows [lo, hi) four at a time with 256-bit FMA (d a multiple of 8); returns the first row not
  /// done. The four dot products are reduced together (two rounds of hadd: one vector of four
  /// sums), and X is prefetched into L2 `ahead` rows in advance, which the hardware prefetchers
  /// alone do not do far enough while the core computes.
  std::size_t avx2_rows(std::size_t lo, std::size_t hi, float b, float* TESSERA_RESTRICT g, float& gb, float& loss) const {
    constexpr std::size_t ahead = 256;
    const __m128 vbias = _mm_set1_ps(b);
    __m128 vgb = _mm_setzero_ps(), vloss = _mm_setzero_ps();
    std::size_t r = lo;
    for (; r + rows <= hi; r += rows) {
      if (r + ahead + rows <= n) {
        const char* p = reinterpret_cast<const char*>(x + (r + ahead) * d);
        for (std::size_t off = 0; off < rows * d * sizeof(float); off += 64) _mm_prefetch(p + off, _MM_HINT_T1);
      }
      const float* TESSERA_RESTRICT x0 = x + r * d;
      const float* TESSERA_RESTRICT x1 = x0 + d;
      const float* TESSERA_RESTRICT x2 = x1 + d;
      const float* TESSERA_RESTRICT x3 = x2 + d;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
      std::size_t j = 0;
      for (; j + 16 <= d; j += 16) {  // two accumulators per row: eight FMA chains in flight
        const __m256 w0 = _mm256_loadu_ps(w + j), w1 = _mm256_loadu_ps(w + j + 8);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + j), w0, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + j), w0, a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + j), w0, a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + j), w0, a3);
        b0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + j + 8), w1, b0);
        b1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + j + 8), w1, b1);
        b2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + j + 8), w1, b2);
        b3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + j + 8), w1, b3);
      }
      if (j < d) {
        const __m256 w0 = _mm256_loadu_ps(w + j);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + j), w0, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + j), w0, a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + j), w0, a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + j), w0, a3);
      }
      const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(_mm256_add_ps(a0, b0), _mm256_add_ps(a1, b1)),
                                      _mm256_hadd_ps(_mm256_add_ps(a2, b2), _mm256_add_ps(a3, b3)));
      const __m128 dots = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
      const __m128 res = _mm_sub_ps(_mm_add_ps(dots, vbias), _mm_loadu_ps(y + r));
      vgb = _mm_add_ps(vgb, res);
      vloss = _mm_fmadd_ps(res, res, vloss);
      const __m256 r0 = _mm256_broadcastss_ps(res);
      const __m256 r1 = _mm256_broadcastss_ps(_mm_shuffle_ps(res, res, 0x55));
      const __m256 r2 = _mm256_broadcastss_ps(_mm_shuffle_ps(res, res, 0xaa));
      const __m256 r3 = _mm256_broadcastss_ps(_mm_shuffle_ps(res, res, 0xff));
      for (std::size_t k = 0; k < d; k += 8) {
        __m256 gk = _mm256_loadu_ps(g + k);
        gk = _mm256_fmadd_ps(r0, _mm256_loadu_ps(x0 + k), gk);
        gk = _mm256_fmadd_ps(r1, _mm256_loadu_ps(x1 + k), gk);
        gk = _mm256_fmadd_ps(r2, _mm256_loadu_ps(x2 + k), gk);
        gk = _mm256_fmadd_ps(r3, _mm256_loadu_ps(x3 + k), gk);
        _mm256_storeu_ps(g + k, gk);
      }
    }
    alignas(16) float t[4];
    _mm_store_ps(t, vgb);
    gb += (t[0] + t[1]) + (t[2] + t[3]);
    _mm_store_ps(t, vloss);
    loss += (t[0] + t[1]) + (t[2] + t[3]);
    return r;
  }
#endif

  TESSERA_HD void operator()(std::size_t blk) const {  // launched through Local (launch.hpp)
    float* TESSERA_RESTRICT g = partial + blk * (d + 2);
    for (std::size_t j = 0; j < d; ++j) g[j] = 0.0f;
    float gb = 0.0f, loss = 0.0f;
    const float b = *bias;
    const std::size_t lo = blk * block, hi = lo + block < n ? lo + block : n;
    std::size_t r = lo;
#if defined(TESSERA_LEAST_SQUARES_AVX2)
    if (d % 8 == 0) r = avx2_rows(lo, hi, b, g, gb, loss);
#endif
    for (; r + rows <= hi; r += rows) {  // four rows at a time: one pass over g per four rows
      float res[rows];
      residuals<rows>(r, b, res);
      const float* TESSERA_RESTRICT x0 = x + r * d;
      const float* TESSERA_RESTRICT x1 = x0 + d;
      const float* TESSERA_RESTRICT x2 = x1 + d;
      const float* TESSERA_RESTRICT x3 = x2 + d;
      TESSERA_SIMD
      for (std::size_t j = 0; j < d; ++j) g[j] += res[0] * x0[j] + res[1] * x1[j] + res[2] * x2[j] + res[3] * x3[j];
      for (std::size_t q = 0; q < rows; ++q) {
        gb += res[q];
        loss += res[q] * res[q];
      }
    }
    for (; r < hi; ++r) {  // the last rows of the block
      float res[1];
      residuals<1>(r, b, res);
      const float* x0 = x + r * d;
      for (std::size_t j = 0; j < d; ++j) g[j] += res[0] * x0[j];
      gb += res[0];
      loss += res[0] * res[0];
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

/// out[0..d) = scale * X^T r, out[d] = scale * sum(r), out[d + 1] = sum(r^2), with r = X w + b - y
/// and b = *bias. Every pointer is in the memory `exec` runs on (device memory for a GPU: the bias
/// too, so nothing is read on the host). `scratch` holds least_squares_scratch(n, d) floats, `out`
/// d + 2 floats.
template <class Exec>
void least_squares_gradient(Exec&& exec, const float* x, const float* w, const float* bias, const float* y, std::size_t n,
                            std::size_t d, float scale, float* scratch, float* out) {
  // A system may bring its own kernel for this shape of work (the CUDA device: a warp per row)
  if constexpr (requires { exec.least_squares_gradient(x, w, bias, y, n, d, scale, scratch, out); })
    if (exec.least_squares_gradient(x, w, bias, y, n, d, scale, scratch, out)) return;
  const std::size_t blocks = (n + least_squares_block_rows - 1) / least_squares_block_rows;
  for_each_index(exec, blocks, LeastSquaresBlock{x, w, bias, y, scratch, n, d, least_squares_block_rows});
  for_each_index(exec, d + 2, SumPartials{scratch, out, blocks, d + 2, scale});
}

}  // namespace tessera::detail
