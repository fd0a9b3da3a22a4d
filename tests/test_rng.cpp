// Counter-based generator: known answers (Random123's Philox4x32-10 vectors) and distributions.
#include <catch2/catch.hpp>

#include <cmath>

#include "tessera/core/rng.hpp"

using namespace tessera;

TEST_CASE("philox4x32-10 matches the Random123 known-answer vectors", "[rng]") {
  auto check = [](std::uint64_t key, rng::Block ctr, rng::Block want) {
    const rng::Block r = rng::philox(key, ctr);
    for (int i = 0; i < 4; ++i) CHECK(r.v[i] == want.v[i]);
  };
  check(0, {{0, 0, 0, 0}}, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}});
  check(~0ull, {{~0u, ~0u, ~0u, ~0u}}, {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}});
  check(0x299f31d0a4093822ull, {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}},
        {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}});
}

TEST_CASE("draws are pure functions of (seed, stream, a, b)", "[rng]") {
  CHECK(rng::u64(7, rng::Stream::shuffle, 3, 1) == rng::u64(7, rng::Stream::shuffle, 3, 1));
  CHECK(rng::u64(7, rng::Stream::shuffle, 3, 1) != rng::u64(8, rng::Stream::shuffle, 3, 1));
  CHECK(rng::u64(7, rng::Stream::shuffle, 3, 1) != rng::u64(7, rng::Stream::init, 3, 1));
  CHECK(rng::u64(7, rng::Stream::shuffle, 3, 1) != rng::u64(7, rng::Stream::shuffle, 3, 2));
}

TEST_CASE("uniform and normal draws have the right moments", "[rng]") {
  const int n = 200000;
  double su = 0, sn = 0, sn2 = 0;
  float lo = 1, hi = 0;
  for (int i = 0; i < n; ++i) {
    const float u = rng::uniform(1, rng::Stream::user, static_cast<std::uint64_t>(i), 0);
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    su += u;
    const float z = rng::normal(1, rng::Stream::user, static_cast<std::uint64_t>(i), 1);
    sn += z;
    sn2 += double(z) * z;
  }
  CHECK(lo >= 0.0f);
  CHECK(hi < 1.0f);
  CHECK(su / n == Approx(0.5).margin(0.005));
  CHECK(sn / n == Approx(0.0).margin(0.01));
  CHECK(sn2 / n == Approx(1.0).margin(0.02));
}
