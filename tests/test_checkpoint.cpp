// Save and load: round trip bitwise, and every damaged file is a clear error, never a crash.
#include <catch2/catch.hpp>

#include "support.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "tessera/io/checkpoint.hpp"
#include "tessera/model/models.hpp"

using namespace tessera;
namespace fs = std::filesystem;

using test::TempDir;

namespace {
std::vector<char> bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void write(const std::string& p, const std::vector<char>& b) {
  std::ofstream(p, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
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
    CHECK_THROWS_WITH(load_model(p), Catch::Contains("model format version 9, this tessera reads version 1"));
  }
  SECTION("loading into a different architecture") {
    Model other = models::mlp({4, 5, 2}, act::relu, loss::binary_cross_entropy);
    CHECK_THROWS_WITH(load_parameters(other, p), Catch::Contains("holds a 4 -> 6 relu -> 2 | binary_cross_entropy model"));
  }
}
