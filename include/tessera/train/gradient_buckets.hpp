// tessera/train/gradient_buckets.hpp - how a flat gradient is cut into all-reduce buckets that can
// start while the backward pass goes on (Reduce<NcclAllreduce>).
#pragma once

#include <cstddef>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/model/architecture.hpp"

namespace tessera::detail {

/// Parameters [lo, hi) of the flat buffer: layers low_layer .. up, whole.
struct GradientBucket {
  std::size_t lo = 0, hi = 0, low_layer = 0;
};

/// Buckets of whole layers, last layer first (the order in which the backward pass finishes them),
/// each at least `floats` values except possibly the last one (the first layers). Layers are
/// contiguous in the flat buffer, so each bucket is one range, and together they cover it once.
/// A bucket is ready once the backward pass has finished its `low_layer`.
inline std::vector<GradientBucket> plan_gradient_buckets(const Architecture& arch, std::size_t floats) {
  detail::require(!arch.layers.empty(), ErrorKind::invalid_argument, "gradient buckets: the architecture has no layers");
  detail::require(floats > 0, ErrorKind::invalid_argument, "gradient buckets: the bucket size must be at least one float");
  std::vector<GradientBucket> buckets;
  const auto& layers = arch.layers;
  GradientBucket b{0, layers.back().offset + layers.back().parameter_count(), 0};
  for (std::size_t l = layers.size(); l-- > 0;) {
    b.lo = layers[l].offset;
    b.low_layer = l;
    if (b.hi - b.lo >= floats || l == 0) {
      buckets.push_back(b);
      b = GradientBucket{0, b.lo, 0};
    }
  }
  return buckets;
}

}  // namespace tessera::detail
