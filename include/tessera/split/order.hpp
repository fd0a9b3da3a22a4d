// tessera/split/order.hpp - the order of an epoch under a DataSplit choice.
#pragma once

#include <cstdint>
#include <vector>

#include "tessera/split/choices.hpp"

namespace tessera::detail {

/// The sample order of `epoch` (0-based); an empty vector means the data set's own order.
template <class Split>
std::vector<std::size_t> epoch_order(const data::Dataset& d, std::uint64_t seed, std::uint32_t epoch) {
  return Split::order(d, seed, epoch);
}

}  // namespace tessera::detail
