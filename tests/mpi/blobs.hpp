// tests/mpi/blobs.hpp - the small three-class data set the MPI failure tests train on.
#pragma once

#include <vector>

#include "tessera/tessera.hpp"

namespace tessera::test {

/// n rows of d features in three classes (class i % 3 shifted by +2 in feature i % 3).
inline data::Dataset blobs(std::size_t n, std::size_t d) {
  Matrix x(n, d);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    y[i] = float(i % 3);
    for (std::size_t j = 0; j < d; ++j) x(i, j) = rng::normal(1, rng::Stream::user, i * d + j, 0) + (j == i % 3 ? 2.0f : 0.0f);
  }
  return {std::move(x), std::move(y)};
}

}  // namespace tessera::test
