// tessera/detail/layer_kernels.hpp - the kernels of the shipped layers other than dense (layer
// normalisation, dropout and embedding), as __host__ __device__ functors launched with a device's
// execution policy: the same code on the CPU and in the CUDA build.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "tessera/core/rng.hpp"
#include "tessera/detail/launch.hpp"

namespace tessera::detail {

/// Row r of a layer normalisation: y = gain * (x - mean) / sqrt(var + eps) + bias over the row's
/// `cols` values; keeps mean and 1/sqrt(var + eps) in saved[2r], saved[2r + 1] for the backward
/// pass. Mean and variance are summed in double, in column order, so the bits do not depend on
/// how rows are spread over threads.
struct LayerNormForward {
  const float* x;
  float* y;
  const float* gain;
  const float* bias;
  float* saved;
  std::size_t cols;
  float eps;
  TESSERA_HD void operator()(std::size_t r) const {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    double s = 0.0;
    for (std::size_t j = 0; j < cols; ++j) s += xr[j];
    const double mean = s / static_cast<double>(cols);
    double v = 0.0;
    for (std::size_t j = 0; j < cols; ++j) {
      const double c = xr[j] - mean;
      v += c * c;
    }
    const auto rstd = static_cast<float>(1.0 / std::sqrt(v / static_cast<double>(cols) + eps));
    const auto m = static_cast<float>(mean);
    for (std::size_t j = 0; j < cols; ++j) yr[j] = gain[j] * ((xr[j] - m) * rstd) + bias[j];
    saved[2 * r] = m;
    saved[2 * r + 1] = rstd;
  }
};

/// Row r's input gradient: with h = (x - mean) * rstd and g = dy * gain,
/// dx = rstd * (g - mean(g) - h * mean(g * h)).
struct LayerNormInputGradient {
  const float* x;
  const float* dy;
  float* dx;
  const float* gain;
  const float* saved;
  std::size_t cols;
  TESSERA_HD void operator()(std::size_t r) const {
    const float* xr = x + r * cols;
    const float* dr = dy + r * cols;
    float* out = dx + r * cols;
    const float m = saved[2 * r], rstd = saved[2 * r + 1];
    double sg = 0.0, sgh = 0.0;
    for (std::size_t j = 0; j < cols; ++j) {
      const float g = dr[j] * gain[j];
      sg += g;
      sgh += static_cast<double>(g) * ((xr[j] - m) * rstd);
    }
    const auto n = static_cast<double>(cols);
    const auto mg = static_cast<float>(sg / n), mgh = static_cast<float>(sgh / n);
    for (std::size_t j = 0; j < cols; ++j) out[j] = rstd * (dr[j] * gain[j] - mg - ((xr[j] - m) * rstd) * mgh);
  }
};

/// Column j's gain and bias gradients, summed over the rows in row order (deterministic):
/// dgain_j = sum_r dy_rj h_rj, dbias_j = sum_r dy_rj; added to the buffer when `accumulate`.
struct LayerNormParameterGradient {
  const float* x;
  const float* dy;
  const float* saved;
  float* dgain;
  float* dbias;
  std::size_t rows, cols;
  bool accumulate;
  TESSERA_HD void operator()(std::size_t j) const {
    float sg = 0.0f, sb = 0.0f;
    for (std::size_t r = 0; r < rows; ++r) {
      const float d = dy[r * cols + j];
      sg += d * ((x[r * cols + j] - saved[2 * r]) * saved[2 * r + 1]);
      sb += d;
    }
    dgain[j] = accumulate ? dgain[j] + sg : sg;
    dbias[j] = accumulate ? dbias[j] + sb : sb;
  }
};

/// The key of one dropout layer's masks in one step: a pure function of (seed, epoch, step,
/// layer), so a mask depends on none of worker count, thread order or restarts.
TESSERA_HD inline std::uint64_t dropout_key(std::uint64_t seed, std::uint64_t epoch, std::uint64_t step,
                                            std::uint32_t layer) noexcept {
  return rng::u64(seed, rng::Stream::dropout, (epoch << 32) ^ step, layer);
}

/// Whether element (position, column) is kept: one Philox draw per (sample position, column).
TESSERA_HD inline bool dropout_keeps(std::uint64_t key, std::uint64_t position, std::size_t column, float p) noexcept {
  return rng::uniform(key, rng::Stream::dropout, position, static_cast<std::uint32_t>(column)) >= p;
}

/// Element i of rows x cols: out = in * keep / (1 - p), for the forward pass (in = x) and the
/// backward one (in = dy): the mask is drawn again, never stored.
struct DropoutApply {
  const float* in;
  float* out;
  std::uint64_t key, first;  ///< the step's key, and the first row's sample position
  std::size_t cols;
  float p, scale;
  TESSERA_HD void operator()(std::size_t i) const {
    const std::size_t r = i / cols, j = i % cols;
    out[i] = dropout_keeps(key, first + r, j, p) ? in[i] * scale : 0.0f;
  }
};

struct CopyOf {
  const float* in;
  float* out;
  TESSERA_HD void operator()(std::size_t i) const { out[i] = in[i]; }
};

/// Whether `v` is an id of a vocabulary of `vocabulary` categories: a whole number in
/// [0, vocabulary). NaN fails both comparisons and infinity the upper one, so the cast that tests
/// wholeness only ever sees a value in range (where it is defined).
TESSERA_HD inline bool embedding_id_valid(float v, std::size_t vocabulary) noexcept {
  if (!(v >= 0.0f && static_cast<double>(v) < static_cast<double>(vocabulary))) return false;
  return static_cast<float>(static_cast<std::size_t>(v)) == v;
}

/// The id columns of an embedding's input (rows x in, the last `columns` features), item
/// i = r * columns + c: 1 for a bad id, 0 for a good one, summed to count the bad ones.
struct EmbeddingBadId {
  const float* x;
  std::size_t in, lead, columns, vocabulary;
  TESSERA_HD double operator()(std::size_t i) const {
    return embedding_id_valid(x[(i / columns) * in + lead + i % columns], vocabulary) ? 0.0 : 1.0;
  }
};

/// Same items: i for a bad id, `none` for a good one, so that the smallest is the first bad id.
struct EmbeddingFirstBadId {
  EmbeddingBadId bad;
  std::size_t none;
  TESSERA_HD std::size_t operator()(std::size_t i) const { return bad(i) != 0.0 ? i : none; }
};

/// p[i] as a double: summed over the one item i = 0, it brings a value of device memory to the
/// host (NaN and infinity included) through the same reduction every device has.
struct ValueAt {
  const float* p;
  TESSERA_HD double operator()(std::size_t i) const { return static_cast<double>(p[i]); }
};

/// Element i of the output (rows x out, out = lead + columns * dim): the leading `lead` input
/// features pass through; the rest is row `id` of table c, c = the id column, table c at
/// c * vocabulary * dim and row id at id * dim in it. The ids were checked before the launch.
struct EmbeddingForward {
  const float* x;
  float* y;
  const float* tables;
  std::size_t in, out, lead, vocabulary, dim;
  TESSERA_HD void operator()(std::size_t i) const {
    const std::size_t r = i / out, j = i % out;
    if (j < lead) {
      y[i] = x[r * in + j];
      return;
    }
    const std::size_t k = j - lead, c = k / dim;
    const auto id = static_cast<std::size_t>(x[r * in + lead + c]);
    y[i] = tables[(c * vocabulary + id) * dim + k % dim];
  }
};

/// Item k = c * dim + e: entry e of every row of table c's gradient, the rows of the pass added in
/// row order (the same bits however items are spread over threads; distinct items write distinct
/// entries). A bad id, which forward refuses, is skipped: nothing outside the table is written.
struct EmbeddingTableGradient {
  const float* x;
  const float* dy;
  float* grads;
  std::size_t rows, in, out, lead, vocabulary, dim;
  TESSERA_HD void operator()(std::size_t k) const {
    const std::size_t c = k / dim;
    float* table = grads + c * vocabulary * dim + k % dim;
    for (std::size_t r = 0; r < rows; ++r) {
      const float v = x[r * in + lead + c];
      if (embedding_id_valid(v, vocabulary)) table[static_cast<std::size_t>(v) * dim] += dy[r * out + lead + k];
    }
  }
};

/// Element i of the input gradient (rows x in): the pass-through features get their output's
/// gradient, the id columns 0 (an id is not differentiable).
struct EmbeddingInputGradient {
  const float* dy;
  float* dx;
  std::size_t in, out, lead;
  TESSERA_HD void operator()(std::size_t i) const {
    const std::size_t r = i / in, j = i % in;
    dx[i] = j < lead ? dy[r * out + j] : 0.0f;
  }
};

}  // namespace tessera::detail
