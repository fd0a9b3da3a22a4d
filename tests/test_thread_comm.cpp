// Thread collectives: all-reduce and broadcast between the workers of a team, and a failing
// worker that ends a collective instead of hanging it.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <vector>

#include "tessera/comm/thread_comm.hpp"
#include "tessera/engine/lanes.hpp"

namespace {
// The lanes of one process as a team that runs a body on each, and their communicator seen as
// worker index + buffer (a collective returns false when another worker failed).
struct ThreadTeam {
  tessera::comm::LocalGroup group;
  explicit ThreadTeam(std::size_t n) : group(n) {}
  template <class Body>
  void run(Body&& body) {
    group.reset();
    tessera::detail::run_lanes(group.lanes(), body, [&] { group.abort(); });
  }
};
struct ThreadComm {
  std::vector<tessera::comm::ThreadComm> lanes;
  explicit ThreadComm(ThreadTeam& team) {
    for (std::size_t w = 0; w < team.group.lanes(); ++w) lanes.push_back(team.group.lane(w));
  }
  bool all_reduce(std::size_t w, float* buf, std::size_t count, float scale = 1.0f) {
    return ok([&] { lanes[w].all_reduce(buf, buf, count, "test", scale); });
  }
  bool broadcast(std::size_t w, float* buf, std::size_t count, std::size_t root) {
    return ok([&] { lanes[w].broadcast(buf, count, root, "test"); });
  }
  template <class F>
  static bool ok(F&& f) {
    try {
      f();
      return true;
    } catch (const tessera::detail::Aborted&) {
      return false;
    }
  }
};
}  // namespace

TEST_CASE("all_reduce sums every worker's buffer into all of them", "[comm]") {
  for (std::size_t n : {1u, 2u, 3u, 4u}) {
    for (std::size_t count : {1u, 15u, 16u, 17u, 1000u, 4099u}) {
      CAPTURE(n, count);
      ThreadTeam team(n);
      ThreadComm comm(team);
      std::vector<std::vector<float>> buf(n, std::vector<float>(count));
      for (std::size_t w = 0; w < n; ++w)
        for (std::size_t i = 0; i < count; ++i) buf[w][i] = static_cast<float>(w + 1) * static_cast<float>(i % 7);
      std::vector<char> ok(n, 0);  // Catch2 assertions are not thread-safe: check on this thread
      team.run([&](std::size_t w) { ok[w] = comm.all_reduce(w, buf[w].data(), count, 0.5f); });
      REQUIRE(std::count(ok.begin(), ok.end(), 1) == static_cast<long>(n));
      const float total = static_cast<float>(n * (n + 1) / 2);
      for (std::size_t w = 0; w < n; ++w)
        for (std::size_t i = 0; i < count; ++i) REQUIRE(buf[w][i] == 0.5f * total * static_cast<float>(i % 7));
    }
  }
}

TEST_CASE("broadcast copies the root's buffer to every worker", "[comm]") {
  ThreadTeam team(3);
  ThreadComm comm(team);
  std::vector<std::vector<float>> buf(3, std::vector<float>(100, 0.0f));
  for (std::size_t i = 0; i < 100; ++i) buf[1][i] = static_cast<float>(i);
  std::vector<char> ok(3, 0);
  team.run([&](std::size_t w) { ok[w] = comm.broadcast(w, buf[w].data(), 100, 1); });
  CHECK(std::count(ok.begin(), ok.end(), 1) == 3);
  for (const auto& b : buf) CHECK(b == buf[1]);
}

TEST_CASE("a worker that throws before a collective ends the run, no hang", "[comm][errors]") {
  ThreadTeam team(4);
  ThreadComm comm(team);
  std::vector<std::vector<float>> buf(4, std::vector<float>(64, 1.0f));
  std::atomic<int> returned_false{0};
  CHECK_THROWS_WITH(team.run([&](std::size_t w) {
                      if (w == 2) throw std::runtime_error("worker 2 lost its data");
                      if (!comm.all_reduce(w, buf[w].data(), 64)) ++returned_false;
                    }),
                    "worker 2 lost its data");
  CHECK(returned_false.load() == 3);
  // the team is usable again afterwards
  std::vector<char> ok(4, 0);
  team.run([&](std::size_t w) { ok[w] = comm.all_reduce(w, buf[w].data(), 64); });
  CHECK(std::count(ok.begin(), ok.end(), 1) == 4);
}
