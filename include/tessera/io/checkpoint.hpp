// tessera/io/checkpoint.hpp - save and load a model: architecture, flat parameters and input
// transform in a versioned binary file closed by an FNV-1a checksum.
//
// Layout (version 4; little-endian, no padding; docs/usage.md has the table):
// "TSRMODL1" | u32 version | u64 input_dim | u64 layer count |
// per layer: u64 out, u32 activation, u32 kind length k, u32 options length o, k bytes of kind
// name (none for dense), o bytes of options text |
// u32 loss (the enum loss, or the family of a loss kind), u32 loss kind length k, u32 loss
// options length o, k bytes of loss kind name (none for an enum loss), o bytes of options |
// f32 weight_decay | u64 parameter count |
// parameters (f32) | u32 input transform kind (0 none, 1 standardizer) |
// kind 1: u64 columns (= input_dim), f32 mean per column, f32 inverse scale per column |
// u64 FNV-1a of every byte before it.
// Version 3 is version 4 with dense layers and enum losses only, and no kind or options fields
// (u64 out, u32 activation per layer; u32 loss); version 2 is version 3 without the transform section (the checksum
// follows the parameters); version 1 is version 2 with another offset basis for the checksum.
// All four load.
//
// Loading is bounded: the layer table, the parameter count the layers imply (overflow-checked),
// the stored count and the transform section are all checked against the bytes the file holds
// before anything is allocated, and the parameters are read straight into the model, never drawn
// first. A checksum guards against damage, not against a crafted file: the bounds do that.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "tessera/core/checked.hpp"
#include "tessera/core/file.hpp"
#include "tessera/core/writer.hpp"
#include "tessera/model/model.hpp"

namespace tessera {

namespace detail {

inline constexpr char model_magic[8] = {'T', 'S', 'R', 'M', 'O', 'D', 'L', '1'};
inline constexpr std::uint32_t model_format_version = 4;
/// Bounds of a layer kind's name and options text in a model file.
inline constexpr std::uint32_t model_max_kind_bytes = 255, model_max_option_bytes = 1 << 16;
/// What follows the parameters in a version-3 file.
enum class InputTransformKind : std::uint32_t { none = 0, standardizer = 1 };
inline constexpr std::uint64_t model_max_layers = std::uint64_t{1} << 20;

/// Reads a source front to back, hashing what it reads; `kind` ("model file", "checkpoint")
/// names the file in messages.
template <class Source>
class ModelReader {
 public:
  ModelReader(const Source& src, std::uint64_t basis, const char* kind = "model file")
      : src_(src), kind_(kind), hash_(basis) {}
  template <class T>
  T get(const char* what) {
    T v;
    bytes(&v, sizeof(T), what);
    return v;
  }
  void bytes(void* to, std::size_t n, const char* what) {
    if (n > src_.size() - pos_)
      fail(ErrorKind::format, src_.name() + ": truncated " + kind_ + ": ends at byte " + std::to_string(src_.size()) +
                                  " while reading the " + what + " at byte " + std::to_string(pos_));
    src_.read(pos_, to, n);
    hash_ = fnv1a(to, n, hash_);
    pos_ += n;
  }
  [[nodiscard]] std::uint64_t position() const noexcept { return pos_; }
  [[nodiscard]] std::uint64_t remaining() const noexcept { return src_.size() - pos_; }
  [[nodiscard]] std::uint64_t hash() const noexcept { return hash_; }

