// Save and load: round trip bitwise, the input transform included (a loaded model serves raw
// rows), files of every version load, and every damaged file is a clear error, never a crash.
#include <catch2/catch.hpp>

#include "support.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "tessera/core/rng.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/model/models.hpp"

using namespace tessera;
namespace fs = std::filesystem;

using test::ErrorWith;
using test::TempDir;

namespace {
std::vector<char> bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void write(const std::string& p, const std::vector<char>& b) {
  std::ofstream(p, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
}
template <class T>
void put_at(std::vector<char>& b, std::size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof v);
}
/// Rewrites the closing checksum (the last 8 bytes) for what comes before it: a crafted file.
void reseal(std::vector<char>& b, std::uint64_t basis = detail::fnv1a_basis) {
  put_at(b, b.size() - 8, detail::fnv1a(b.data(), b.size() - 8, basis));
}
/// `b` without its last `cut` bytes, closed again by a checksum of `basis`.
std::vector<char> resealed(std::vector<char> b, std::size_t cut, std::uint32_t version, std::uint64_t basis) {
  b.resize(b.size() - cut);
  put_at(b, 8, version);
  b.resize(b.size() + 8);
  reseal(b, basis);
  return b;
}
bool same_bits(const Matrix& a, const Matrix& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

/// Raw rows on scales far apart (thousands, ones, thousandths), with a 0/1 label that depends on
/// all three: a model must be trained on standardised features to learn it in a few steps.
data::Dataset raw_rows(std::size_t n, std::uint64_t seed) {
  Matrix x(n, 3);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float a = rng::normal(seed, rng::Stream::user, i, 0), b = rng::normal(seed, rng::Stream::user, i, 1),
                c = rng::normal(seed, rng::Stream::user, i, 2);
    x(i, 0) = 2000.0f + 300.0f * a;
    x(i, 1) = -4.0f + 2.0f * b;
    x(i, 2) = 0.003f + 0.001f * c;
    y[i] = a - b + 0.5f * c > 0.0f ? 1.0f : 0.0f;
  }
  return {std::move(x), std::move(y)};
}

/// A small model trained by full-batch gradient descent on the standardised training rows, the
/// standardizer attached: the pipeline a user saves.
struct Trained {
  data::Standardizer scaler;
  Model model;
};
Trained trained_pipeline() {
  const data::Dataset train = raw_rows(200, 11);
  Trained t{data::Standardizer(train.x()), models::mlp({3, 8, 1}, act::tanh, loss::binary_cross_entropy, {.seed = 2})};
  const data::Dataset features = t.scaler.transform(train);
  std::vector<float> grad;
  for (int step = 0; step < 200; ++step) {
    (void)t.model.loss_and_gradient(features.x(), features.y(), grad);
    for (std::size_t i = 0; i < grad.size(); ++i) t.model.parameters()[i] -= 0.5f * grad[i];
  }
  t.model.set_input_transform(t.scaler);
  return t;
}
}  // namespace

TEST_CASE("a saved model loads back bitwise, architecture included", "[checkpoint]") {
  TempDir dir;
  const Model m = models::mlp({7, 9, 5, 3}, act::tanh, loss::softmax_cross_entropy, {.seed = 4, .weight_decay = 0.01f});
  save(m, dir.file("m.tsr"));
  const Model back = load_model(dir.file("m.tsr"));
  CHECK(back.architecture() == m.architecture());
  CHECK(back.weight_decay() == m.weight_decay());
  REQUIRE(back.parameter_count() == m.parameter_count());
  CHECK(std::memcmp(back.parameters().data(), m.parameters().data(), m.parameter_count() * 4) == 0);
  CHECK(back.input_transform() == nullptr);
  CHECK(back == m);
  CHECK_FALSE(fs::exists(dir.file("m.tsr.tmp")));

  Model target = models::mlp({7, 9, 5, 3}, act::tanh, loss::softmax_cross_entropy, {.seed = 99});
  load_parameters(target, dir.file("m.tsr"));
  CHECK(std::memcmp(target.parameters().data(), m.parameters().data(), m.parameter_count() * 4) == 0);
}

