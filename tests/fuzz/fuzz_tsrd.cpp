// libFuzzer target: the TSRD readers on any bytes - the whole file, a slice, a shard - and the
// headerless float32 reader, chosen and parameterised by the first two bytes.
#include <cstddef>
#include <cstdint>
#include <span>

#include "tessera/data/binary.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint8_t mode = data[0], k = data[1];
  const std::span<const unsigned char> bytes(data + 2, size - 2);
  const tessera::detail::MemorySource src(bytes, "fuzz.tsrd");
  try {
    switch (mode % 4) {
      case 0: (void)tessera::data::parse_binary(bytes, "fuzz.tsrd"); break;
      case 1: (void)tessera::data::parse_binary(bytes, "fuzz.tsrd", {.first_row = std::size_t{k} % 7, .row_count = std::size_t{k} / 7}); break;
      case 2: (void)tessera::detail::tsrd_read_shard(src, std::size_t{k} % 5, 1 + std::size_t{k} / 51); break;
      case 3: {
        // column counts near the limits too: 2^62 once divided by zero
        const std::size_t cols = (k & 128) ? (std::size_t{1} << (k & 63)) : std::size_t{k} + 1;
        (void)tessera::data::parse_raw_float32(bytes, "fuzz.f32", cols, tessera::data::ColumnRef(std::size_t{k} % 3));
        break;
      }
    }
  } catch (const tessera::Error&) {
  }
  return 0;
}
