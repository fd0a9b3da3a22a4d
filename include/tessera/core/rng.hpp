// tessera/core/rng.hpp - counter-based random numbers (Philox4x32-10).
//
// Every draw is a pure function of (seed, stream, a, b): no state, no order dependence. The
// library keys draws by (seed, purpose, epoch, sample index), so a shuffle or an initialisation
// does not depend on how many workers there are or in which order they ask.
#pragma once

#include <cmath>
#include <cstdint>

#include "tessera/detail/config.hpp"

namespace tessera::rng {

/// Four 32-bit words: Philox's counter and output block.
struct Block {
  /// The four 32-bit words.
  std::uint32_t v[4];
};

/// Philox4x32 with 10 rounds (Salmon et al., SC'11), the generator of cuRAND and JAX.
TESSERA_HD inline Block philox(std::uint64_t key, Block ctr) noexcept {
  std::uint32_t k0 = static_cast<std::uint32_t>(key), k1 = static_cast<std::uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = std::uint64_t{0xD2511F53u} * ctr.v[0];
    const std::uint64_t p1 = std::uint64_t{0xCD9E8D57u} * ctr.v[2];
    const std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    ctr = Block{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return ctr;
}

/// Named streams keep the draws of different purposes independent under one seed.
enum class Stream : std::uint32_t { init = 1, shuffle = 2, split = 3, dropout = 4, user = 16 };

/// 128 random bits for (seed, stream, a, b).
TESSERA_HD inline Block bits(std::uint64_t seed, Stream s, std::uint64_t a, std::uint32_t b) noexcept {
  return philox(seed, Block{{static_cast<std::uint32_t>(a), static_cast<std::uint32_t>(a >> 32),
                             b, static_cast<std::uint32_t>(s)}});
}

/// 64 random bits for (seed, stream, a, b).
TESSERA_HD inline std::uint64_t u64(std::uint64_t seed, Stream s, std::uint64_t a, std::uint32_t b) noexcept {
  const Block r = bits(seed, s, a, b);
  return (std::uint64_t{r.v[0]} << 32) | r.v[1];
}

/// Uniform float in [0, 1) from the top 24 bits of a word.
TESSERA_HD inline float to_unit(std::uint32_t w) noexcept {
  return static_cast<float>(w >> 8) * (1.0f / 16777216.0f);
}

/// Uniform float in [0, 1) for (seed, stream, a, b).
TESSERA_HD inline float uniform(std::uint64_t seed, Stream s, std::uint64_t a, std::uint32_t b) noexcept {
  return to_unit(bits(seed, s, a, b).v[0]);
}

/// Standard normal for (seed, stream, a, b), by Box-Muller on two words of one block.
TESSERA_HD inline float normal(std::uint64_t seed, Stream s, std::uint64_t a, std::uint32_t b) noexcept {
  const Block r = bits(seed, s, a, b);
  const float u1 = (static_cast<float>(r.v[0] >> 8) + 1.0f) * (1.0f / 16777216.0f);  // (0, 1]
  const float u2 = to_unit(r.v[1]);
  return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853071795864f * u2);
}

}  // namespace tessera::rng
