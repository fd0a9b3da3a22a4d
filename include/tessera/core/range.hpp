// tessera/core/range.hpp - contiguous shares of n items: how a batch is cut between workers, a
// buffer between the lanes that reduce it, the micro-batches of a step.
#pragma once

#include <cstddef>

namespace tessera::detail {

/// Items [lo, hi).
struct Range {
  std::size_t lo, hi;
  [[nodiscard]] std::size_t size() const noexcept { return hi - lo; }
};

/// [lo, hi) of piece w when n items are cut into `parts` contiguous pieces, the remainder spread
/// one by one over the first pieces.
inline Range share(std::size_t n, std::size_t parts, std::size_t w) {
  const std::size_t q = n / parts, r = n % parts;
  const std::size_t lo = w * q + (w < r ? w : r);
  return {lo, lo + q + (w < r ? 1 : 0)};
}

/// Like share(), but with piece boundaries on multiples of `align` elements (64 bytes of floats by
/// default), so that workers writing neighbouring pieces never share a cache line.
inline Range share_aligned(std::size_t n, std::size_t parts, std::size_t w, std::size_t align = 16) {
  const std::size_t blocks = (n + align - 1) / align;
  const Range b = share(blocks, parts, w);
  const std::size_t lo = b.lo * align, hi = b.hi * align;
  return {lo < n ? lo : n, hi < n ? hi : n};
}

}  // namespace tessera::detail
