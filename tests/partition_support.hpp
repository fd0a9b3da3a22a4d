// tests/partition_support.hpp - what the model-parallel tests on threads (test_partition.cpp) and
// across ranks (mpi/test_mpi_partition.cpp) share: a scaled difference between buffers, a
// deterministic data set for each loss, and a five-layer model that every stage count fits.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "tessera/tessera.hpp"

namespace tessera::test {

/// max |a - b| / max |b| over a buffer.
inline double scaled_difference(const float* a, const float* b, std::size_t n) {
  double diff = 0.0, ref = 1e-30;
  for (std::size_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    ref = std::max(ref, std::fabs(static_cast<double>(b[i])));
  }
  return diff / ref;
}
inline double scaled_difference(std::span<const float> a, std::span<const float> b) {
  REQUIRE(a.size() == b.size());
  return scaled_difference(a.data(), b.data(), a.size());
}
inline double scaled_difference(const Matrix& a, const Matrix& b) {
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  return scaled_difference(a.data(), b.data(), a.rows() * a.cols());
}

/// rows x cols features and targets for `loss` with `outputs` outputs, deterministic.
inline data::Dataset make_data(std::size_t rows, std::size_t cols, std::size_t outputs, Loss loss, std::uint64_t seed) {
  Matrix x(rows, cols);
  const std::size_t tdim = loss == Loss::softmax_cross_entropy ? 1 : outputs;
  std::vector<float> y(rows * tdim);
  for (std::size_t r = 0; r < rows; ++r) {
    float s = 0.0f;
    for (std::size_t c = 0; c < cols; ++c) {
      x(r, c) = static_cast<float>(2.0 * rng::uniform(seed, rng::Stream::init, r, static_cast<std::uint32_t>(c)) - 1.0);
      s += x(r, c) * static_cast<float>(c % 3) - 0.3f * x(r, c) * x(r, c);
    }
    for (std::size_t t = 0; t < tdim; ++t) {
      if (loss == Loss::softmax_cross_entropy)
        y[r] = static_cast<float>(static_cast<std::size_t>(std::fabs(s) * 3.0f) % outputs);
      else if (loss == Loss::binary_cross_entropy)
        y[r * tdim + t] = (s + static_cast<float>(t)) > 0.5f ? 1.0f : 0.0f;
      else
        y[r * tdim + t] = std::sin(s + static_cast<float>(t));
    }
  }
  return data::Dataset(std::move(x), std::move(y), tdim);
}

/// Five layers with different widths and activations: every stage count from 1 to 5 applies.
inline Model deep_model(Loss loss, float weight_decay = 0.01f, std::uint64_t seed = 7) {
  const std::size_t out = loss == Loss::softmax_cross_entropy ? 4 : 3;
  return Model(10, {{16, act::tanh}, {12, act::relu}, {9, act::sigmoid}, {11, act::relu}, {out, act::identity}}, loss,
               {.seed = seed, .weight_decay = weight_decay});
}

}  // namespace tessera::test
