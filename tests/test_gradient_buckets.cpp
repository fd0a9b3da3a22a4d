// The gradient buckets of Reduce<NcclAllreduce>: whole layers, last layer first, each at least the
// requested size except the last, together covering the flat buffer exactly once.
#include <catch2/catch.hpp>

#include "tessera/model/models.hpp"
#include "tessera/train/gradient_buckets.hpp"

using namespace tessera;

TEST_CASE("gradient buckets cover the buffer once, whole layers, last layer first", "[buckets]") {
  const Model m = models::mlp({784, 1024, 1024, 10}, act::relu, loss::softmax_cross_entropy);
  const auto& layers = m.architecture().layers;
  // layer sizes: 803840, 1049600, 10250
  const std::size_t floats = GENERATE(std::size_t{1}, std::size_t{10250}, std::size_t{10251}, std::size_t{1000000},
                                      std::size_t{1059850}, std::size_t{1} << 30);
  CAPTURE(floats);
  const auto buckets = detail::plan_gradient_buckets(m.architecture(), floats);
  REQUIRE(!buckets.empty());
  std::size_t hi = m.parameter_count();
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    const auto& b = buckets[i];
    CHECK(b.hi == hi);  // contiguous, descending
    CHECK(b.lo == layers[b.low_layer].offset);
    CHECK(b.lo < b.hi);
    if (i + 1 < buckets.size()) CHECK(b.hi - b.lo >= floats);
    hi = b.lo;
  }
  CHECK(hi == 0);
  CHECK(buckets.back().low_layer == 0);
}

TEST_CASE("gradient buckets: the expected cut for a three-layer MLP", "[buckets]") {
  const Model m = models::mlp({784, 1024, 1024, 10}, act::relu, loss::softmax_cross_entropy);
  auto b = detail::plan_gradient_buckets(m.architecture(), 1);
  REQUIRE(b.size() == 3);  // one bucket per layer
  CHECK(b[0].low_layer == 2);
  CHECK(b[0].hi - b[0].lo == 10250);
  CHECK(b[1].hi - b[1].lo == 1049600);
  CHECK(b[2].hi - b[2].lo == 803840);
  b = detail::plan_gradient_buckets(m.architecture(), 10251);  // the last layer alone is too small
  REQUIRE(b.size() == 2);
  CHECK(b[0].low_layer == 1);
  CHECK(b[0].hi - b[0].lo == 10250 + 1049600);
  b = detail::plan_gradient_buckets(m.architecture(), std::size_t{1} << 30);
  REQUIRE(b.size() == 1);
  CHECK(b[0].lo == 0);
  CHECK(b[0].hi == m.parameter_count());
  CHECK_THROWS_WITH(detail::plan_gradient_buckets(m.architecture(), 0), Catch::Contains("at least one float"));
}