TEST_CASE("damaged or foreign model files are clear errors", "[checkpoint][errors]") {
  TempDir dir;
  const std::string p = dir.file("m.tsr");
  save(models::mlp({4, 6, 2}, act::relu, loss::binary_cross_entropy, {.seed = 1}), p);
  const auto good = bytes(p);

  SECTION("missing file") { CHECK_THROWS_WITH(load_model(dir.file("nope.tsr")), Catch::Contains("nope.tsr: cannot open")); }
  SECTION("foreign file") {
    write(p, std::vector<char>{'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'});
    CHECK_THROWS_WITH(load_model(p), Catch::Contains("not a tessera model file"));
  }
  SECTION("empty file") {
    write(p, {});
    CHECK_THROWS_WITH(load_model(p), Catch::Contains("not a tessera model file"));
  }
  SECTION("truncated at every length") {
    for (std::size_t len = 8; len < good.size(); len += 7) {
      write(p, std::vector<char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len)));
      try {
        load_model(p);
        FAIL("a model file cut at " << len << " bytes loaded");
      } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::format);
      }
    }
    write(p, std::vector<char>(good.begin(), good.end() - 20));
    CHECK_THROWS_WITH(load_model(p), Catch::Contains("truncated"));
  }
  SECTION("one flipped byte in the parameters") {
    auto b = good;
    b[b.size() - 30] ^= 0x10;
    write(p, b);
    CHECK_THROWS_WITH(load_model(p), Catch::Contains("checksum mismatch"));
  }
  SECTION("a newer format version") {
    auto b = good;
    b[8] = 9;
    write(p, b);
    CHECK_THROWS_WITH(load_model(p), Catch::Contains("model format version 9, this tessera reads versions 1 to 4"));
  }
  SECTION("loading into a different architecture") {
    Model other = models::mlp({4, 5, 2}, act::relu, loss::binary_cross_entropy);
    CHECK_THROWS_WITH(load_parameters(other, p), Catch::Contains("holds a 4 -> 6 relu -> 2 | binary_cross_entropy model"));
  }
}

// ---- the input transform: preprocessing that travels with the model ------------------------------

TEST_CASE("a model saved with its standardizer serves raw rows bitwise as the in-memory pipeline", "[checkpoint][transform]") {
  TempDir dir;
  const Trained t = trained_pipeline();
  const data::Dataset raw = raw_rows(150, 99);
  // in memory: standardise the raw rows, then predict on the features
  const Matrix expected = t.model.predict(t.scaler.transform(raw).x());
  const std::vector<int> expected_classes = t.model.predict_classes(t.scaler.transform(raw).x());
  std::size_t right = 0;
  for (std::size_t i = 0; i < raw.rows(); ++i) right += expected_classes[i] == static_cast<int>(raw.targets[i]);
  CHECK(right > raw.rows() * 9 / 10);  // it learned: the transform matters to what it serves

  save(t.model, dir.file("served.tsm"));
  const Model back = load_model(dir.file("served.tsm"));
  REQUIRE(back.input_transform() != nullptr);
  CHECK(*back.input_transform() == t.scaler);
  CHECK(back == t.model);
  CHECK(same_bits(back.predict_raw(raw.x()), expected));
  CHECK(back.predict_classes_raw(raw.x()) == expected_classes);
  CHECK(same_bits(t.model.predict_raw(raw.x()), expected));
  // predict takes features as the layers see them, with or without a transform attached
  CHECK(same_bits(back.predict(t.scaler.transform(raw).x()), expected));
  CHECK(same_bits(back.transform_input(raw.x()), t.scaler.transform(raw).features));
  // parse_model reads the same bytes from memory
  const auto b = bytes(dir.file("served.tsm"));
  const Model parsed = parse_model({reinterpret_cast<const unsigned char*>(b.data()), b.size()}, "served");
  CHECK(parsed == t.model);
}

TEST_CASE("copies carry the input transform, comparisons see it, load_parameters leaves it", "[checkpoint][transform]") {
  TempDir dir;
  const Trained t = trained_pipeline();
  Model copy = t.model;
  REQUIRE(copy.input_transform() != nullptr);
  CHECK(copy == t.model);
  copy.clear_input_transform();
  CHECK(copy.input_transform() == nullptr);
  CHECK_FALSE(copy == t.model);
  CHECK(t.model.input_transform() != nullptr);  // the copy was deep
  // without a transform, raw rows are the features
  const data::Dataset raw = raw_rows(20, 5);
  CHECK(same_bits(copy.predict_raw(raw.x()), copy.predict(raw.x())));
  CHECK(same_bits(copy.transform_input(raw.x()), raw.features));
  save(copy, dir.file("bare.tsm"));
  CHECK(load_model(dir.file("bare.tsm")).input_transform() == nullptr);
  // only the parameters go into an existing model
  save(t.model, dir.file("with.tsm"));
  Model target = models::mlp({3, 8, 1}, act::tanh, loss::binary_cross_entropy, {.seed = 9});
  load_parameters(target, dir.file("with.tsm"));
  CHECK(target.input_transform() == nullptr);
  CHECK(std::memcmp(target.parameters().data(), t.model.parameters().data(), t.model.parameter_count() * 4) == 0);
}

