// libFuzzer target: task outcomes as a group of ranks reports them (tasks::decode_outcomes), of
// numbers, of lists of named numbers and of models (the first byte picks the result type and the
// task count). Whatever the bytes, reading ends with the outcomes or a tessera::Error, never more
// memory than the bytes hold; what is read writes back to the same bytes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tessera/select/search.hpp"
#include "tessera/tasks/pool.hpp"

namespace {
template <class R>
void read_back(std::string_view bytes, std::size_t tasks) {
  std::vector<tessera::tasks::Outcome<R>> all(tasks);
  std::vector<bool> seen(tasks, false);
  try {
    tessera::tasks::decode_outcomes<R>(bytes, all, seen);
  } catch (const tessera::Error&) {
    return;
  }
  std::vector<tessera::tasks::Outcome<R>> got;
  for (std::size_t i = 0; i < tasks; ++i)
    if (seen[i]) got.push_back(all[i]);
  // written again (in task order) and read again: the same outcomes
  std::vector<tessera::tasks::Outcome<R>> again(tasks);
  std::vector<bool> seen_again(tasks, false);
  tessera::tasks::decode_outcomes<R>(tessera::tasks::encode_outcomes(got), again, seen_again);
  if (seen_again != seen) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::size_t tasks = 1 + (data[0] >> 2);
  switch (data[0] & 3) {
    case 0: read_back<double>(bytes, tasks); break;
    case 1: read_back<std::vector<std::pair<std::string, double>>>(bytes, tasks); break;
    case 2: read_back<std::vector<float>>(bytes, tasks); break;
    default: read_back<tessera::Model>(bytes, tasks); break;
  }
  return 0;
}
