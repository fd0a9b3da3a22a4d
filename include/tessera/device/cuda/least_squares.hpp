// tessera/device/cuda/least_squares.hpp - the fused least-squares gradient X^T(Xw + b - y) on a GPU,
// reading X once from device memory. Needs nvcc (component `cuda`).
//
// The portable functor of detail/least_squares.hpp gives each parallel item a block of rows; on a
// GPU that makes neighbouring threads read addresses d floats apart. Here a warp owns four rows at
// a time: its 32 lanes read each row together (coalesced), reduce the four dot products with
// shuffles, and add residual x row into the warp's gradient in shared memory (the row is then in
// L1). Each CUDA block writes one partial (d gradient entries, bias gradient, loss); the partials
// are summed column by column in block order by the same SumPartials functor as on the CPU. With a
// fixed number of blocks per device the result is the same run after run.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "tessera/detail/least_squares.hpp"
#include "tessera/device/cuda/check.hpp"

namespace tessera::detail {

inline constexpr int least_squares_warps = 8;  ///< warps per CUDA block

/// Blocks of the kernel for n rows on a device with `sms` multiprocessors: enough to fill it, never
/// more than the portable scratch (one partial per 2048 rows) holds.
inline std::size_t cuda_least_squares_blocks(std::size_t n, int sms) {
  const std::size_t most = (n + least_squares_block_rows - 1) / least_squares_block_rows;
  const std::size_t fill = static_cast<std::size_t>(sms) * 8;
  return most < fill ? most : fill;
}

/// Largest d the kernel takes (its shared memory is (warps + 2) x d floats, under 48 KB).
inline constexpr std::size_t cuda_least_squares_max_d = 48 * 1024 / sizeof(float) / (least_squares_warps + 2);

template <int Rows>
__global__ void __launch_bounds__(32 * least_squares_warps)
    least_squares_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
                         const float* __restrict__ y, std::size_t n, std::size_t d, float* __restrict__ partial) {
  extern __shared__ float shared[];
  float* ws = shared;                 // d: the weights
  float* gs = shared + d;             // warps x d: each warp's gradient
  float* tail = gs + least_squares_warps * d;  // warps x 2: bias gradient and loss per warp
  const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
  for (std::size_t j = threadIdx.x; j < d; j += blockDim.x) ws[j] = w[j];
  for (std::size_t j = threadIdx.x; j < least_squares_warps * d; j += blockDim.x) gs[j] = 0.0f;
  __syncthreads();
  float* g = gs + static_cast<std::size_t>(warp) * d;
  float gb = 0.0f, loss = 0.0f;
  const float b = *bias;  // device memory: read here, never on the host
  const std::size_t warps = static_cast<std::size_t>(gridDim.x) * least_squares_warps;
  const std::size_t groups = (n + Rows - 1) / Rows;
  for (std::size_t grp = blockIdx.x * static_cast<std::size_t>(least_squares_warps) + warp; grp < groups; grp += warps) {
    const std::size_t r0 = grp * Rows;
    float dot[Rows];
    const float* row[Rows];
#pragma unroll
    for (int q = 0; q < Rows; ++q) {
      dot[q] = 0.0f;
      row[q] = x + (r0 + q < n ? r0 + q : n - 1) * d;  // past the end: a valid row, residual zeroed
    }
    for (std::size_t j = lane; j < d; j += 32) {
      const float wj = ws[j];
#pragma unroll
      for (int q = 0; q < Rows; ++q) dot[q] += row[q][j] * wj;
    }
#pragma unroll
    for (int q = 0; q < Rows; ++q)
      for (int off = 16; off > 0; off >>= 1) dot[q] += __shfl_xor_sync(0xffffffffu, dot[q], off);
    float res[Rows];
#pragma unroll
    for (int q = 0; q < Rows; ++q) res[q] = r0 + q < n ? dot[q] + b - y[r0 + q] : 0.0f;
    for (std::size_t j = lane; j < d; j += 32) {
      float s = g[j];
#pragma unroll
      for (int q = 0; q < Rows; ++q) s += res[q] * row[q][j];
      g[j] = s;
    }
#pragma unroll
    for (int q = 0; q < Rows; ++q) {
      gb += res[q];
      loss += res[q] * res[q];
    }
  }
  if (lane == 0) {
    tail[2 * warp] = gb;
    tail[2 * warp + 1] = loss;
  }
  __syncthreads();
  float* out = partial + static_cast<std::size_t>(blockIdx.x) * (d + 2);
  for (std::size_t j = threadIdx.x; j < d + 2; j += blockDim.x) {
    float s = 0.0f;
    if (j < d) {
      for (int k = 0; k < least_squares_warps; ++k) s += gs[static_cast<std::size_t>(k) * d + j];
    } else {
      for (int k = 0; k < least_squares_warps; ++k) s += tail[2 * k + (j - d)];
    }
    out[j] = s;
  }
}

/// out[0..d) = scale X^T r, out[d] = scale sum(r), out[d + 1] = sum(r^2), r = X w + *bias - y, on
/// `stream`. Returns false (doing nothing) when d is too wide for the kernel's shared memory.
template <class Exec>
bool cuda_least_squares_gradient(Exec&& exec, cudaStream_t stream, int sms, const float* x, const float* w, const float* bias,
                                 const float* y, std::size_t n, std::size_t d, float scale, float* scratch, float* out) {
  if (d > cuda_least_squares_max_d || n == 0) return false;
  const std::size_t blocks = cuda_least_squares_blocks(n, sms);
  const std::size_t smem = ((least_squares_warps + 1) * d + 2 * least_squares_warps) * sizeof(float);
  least_squares_kernel<4><<<static_cast<unsigned>(blocks), 32 * least_squares_warps, smem, stream>>>(x, w, bias, y, n, d,
                                                                                                    scratch);
  cuda_check(cudaGetLastError(), "least_squares_kernel<<<>>>", "fused least-squares gradient");
  for_each_index(exec, d + 2, SumPartials{scratch, out, blocks, d + 2, scale});
  return true;
}

}  // namespace tessera::detail
