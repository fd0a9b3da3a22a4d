// libFuzzer target: model files on any bytes, read from memory (parse_model) and from a file
// (load_model, load_parameters into a model of another or the same architecture), by the first byte.
// A model parsed from memory must hold a usable input transform, if any, and write back to bytes
// that parse to a model writing the same bytes again.
#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "tessera/io/checkpoint.hpp"
#include "tessera/model/models.hpp"

namespace {
std::vector<unsigned char> bytes_of(const tessera::Model& m) {
  std::vector<unsigned char> out;
  tessera::detail::write_model(m, [&](const void* p, std::size_t n) {
    out.insert(out.end(), static_cast<const unsigned char*>(p), static_cast<const unsigned char*>(p) + n);
  });
  return out;
}
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
      if (const tessera::data::Standardizer* t = m.input_transform()) {
        if (t->columns() != m.input_dim() || t->inverse_scale().size() != m.input_dim()) __builtin_trap();
        for (std::size_t c = 0; c < t->columns(); ++c)
          if (!std::isfinite(t->mean()[c]) || !std::isfinite(t->inverse_scale()[c]) || !(t->inverse_scale()[c] > 0.0f))
            __builtin_trap();
        if (m.input_dim() <= 4096) (void)m.transform_input(tessera::Matrix(1, m.input_dim(), 1.0f));
      }
      const std::vector<unsigned char> once = bytes_of(m);
      if (bytes_of(tessera::parse_model(once, "rewritten.tsm")) != once) __builtin_trap();
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