TEST_CASE("an input transform must fit the model, and raw rows must have its width", "[checkpoint][transform][errors]") {
  Model m = models::mlp({3, 4, 1}, act::relu, loss::mse);
  Matrix four(5, 4, 1.0f);
  CHECK_THROWS_MATCHES(m.set_input_transform(data::Standardizer(four)), Error,
                       test::IsError(ErrorKind::shape, "model.set_input_transform: the model (3 -> 4 relu -> 1 | "
                                                       "mean_squared_error) takes 3 features per row, the "
                                                       "standardizer was fitted on 4 columns"));
  CHECK_THROWS_MATCHES(m.set_input_transform(data::Standardizer()), Error,
                       ErrorWith(ErrorKind::shape, "the standardizer was fitted on 0 columns"));
  CHECK(m.input_transform() == nullptr);
  m.set_input_transform(data::Standardizer(Matrix(5, 3, 2.0f)));
  CHECK_THROWS_MATCHES(m.predict_raw(four), Error,
                       ErrorWith(ErrorKind::shape, "model.transform_input: the model (3 -> 4 relu -> 1 | "
                                                   "mean_squared_error) expects 3 features per row, got a 5 x 4 matrix"));
  CHECK_THROWS_MATCHES(m.predict_classes_raw(Matrix(2, 3)), Error,
                       ErrorWith(ErrorKind::invalid_argument, "predict_classes needs a classification loss"));
}

TEST_CASE("a standardizer rebuilt from its statistics checks them", "[checkpoint][transform][errors]") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const data::Standardizer s({1.0f, -2.0f}, {0.5f, 4.0f});
  CHECK(s.columns() == 2);
  Matrix x(1, 2, 3.0f);
  s.transform_in_place(x);
  CHECK(x(0, 0) == 1.0f);
  CHECK(x(0, 1) == 20.0f);
  CHECK(s == data::Standardizer({1.0f, -2.0f}, {0.5f, 4.0f}));
  CHECK_THROWS_MATCHES(data::Standardizer({1.0f}, {1.0f, 1.0f}), Error,
                       ErrorWith(ErrorKind::invalid_argument, "got 1 means and 2 inverse scales"));
  CHECK_THROWS_MATCHES(data::Standardizer({}, {}), Error, ErrorWith(ErrorKind::invalid_argument, "at least one column"));
  CHECK_THROWS_MATCHES(data::Standardizer({0.0f, nan}, {1.0f, 1.0f}), Error,
                       ErrorWith(ErrorKind::invalid_argument, "the mean of column 1 is nan, expected a finite value"));
  for (float bad : {0.0f, -1.0f, inf, nan})
    CHECK_THROWS_MATCHES(data::Standardizer({0.0f, 0.0f}, {1.0f, bad}), Error,
                         ErrorWith(ErrorKind::invalid_argument, "the inverse scale of column 1 is"));
}

TEST_CASE("version 2 and version 1 model files still load, without a transform", "[checkpoint][transform]") {
  TempDir dir;
  Model m = trained_pipeline().model;
  m.clear_input_transform();
  std::vector<char> v3;  // the version-3 layout, as a tessera before version 4 wrote it
  detail::write_model(
      m, [&](const void* p, std::size_t n) { v3.insert(v3.end(), (const char*)p, (const char*)p + n); }, 3);
  write(dir.file("v3.tsm"), v3);
  CHECK(load_model(dir.file("v3.tsm")) == m);
  // a version-3 file without a transform is a version-2 file plus the kind (u32 0) before the checksum
  std::uint32_t kind = 7;
  std::memcpy(&kind, v3.data() + v3.size() - 12, 4);
  CHECK(kind == 0);
  write(dir.file("v2.tsm"), resealed(v3, 12, 2, detail::fnv1a_basis));
  write(dir.file("v1.tsm"), resealed(v3, 12, 1, detail::fnv1a_basis_model_v1));
  for (const char* name : {"v2.tsm", "v1.tsm"}) {
    const Model back = load_model(dir.file(name));
    CHECK(back == m);
    CHECK(back.input_transform() == nullptr);
    const data::Dataset raw = raw_rows(10, 3);
    CHECK(same_bits(back.predict_raw(raw.x()), m.predict(raw.x())));
  }
  // a version-2 file knows no transform section: bytes after its parameters make it oversized
  auto longer = v3;
  put_at(longer, 8, std::uint32_t{2});
  reseal(longer);
  write(dir.file("v2long.tsm"), longer);
  CHECK_THROWS_MATCHES(load_model(dir.file("v2long.tsm")), Error,
                       ErrorWith(ErrorKind::format, "v2long.tsm: oversized model file: " +
                                                        std::to_string(m.parameter_count()) + " parameters need " +
                                                        std::to_string(v3.size() - 4) + " bytes, the file has " +
                                                        std::to_string(v3.size())));
  // and a version-3 file must have one
  write(dir.file("v3short.tsm"), resealed(v3, 12, 3, detail::fnv1a_basis));
  CHECK_THROWS_MATCHES(load_model(dir.file("v3short.tsm")), Error,
                       ErrorWith(ErrorKind::format, "v3short.tsm: truncated model file: " +
                                                        std::to_string(m.parameter_count()) + " parameters need at least " +
                                                        std::to_string(v3.size()) + " bytes, the file has " +
                                                        std::to_string(v3.size() - 4)));
}

