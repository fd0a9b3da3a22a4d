// tessera/detail/elementwise.hpp - small elementwise functors shared by several kernels.
#pragma once

#include <cstddef>

#include "tessera/detail/launch.hpp"

namespace tessera::detail {

struct Fill {
  float* x;
  float v;
  TESSERA_HD void operator()(std::size_t i) const { x[i] = v; }
};

/// y[i] += a * x[i]
struct Axpy {
  float* y;
  const float* x;
  float a;
  TESSERA_HD void operator()(std::size_t i) const { y[i] += a * x[i]; }
};

/// y[i] = a * x[i] (+ y[i] when accumulating)
struct ScaleInto {
  float* y;
  const float* x;
  float a;
  bool accumulate;
  TESSERA_HD void operator()(std::size_t i) const { y[i] = accumulate ? y[i] + a * x[i] : a * x[i]; }
};

struct SquareOf {
  const float* x;
  TESSERA_HD double operator()(std::size_t i) const { return static_cast<double>(x[i]) * x[i]; }
};

template <class Exec>
void fill(Exec&& exec, float* x, std::size_t n, float v) {
  for_each_element(exec, n, Fill{x, v});
}

}  // namespace tessera::detail
