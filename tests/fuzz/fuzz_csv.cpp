// libFuzzer target: data::parse_csv on any bytes, with the options drawn from the first byte
// (header or not, label by index or name, delimiter, class count, non-finite values). Anything
// but a tessera::Error is a finding, as is a crash, a leak or an allocation over the limit.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tessera/data/csv.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t o = data[0];
  tessera::data::CsvOptions options;
  options.header = (o & 1) != 0;
  options.delimiter = (o & 2) ? ';' : ',';
  options.allow_non_finite = (o & 4) != 0;
  options.num_classes = (o & 8) ? 10 : 0;
  if (o & 16) options.label = tessera::data::ColumnRef(static_cast<std::size_t>(o >> 5));
  else if (o & 32) options.label = tessera::data::ColumnRef("y");
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const tessera::data::Dataset d = tessera::data::parse_csv(text, "fuzz.csv", options);
    if (d.rows() == 0 || d.targets.size() != d.rows()) __builtin_trap();  // a result is always whole
  } catch (const tessera::Error&) {
  }
  return 0;
}