 private:
  const Source& src_;
  std::string kind_;
  std::uint64_t pos_ = 0, hash_;
};

/// Bytes [at, at + n) of another source, as a source of their own (a model file inside a
/// checkpoint); the range was checked against the outer source's size.
template <class Source>
class SliceSource {
 public:
  SliceSource(const Source& src, std::uint64_t at, std::uint64_t n, std::string name)
      : src_(src), at_(at), n_(n), name_(std::move(name)) {}
  [[nodiscard]] std::uint64_t size() const noexcept { return n_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  void read(std::uint64_t at, void* to, std::size_t n) const {
    require(at <= n_ && n <= n_ - at, ErrorKind::format,
            name_ + ": truncated: needs bytes up to " + std::to_string(at + n) + ", has " + std::to_string(n_));
    src_.read(at_ + at, to, n);
  }

 private:
  const Source& src_;
  std::uint64_t at_, n_;
  std::string name_;
};

template <class Source>
Model read_model(const Source& src) {
  const std::string& path = src.name();
  {
    char head[8] = {};
    const auto got = static_cast<std::size_t>(std::min<std::uint64_t>(src.size(), 8));
    src.read(0, head, got);
    require(got == 8 && std::memcmp(head, model_magic, 8) == 0, ErrorKind::format,
            path + ": not a tessera model file (it does not start with \"TSRMODL1\")");
  }
  std::uint32_t version = 0;
  if (src.size() >= 12) src.read(8, &version, 4);
  require(version >= 1 && version <= model_format_version, ErrorKind::format,
          path + ": model format version " + std::to_string(version) + ", this tessera reads versions 1 to " +
              std::to_string(model_format_version));
  ModelReader<Source> r(src, version == 1 ? fnv1a_basis_model_v1 : fnv1a_basis);
  char magic[8];
  r.bytes(magic, 8, "magic");
  r.template get<std::uint32_t>("format version");
  const auto input = r.template get<std::uint64_t>("input dimension");
  const auto count = r.template get<std::uint64_t>("layer count");
  require(count > 0 && count < model_max_layers, ErrorKind::format,
          path + ": implausible layer count " + std::to_string(count) + " (corrupted file?)");
  // the layer table, loss, weight decay, parameter count and checksum must all be in the file (the
  // loss's kind and options are checked against the bytes left when their lengths are read)
  const std::uint64_t table = saturating_mul(count, version >= 4 ? 20 : 12);
  require(saturating_add(table, 4 + 4 + 8 + 8) <= r.remaining(), ErrorKind::format,
          path + ": truncated model file: " + std::to_string(count) + " layers need at least " +
              std::to_string(r.position() + table + 24) + " bytes, the file has " + std::to_string(src.size()));
  std::vector<LayerSpec> specs(static_cast<std::size_t>(count));
  std::uint64_t in = input, expected = 0;
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::uint64_t layer_at = r.position();
    const auto out = r.template get<std::uint64_t>("layer width");
    const auto act = r.template get<std::uint32_t>("activation");
    require(act <= static_cast<std::uint32_t>(Activation::sigmoid), ErrorKind::format,
            path + ": layer " + std::to_string(i) + " has unknown activation code " + std::to_string(act));
    std::string kind, options;
    if (version >= 4) {
      const auto k = r.template get<std::uint32_t>("layer kind length");
      const auto o = r.template get<std::uint32_t>("layer options length");
      require(k <= model_max_kind_bytes && o <= model_max_option_bytes && std::uint64_t{k} + o <= r.remaining(),
              ErrorKind::format,
              path + ": layer " + std::to_string(i) + " at byte " + std::to_string(layer_at) + " has a kind name of " +
                  std::to_string(k) + " bytes and options of " + std::to_string(o) + " bytes (at most " +
                  std::to_string(model_max_kind_bytes) + " and " + std::to_string(model_max_option_bytes) +
                  ", within the file's " + std::to_string(r.remaining()) + " remaining bytes)");
      kind.resize(k);
      options.resize(o);
      r.bytes(kind.data(), k, "layer kind");
      r.bytes(options.data(), o, "layer options");
    }
    LayerSpec& S = specs[static_cast<std::size_t>(i)];
    if (kind.empty()) {
      require(options.empty(), ErrorKind::format,
              path + ": dense layer " + std::to_string(i) + " at byte " + std::to_string(layer_at) + " has options");
      expected = saturating_add(expected, saturating_add(saturating_mul(in, out), out));
      S = {static_cast<std::size_t>(out), static_cast<Activation>(act), {}};
    } else {
      try {
        S = layers::custom(make_layer(kind, options));
        const std::size_t width = S.op->out_width(static_cast<std::size_t>(in));
        require(width == out && act == 0, ErrorKind::format,
                "its kind makes " + std::to_string(width) + " outputs of " + std::to_string(in) + " inputs, the file says " +
                    std::to_string(out) + (act == 0 ? "" : ", and gives it an activation"));
        expected = saturating_add(expected, S.op->parameter_count(static_cast<std::size_t>(in)));
      } catch (const Error& e) {
        fail(ErrorKind::format, path + ": layer " + std::to_string(i) + " at byte " + std::to_string(layer_at) +
                                    " (kind '" + kind + "', options '" + options +
                                    "'): " + std::string(e.what()).substr(9));
      }
    }
    in = out;
  }
  const std::uint64_t loss_at = r.position();
  const auto loss = r.template get<std::uint32_t>("loss");
  require(loss <= static_cast<std::uint32_t>(Loss::softmax_cross_entropy), ErrorKind::format,
          path + ": unknown loss code " + std::to_string(loss));
  LossSpec objective(static_cast<Loss>(loss));
  if (version >= 4) {
    const auto k = r.template get<std::uint32_t>("loss kind length");
    const auto o = r.template get<std::uint32_t>("loss options length");
    require(k <= model_max_kind_bytes && o <= model_max_option_bytes && std::uint64_t{k} + o <= r.remaining(),
            ErrorKind::format,
            path + ": the loss at byte " + std::to_string(loss_at) + " has a kind name of " + std::to_string(k) +
                " bytes and options of " + std::to_string(o) + " bytes (at most " + std::to_string(model_max_kind_bytes) +
                " and " + std::to_string(model_max_option_bytes) + ", within the file's " +
                std::to_string(r.remaining()) + " remaining bytes)");
    std::string kind(k, '\0'), options(o, '\0');
    r.bytes(kind.data(), k, "loss kind");
    r.bytes(options.data(), o, "loss options");
    if (!kind.empty()) {
      try {
        objective = LossSpec(make_loss(kind, options));
        require(objective.family == static_cast<Loss>(loss), ErrorKind::format,
                std::string("its kind is of the family ") + to_string(objective.family) + ", the file says " +
                    to_string(static_cast<Loss>(loss)));
      } catch (const Error& e) {
        fail(ErrorKind::format, path + ": the loss at byte " + std::to_string(loss_at) + " (kind '" + kind +
                                    "', options '" + options + "'): " + std::string(e.what()).substr(9));
      }
    } else {
      require(options.empty(), ErrorKind::format,
              path + ": the enum loss at byte " + std::to_string(loss_at) + " has options");
    }
  }
  const auto wd = r.template get<float>("weight decay");
  const auto n = r.template get<std::uint64_t>("parameter count");
  require(n == expected, ErrorKind::format,
          path + ": the layers of the file imply " +
              (expected == UINT64_MAX ? std::string("more than 2^64") : std::to_string(expected)) +
              " parameters, the file says " + std::to_string(n) + " (corrupted file?)");
  // the parameters, the transform kind (version 3) and the checksum; a version-3 file may hold
  // more (its transform section), checked once the kind is read
  const std::uint64_t after_params = saturating_add(r.position(), saturating_mul(n, 4));
  const std::uint64_t needed = saturating_add(after_params, version >= 3 ? 4 + 8 : 8);
  const auto byte_count = [](std::uint64_t v) {
    return v == UINT64_MAX ? std::string("more than 2^64") : std::to_string(v);
  };
  require(version >= 3 ? src.size() >= needed : src.size() == needed, ErrorKind::format,
          path + ": " + (src.size() < needed ? "truncated" : "oversized") + " model file: " + std::to_string(n) +
              " parameters need " + (version >= 3 ? "at least " : "") + byte_count(needed) + " bytes, the file has " +
              std::to_string(src.size()));
  // n * 4 bytes are in the file: the allocation below is bounded by its size
  std::vector<float> params(static_cast<std::size_t>(n));
  r.bytes(params.data(), params.size() * 4, "parameters");
  std::vector<float> mean, scale;
  std::uint64_t stats_at = 0;
  if (version >= 3) {
    const std::uint64_t kind_at = r.position();
    const auto kind = r.template get<std::uint32_t>("input transform kind");
    require(kind <= static_cast<std::uint32_t>(InputTransformKind::standardizer), ErrorKind::format,
            path + ": unknown input transform kind " + std::to_string(kind) + " at byte " + std::to_string(kind_at) +
                " (this tessera knows 0, none, and 1, standardizer)");
    if (kind == static_cast<std::uint32_t>(InputTransformKind::standardizer)) {
      const std::uint64_t columns_at = r.position();
      const auto columns = r.template get<std::uint64_t>("input transform column count");
      require(columns == input, ErrorKind::format,
              path + ": the input transform at byte " + std::to_string(kind_at) + " has " + std::to_string(columns) +
                  " columns, the model takes " + std::to_string(input) + " inputs (column count at byte " +
                  std::to_string(columns_at) + ")");
      const std::uint64_t end = saturating_add(saturating_add(r.position(), saturating_mul(columns, 8)), 8);
      require(src.size() == end, ErrorKind::format,
              path + ": " + (src.size() < end ? "truncated" : "oversized") + " model file: the input transform of " +
                  std::to_string(columns) + " columns at byte " + std::to_string(kind_at) + " needs the file to have " +
                  byte_count(end) + " bytes, it has " + std::to_string(src.size()));
      // 8 * columns bytes are in the file: bounded as the parameters are
      stats_at = r.position();
      mean.resize(static_cast<std::size_t>(columns));
      scale.resize(static_cast<std::size_t>(columns));
      r.bytes(mean.data(), mean.size() * 4, "input transform means");
      r.bytes(scale.data(), scale.size() * 4, "input transform inverse scales");
    } else {
      require(src.size() == r.position() + 8, ErrorKind::format,
              path + ": oversized model file: it has no input transform, so it ends at byte " +
                  std::to_string(r.position() + 8) + ", the file has " + std::to_string(src.size()) + " bytes");
    }
  }
  const std::uint64_t computed = r.hash();
  std::uint64_t stored = 0;
  src.read(r.position(), &stored, 8);
  require(stored == computed, ErrorKind::format, path + ": checksum mismatch: the model file is corrupted");
  // a crafted file with a valid checksum: the values themselves must make a model
  for (std::size_t c = 0; c < mean.size(); ++c) {
    require(std::isfinite(mean[c]), ErrorKind::format,
            path + ": the input transform's mean of column " + std::to_string(c) + " (byte " +
                std::to_string(stats_at + 4 * c) + ") is " + std::to_string(mean[c]) + ", expected a finite value");
    require(std::isfinite(scale[c]) && scale[c] > 0.0f, ErrorKind::format,
            path + ": the input transform's inverse scale of column " + std::to_string(c) + " (byte " +
                std::to_string(stats_at + 4 * (mean.size() + c)) + ") is " + std::to_string(scale[c]) +
                ", expected a finite value > 0");
  }
  try {
    Architecture arch(static_cast<std::size_t>(input), specs, objective);
    Model m(std::move(arch), std::move(params), wd);
    if (!mean.empty()) m.set_input_transform(data::Standardizer(std::move(mean), std::move(scale)));
    return m;
  } catch (const Error& e) {
    fail(ErrorKind::format, path + ": the file describes an impossible model: " + std::string(e.what()).substr(9));
  }
}

/// The bytes of a model file, through put(data, n): the one writer of save() and of checkpoints.
/// `version` 3 writes the older layout (dense layers and enum losses only), for readers that
/// predate version 4.
template <class Put>
void write_model(const Model& model, Put&& put_raw, std::uint32_t version = model_format_version) {
  require(version == model_format_version ||
              (version == 3 && model.architecture().all_dense() && !model.architecture().loss_op),
          ErrorKind::invalid_argument,
          "write_model: version " + std::to_string(version) +
              " cannot hold this model; version 3 holds dense layers and enum losses only");
  static_assert(sizeof(float) == 4, "tessera model files store IEEE float32");
  std::uint64_t h = fnv1a_basis;
  const auto put = [&](const void* p, std::size_t n) {
    h = fnv1a(p, n, h);
    put_raw(p, n);
  };
  const auto put_value = [&](const auto& v) { put(&v, sizeof v); };
  const Architecture& a = model.architecture();
  // every layer kind must be loadable again, before a byte is written
  std::vector<std::pair<std::string, std::string>> kinds(a.layers.size());
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    const Layer& L = a.layers[l];
    if (!L.op) continue;
    kinds[l] = {L.op->kind(), L.op->options()};
    require(layer_registered(kinds[l].first), ErrorKind::invalid_argument,
            "save: layer " + std::to_string(l) + " is of kind '" + kinds[l].first +
                "', which is not registered for model files: call tessera::register_layer(\"" + kinds[l].first +
                "\", factory) first, and before loading");
    require(!kinds[l].first.empty() && kinds[l].first.size() <= model_max_kind_bytes &&
                kinds[l].second.size() <= model_max_option_bytes,
            ErrorKind::invalid_argument,
            "save: layer " + std::to_string(l) + " has a kind name of " + std::to_string(kinds[l].first.size()) +
                " bytes and options of " + std::to_string(kinds[l].second.size()) + " bytes (at most " +
                std::to_string(model_max_kind_bytes) + " and " + std::to_string(model_max_option_bytes) + ")");
  }
  std::pair<std::string, std::string> loss_kind;
  if (a.loss_op) {
    loss_kind = {a.loss_op->kind(), a.loss_op->options()};
    require(loss_registered(loss_kind.first), ErrorKind::invalid_argument,
            "save: the loss is of kind '" + loss_kind.first +
                "', which is not registered for model files: call tessera::register_loss(\"" + loss_kind.first +
                "\", factory) first, and before loading");
    require(!loss_kind.first.empty() && loss_kind.first.size() <= model_max_kind_bytes &&
                loss_kind.second.size() <= model_max_option_bytes,
            ErrorKind::invalid_argument,
            "save: the loss has a kind name of " + std::to_string(loss_kind.first.size()) + " bytes and options of " +
                std::to_string(loss_kind.second.size()) + " bytes (at most " + std::to_string(model_max_kind_bytes) +
                " and " + std::to_string(model_max_option_bytes) + ")");
  }
  const bool kinds_fields = version >= 4;
  put(model_magic, 8);
  put_value(version);
  put_value(std::uint64_t{a.input_dim});
  put_value(std::uint64_t{a.layers.size()});
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    const Layer& L = a.layers[l];
    put_value(std::uint64_t{L.out});
    put_value(static_cast<std::uint32_t>(L.activation));
    if (!kinds_fields) continue;
    put_value(static_cast<std::uint32_t>(kinds[l].first.size()));
    put_value(static_cast<std::uint32_t>(kinds[l].second.size()));
    put(kinds[l].first.data(), kinds[l].first.size());
    put(kinds[l].second.data(), kinds[l].second.size());
  }
  put_value(static_cast<std::uint32_t>(a.loss));
  if (kinds_fields) {
    put_value(static_cast<std::uint32_t>(loss_kind.first.size()));
    put_value(static_cast<std::uint32_t>(loss_kind.second.size()));
    put(loss_kind.first.data(), loss_kind.first.size());
    put(loss_kind.second.data(), loss_kind.second.size());
  }
  put_value(model.weight_decay());
  put_value(std::uint64_t{model.parameter_count()});
  const std::span<const float> p = model.parameters();
  for (std::size_t i = 0; i < p.size(); i += 1 << 16) put(p.data() + i, std::min<std::size_t>(1 << 16, p.size() - i) * 4);
  if (const data::Standardizer* t = model.input_transform()) {
    put_value(InputTransformKind::standardizer);
    put_value(std::uint64_t{t->columns()});
    put(t->mean().data(), t->columns() * 4);
    put(t->inverse_scale().data(), t->columns() * 4);
  } else {
    put_value(InputTransformKind::none);
  }
  put_raw(&h, 8);
}

}  // namespace detail

