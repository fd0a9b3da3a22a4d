// libFuzzer target: training checkpoints on any bytes, read from memory (parse_checkpoint) and
// from a file (load_checkpoint). Whatever the bytes, the reader returns a checkpoint whose parts
// agree with each other or throws tessera::Error; it never allocates more than the bytes justify.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>

#include "tessera/train/checkpoint.hpp"

namespace {
std::string scratch_file() {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir && *dir ? dir : "/tmp") + "/tessera_fuzz_checkpoint_" + std::to_string(::getpid()) + ".tsrckpt";
}
void check(const tessera::Checkpoint& c) {
  if (c.history.epochs.size() != c.epoch) __builtin_trap();
  for (const auto& m : c.moments)
    if (m.size() != c.model.parameter_count()) __builtin_trap();
  if (c.step >= c.steps_per_epoch && !(c.step == 0 && c.steps_per_epoch == 0)) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::span<const unsigned char> bytes(data + 1, size - 1);
  try {
    if (data[0] % 2 == 0) {
      check(tessera::parse_checkpoint(bytes, "fuzz.tsrckpt"));
    } else {
      static const std::string path = scratch_file();
      if (std::FILE* f = std::fopen(path.c_str(), "wb")) {
        std::fwrite(bytes.data(), 1, bytes.size(), f);
        std::fclose(f);
        check(tessera::load_checkpoint(path));
      }
    }
  } catch (const tessera::Error&) {
  }
  return 0;
}
