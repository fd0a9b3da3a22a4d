// tessera/detail/gradient_view.hpp - where an update reads its gradient, element by element: one
// buffer, or the sum of two workers' buffers (a two-worker all-reduce fused into the update: one
// pass instead of a reduction, then an update). Communicators hand these to an update; update
// rules read through them, on the host and on a device.
#pragma once

#include <cstddef>

#include "tessera/detail/config.hpp"

namespace tessera::detail {

struct GradientOf {
  const float* g;
  TESSERA_HD float operator()(std::size_t i) const { return g[i]; }
};

struct GradientSum2 {
  const float* a;
  const float* b;
  TESSERA_HD float operator()(std::size_t i) const { return a[i] + b[i]; }
};

}  // namespace tessera::detail
