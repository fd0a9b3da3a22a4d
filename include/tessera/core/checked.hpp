// tessera/core/checked.hpp - arithmetic on counts read from untrusted headers, and the one
// checksum of tessera's binary files. A count from a file is multiplied or added only through
// these, so that a crafted header cannot wrap around 2^64 into a small allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

namespace tessera::detail {

/// a * b, or UINT64_MAX when it overflows (no file or buffer is that large).
constexpr std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t b) noexcept {
  return a != 0 && b > UINT64_MAX / a ? UINT64_MAX : a * b;
}
/// a + b, or UINT64_MAX when it overflows.
constexpr std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
  return b > UINT64_MAX - a ? UINT64_MAX : a + b;
}
/// True when a * b overflows std::size_t; otherwise out = a * b.
constexpr bool mul_overflows(std::size_t a, std::size_t b, std::size_t& out) noexcept {
  if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) return true;
  out = a * b;
  return false;
}
/// True when a + b overflows std::size_t; otherwise out = a + b.
constexpr bool add_overflows(std::size_t a, std::size_t b, std::size_t& out) noexcept {
  if (b > std::numeric_limits<std::size_t>::max() - a) return true;
  out = a + b;
  return false;
}

/// FNV-1a, 64 bits, with the standard offset basis: the checksum that closes every tessera file.
inline constexpr std::uint64_t fnv1a_basis = 14695981039346656037ull;
/// The offset basis version-1 model files were written with (one digit short of the standard one);
/// kept only to verify those files.
inline constexpr std::uint64_t fnv1a_basis_model_v1 = 1469598103934665603ull;

inline std::uint64_t fnv1a(const void* data, std::size_t n, std::uint64_t h = fnv1a_basis) noexcept {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace tessera::detail