/// Writes the model to `path`, atomically (a temporary file renamed at the end, so a failed save
/// never leaves a partial file under the real name). Under mpi::Environment saving is collective:
/// every rank calls save, rank 0 writes, and every rank returns once the file is in place (or
/// throws the same Error when it could not be written).
inline void save(const Model& model, const std::string& path) {
  detail::run_file_write([&] {
    detail::AtomicFile f(path);
    detail::write_model(model, [&](const void* p, std::size_t n) { f.write(p, n); });
    f.commit();
  });
}

/// Reads a model written by save(): its architecture, weight decay, parameters and input transform
/// (files of versions 1 and 2 have none), so that `load_model(path).predict_raw(raw_rows)` serves
/// raw data. Errors: ErrorKind::io (missing, a directory, not a regular file, unreadable),
/// ErrorKind::format (not a model file, another version, truncated, oversized, implausible counts,
/// an unknown or malformed input transform, checksum mismatch).
inline Model load_model(const std::string& path) { return detail::read_model(detail::FileSource(path)); }

/// The same as load_model, from the bytes of a model file in memory; `name` starts the messages.
inline Model parse_model(std::span<const unsigned char> bytes, const std::string& name) {
  return detail::read_model(detail::MemorySource(bytes, name));
}

/// Loads parameters into an existing model, which must have the same architecture; only the
/// parameters: the target keeps its weight decay and its input transform (load_model reads them).
inline void load_parameters(Model& model, const std::string& path) {
  Model m = load_model(path);
  detail::require(m.architecture() == model.architecture(), ErrorKind::shape,
                  path + ": the file holds a " + m.architecture().describe() + " model, the target is " +
                      model.architecture().describe());
  std::copy(m.parameters().begin(), m.parameters().end(), model.parameters().begin());
}

}  // namespace tessera
