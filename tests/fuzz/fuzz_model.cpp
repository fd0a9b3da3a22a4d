// libFuzzer target: model files on any bytes, read from memory (parse_model) and from a file
// (load_model, load_parameters into a model of another or the same architecture), by the first byte.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>

#include "tessera/io/checkpoint.hpp"
#include "tessera/model/models.hpp"

namespace {
std::string scratch_file() {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir && *dir ? dir : "/tmp") + "/tessera_fuzz_model_" + std::to_string(::getpid()) + ".tsm";
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::span<const unsigned char> bytes(data + 1, size - 1);
  try {
    if (data[0] % 3 == 0) {
      const tessera::Model m = tessera::parse_model(bytes, "fuzz.tsm");
      if (m.parameter_count() != m.architecture().parameter_count()) __builtin_trap();
    } else {
      static const std::string path = scratch_file();
      if (std::FILE* f = std::fopen(path.c_str(), "wb")) {
        std::fwrite(bytes.data(), 1, bytes.size(), f);
        std::fclose(f);
      }
      if (data[0] % 3 == 1) {
        (void)tessera::load_model(path);
      } else {
        tessera::Model target = tessera::models::mlp({4, 6, 2}, tessera::act::relu, tessera::loss::binary_cross_entropy);
        tessera::load_parameters(target, path);
      }
    }
  } catch (const tessera::Error&) {
  }
  return 0;
}
