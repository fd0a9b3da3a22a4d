// tessera/model/init.hpp - seeded parameter initialisation, keyed by (seed, layer, element) so a
// model's starting point depends on nothing but its seed and shape.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "tessera/core/rng.hpp"
#include "tessera/model/architecture.hpp"

namespace tessera::detail {

/// He-normal for ReLU layers (std sqrt(2 / fan_in)), Glorot-normal otherwise
/// (std sqrt(2 / (fan_in + fan_out))); biases zero. Other kinds initialise their own.
inline void initialise(const Architecture& arch, std::uint64_t seed, std::vector<float>& params) {
  params.assign(arch.parameter_count(), 0.0f);
  for (std::size_t l = 0; l < arch.layers.size(); ++l) {
    const Layer& L = arch.layers[l];
    if (L.op) {  // the kind draws its own, keyed by (seed, layer)
      L.op->initialise(std::span<float>(params.data() + L.offset, L.parameter_count()), L.in, seed,
                       static_cast<std::uint32_t>(l));
      continue;
    }
    const double fan = L.activation == Activation::relu ? static_cast<double>(L.in) : 0.5 * static_cast<double>(L.in + L.out);
    const float stddev = static_cast<float>(std::sqrt(1.0 / fan) * (L.activation == Activation::relu ? std::sqrt(2.0) : 1.0));
    for (std::size_t i = 0; i < L.weight_count(); ++i)
      params[L.offset + i] = stddev * rng::normal(seed, rng::Stream::init, i, static_cast<std::uint32_t>(l));
  }
}

}  // namespace tessera::detail