TEST_CASE("a damaged or crafted input transform section is a clear error", "[checkpoint][transform][errors]") {
  TempDir dir;
  const std::string p = dir.file("t.tsm");
  const Trained t = trained_pipeline();
  save(t.model, p);
  const auto good = bytes(p);
  const std::size_t cols = 3;
  const std::size_t kind_at = good.size() - 8 - (4 + 8 + 8 * cols), columns_at = kind_at + 4, means_at = kind_at + 12,
                    scales_at = means_at + 4 * cols;
  const auto refused = [&](const std::vector<char>& b, const std::string& message) {
    write(p, b);
    CHECK_THROWS_MATCHES(load_model(p), Error, test::IsError(ErrorKind::format, p + ": " + message));
  };

  SECTION("truncated at every length") {
    for (std::size_t len = kind_at; len < good.size(); ++len) {
      write(p, std::vector<char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len)));
      CHECK_THROWS_MATCHES(load_model(p), Error, ErrorWith(ErrorKind::format, "truncated model file"));
    }
    refused(std::vector<char>(good.begin(), good.end() - 12),
            "truncated model file: the input transform of 3 columns at byte " + std::to_string(kind_at) +
                " needs the file to have " + std::to_string(good.size()) + " bytes, it has " +
                std::to_string(good.size() - 12));
    refused(std::vector<char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(columns_at + 4)),
            "truncated model file: " + std::to_string(t.model.parameter_count()) + " parameters need at least " +
                std::to_string(kind_at + 12) + " bytes, the file has " + std::to_string(columns_at + 4));
  }
  SECTION("oversized") {
    auto b = good;
    b.insert(b.end() - 8, 4, '\0');
    reseal(b);
    refused(b, "oversized model file: the input transform of 3 columns at byte " + std::to_string(kind_at) +
                   " needs the file to have " + std::to_string(good.size()) + " bytes, it has " +
                   std::to_string(good.size() + 4));
  }
  SECTION("a column count other than the input dimension") {
    for (std::uint64_t c : {std::uint64_t{4}, std::uint64_t{2}, std::uint64_t{0}, UINT64_MAX}) {
      auto b = good;
      put_at(b, columns_at, c);
      reseal(b);
      refused(b, "the input transform at byte " + std::to_string(kind_at) + " has " + std::to_string(c) +
                     " columns, the model takes 3 inputs (column count at byte " + std::to_string(columns_at) + ")");
    }
  }
  SECTION("an unknown kind") {
    auto b = good;
    put_at(b, kind_at, std::uint32_t{7});
    reseal(b);
    refused(b, "unknown input transform kind 7 at byte " + std::to_string(kind_at) +
                   " (this tessera knows 0, none, and 1, standardizer)");
  }
  SECTION("non-finite or non-positive statistics") {
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    for (float bad : {inf, nan, 0.0f, -2.0f}) {
      auto b = good;
      put_at(b, scales_at + 4, bad);
      reseal(b);
      refused(b, "the input transform's inverse scale of column 1 (byte " + std::to_string(scales_at + 4) + ") is " +
                     std::to_string(bad) + ", expected a finite value > 0");
    }
    auto b = good;
    put_at(b, means_at + 8, -inf);
    reseal(b);
    refused(b, "the input transform's mean of column 2 (byte " + std::to_string(means_at + 8) +
                   ") is -inf, expected a finite value");
  }
  SECTION("one flipped byte in the statistics") {
    auto b = good;
    b[scales_at + 1] ^= 0x10;
    refused(b, "checksum mismatch: the model file is corrupted");
  }
}
