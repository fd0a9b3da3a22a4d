// tessera/io/checkpoint.hpp - save and load a model: architecture and flat parameters in a
// versioned little-endian binary file closed by an FNV-1a checksum.
//
// Layout (version 1): "TSRMODL1" | u32 version | u64 input_dim | u64 layer count |
// per layer: u64 out, u32 activation | u32 loss | f32 weight_decay | u64 parameter count |
// parameters (f32) | u64 checksum of every byte before it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tessera/core/writer.hpp"
#include "tessera/model/model.hpp"

namespace tessera {

namespace detail {

inline constexpr char model_magic[8] = {'T', 'S', 'R', 'M', 'O', 'D', 'L', '1'};
inline constexpr std::uint32_t model_format_version = 1;

inline std::uint64_t fnv1a(const unsigned char* p, std::size_t n, std::uint64_t h = 1469598103934665603ull) {
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

class ByteWriter {
 public:
  template <class T>
  void put(const T& v) {
    const auto* p = reinterpret_cast<const unsigned char*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  std::vector<unsigned char> bytes;
};

class ByteReader {
 public:
  ByteReader(const std::vector<unsigned char>& b, std::size_t end, const std::string& path) : b_(b), end_(end), path_(path) {}
  template <class T>
  T get(const char* what) {
    if (pos_ + sizeof(T) > end_)
      fail(ErrorKind::format, path_ + ": truncated model file: ends at byte " + std::to_string(end_) +
                                  " while reading the " + what + " at byte " + std::to_string(pos_));
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  [[nodiscard]] std::size_t position() const noexcept { return pos_; }

 private:
  const std::vector<unsigned char>& b_;
  std::size_t end_, pos_ = 0;
  const std::string& path_;
};

inline std::vector<unsigned char> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  require(static_cast<bool>(f), ErrorKind::io, path + ": cannot open model file for reading");
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(f), {});
}

}  // namespace detail

/// Writes the model to `path` (through a temporary file renamed at the end, so a failed save never
/// leaves a partial file under the real name). Under mpi::Environment only rank 0 writes; the other
/// ranks return at once.
inline void save(const Model& model, const std::string& path) {
  static_assert(sizeof(float) == 4, "tessera checkpoints store IEEE float32");
  if (!detail::this_process_writes().load()) return;
  detail::ByteWriter w;
  w.bytes.insert(w.bytes.end(), detail::model_magic, detail::model_magic + 8);
  const Architecture& a = model.architecture();
  w.put(detail::model_format_version);
  w.put(std::uint64_t{a.input_dim});
  w.put(std::uint64_t{a.layers.size()});
  for (const DenseLayer& L : a.layers) {
    w.put(std::uint64_t{L.out});
    w.put(static_cast<std::uint32_t>(L.activation));
  }
  w.put(static_cast<std::uint32_t>(a.loss));
  w.put(model.weight_decay());
  w.put(std::uint64_t{model.parameter_count()});
  for (float p : model.parameters()) w.put(p);
  w.put(detail::fnv1a(w.bytes.data(), w.bytes.size()));

  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    detail::require(static_cast<bool>(f), ErrorKind::io, path + ": cannot open for writing");
    f.write(reinterpret_cast<const char*>(w.bytes.data()), static_cast<std::streamsize>(w.bytes.size()));
    detail::require(static_cast<bool>(f.flush()), ErrorKind::io, path + ": write failed (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  detail::require(!ec, ErrorKind::io, path + ": cannot move the saved model into place: " + ec.message());
}

/// Reads a model written by save(): its architecture, weight decay and parameters.
inline Model load_model(const std::string& path) {
  const std::vector<unsigned char> b = detail::read_all(path);
  detail::require(b.size() >= 8 && std::memcmp(b.data(), detail::model_magic, 8) == 0, ErrorKind::format,
                  path + ": not a tessera model file (it does not start with \"TSRMODL1\")");
  detail::require(b.size() >= 8 + 4 + 8, ErrorKind::format,
                  path + ": truncated model file: " + std::to_string(b.size()) + " bytes");
  const std::size_t body = b.size() - 8;
  detail::ByteReader r(b, body, path);
  r.get<std::uint64_t>("magic");
  const auto version = r.get<std::uint32_t>("format version");
  detail::require(version == detail::model_format_version, ErrorKind::format,
                  path + ": model format version " + std::to_string(version) + ", this tessera reads version " +
                      std::to_string(detail::model_format_version));
  const auto input = r.get<std::uint64_t>("input dimension");
  const auto count = r.get<std::uint64_t>("layer count");
  detail::require(count > 0 && count < (1u << 20), ErrorKind::format,
                  path + ": implausible layer count " + std::to_string(count) + " (corrupted file?)");
  std::vector<DenseSpec> specs;
  for (std::uint64_t i = 0; i < count; ++i) {
    const auto out = r.get<std::uint64_t>("layer width");
    const auto act = r.get<std::uint32_t>("activation");
    detail::require(act <= static_cast<std::uint32_t>(Activation::sigmoid), ErrorKind::format,
                    path + ": layer " + std::to_string(i) + " has unknown activation code " + std::to_string(act));
    specs.push_back({static_cast<std::size_t>(out), static_cast<Activation>(act)});
  }
  const auto loss = r.get<std::uint32_t>("loss");
  detail::require(loss <= static_cast<std::uint32_t>(Loss::softmax_cross_entropy), ErrorKind::format,
                  path + ": unknown loss code " + std::to_string(loss));
  const auto wd = r.get<float>("weight decay");
  const auto n = r.get<std::uint64_t>("parameter count");
  const std::size_t expected = r.position() + n * 4 + 8;
  detail::require(b.size() == expected, ErrorKind::format,
                  path + ": " + (b.size() < expected ? "truncated" : "oversized") + " model file: " +
                      std::to_string(n) + " parameters need " + std::to_string(expected) + " bytes, the file has " +
                      std::to_string(b.size()));
  std::uint64_t stored;
  std::memcpy(&stored, b.data() + body, 8);
  detail::require(stored == detail::fnv1a(b.data(), body), ErrorKind::format,
                  path + ": checksum mismatch: the model file is corrupted");
  Model m(Architecture(static_cast<std::size_t>(input), specs, static_cast<Loss>(loss)), {.weight_decay = wd});
  detail::require(m.parameter_count() == n, ErrorKind::format,
                  path + ": the architecture " + m.architecture().describe() + " has " +
                      std::to_string(m.parameter_count()) + " parameters, the file stores " + std::to_string(n));
  std::memcpy(m.parameters().data(), b.data() + r.position(), n * 4);
  return m;
}

/// Loads parameters into an existing model, which must have the same architecture.
inline void load_parameters(Model& model, const std::string& path) {
  Model m = load_model(path);
  detail::require(m.architecture() == model.architecture(), ErrorKind::shape,
                  path + ": the file holds a " + m.architecture().describe() + " model, the target is " +
                      model.architecture().describe());
  std::copy(m.parameters().begin(), m.parameters().end(), model.parameters().begin());
}

}  // namespace tessera
