// Inputs for the tests that compare two ways of computing the same pass (CPU against GPU, CPU
// against the GPU's launch layout): targets that fit each loss. Plain C++, so that nvcc's test
// units include it too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tessera/core/rng.hpp"
#include "tessera/model/architecture.hpp"

namespace tessera::test {

/// rows x target_dim targets for `a`'s loss: normal values (squared error), 0/1 (binary cross-
/// entropy) or class indices cycling through the outputs (softmax cross-entropy).
inline std::vector<float> targets_for(const Architecture& a, std::size_t rows, std::uint64_t seed) {
  std::vector<float> y(rows * a.target_dim());
  for (std::size_t i = 0; i < y.size(); ++i) {
    switch (a.loss) {
      case Loss::mean_squared_error: y[i] = rng::normal(seed, rng::Stream::user, i, 9); break;
      case Loss::binary_cross_entropy: y[i] = float(rng::uniform(seed, rng::Stream::user, i, 9) < 0.5f); break;
      case Loss::softmax_cross_entropy: y[i] = float(i % a.output_dim()); break;
    }
  }
  return y;
}

}  // namespace tessera::test
