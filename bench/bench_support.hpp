// bench/bench_support.hpp - what the training benchmarks share: a synthetic classification data set
// and the flop count of an MLP's forward and backward pass.
#pragma once

#include <cstddef>
#include <vector>

#include <tessera/tessera.hpp>

namespace tessera::bench {

/// n rows of d standard-normal features, labels cycling over `classes`.
inline data::Dataset synthetic(std::size_t n, std::size_t d, std::size_t classes) {
  Matrix x(n, d);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = rng::normal(1, rng::Stream::user, i, 0);
  for (std::size_t i = 0; i < n; ++i) y[i] = static_cast<float>(i % classes);
  return {std::move(x), std::move(y)};
}

/// Multiply-adds of forward and backward for one sample of an MLP with layer sizes `sizes`, 2 flops
/// each: the forward product, the weight gradient and (all layers but the first) the input gradient.
inline double flops_per_sample(const std::vector<std::size_t>& sizes) {
  double f = 0.0;
  for (std::size_t l = 1; l < sizes.size(); ++l)
    f += (l == 1 ? 4.0 : 6.0) * static_cast<double>(sizes[l - 1] * sizes[l]);
  return f;
}

}  // namespace tessera::bench
