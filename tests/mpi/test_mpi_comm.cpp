// MPI collectives, sub-communicators and rank agreement; run by ctest under mpirun with 1, 2, 3
// and 4 ranks. Every rank runs every test case; collectives are called in the same order on all.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <array>
#include <numeric>
#include <string>
#include <vector>

#include "tessera/model/models.hpp"
#include "tessera/mpi.hpp"

using namespace tessera;

TEST_CASE("all_reduce sums every rank's buffer, floats and doubles", "[mpi]") {
  const auto comm = mpi::Communicator::world();
  const int n = comm.size(), r = comm.rank();
  std::vector<float> f(1001);
  std::vector<double> d(17);
  for (std::size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>((r + 1) * static_cast<int>(i % 5));
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = 0.5 * (r + 1);
  comm.all_reduce(f.data(), f.size());
  comm.all_reduce(d.data(), d.size());
  const int total = n * (n + 1) / 2;
  for (std::size_t i = 0; i < f.size(); ++i) REQUIRE(f[i] == static_cast<float>(total * static_cast<int>(i % 5)));
  for (double v : d) REQUIRE(v == 0.5 * total);
}

TEST_CASE("broadcast copies the root's buffer to every rank", "[mpi]") {
  const auto comm = mpi::Communicator::world();
  for (int root : {0, comm.size() - 1}) {
    std::vector<float> b(100, static_cast<float>(comm.rank()));
    comm.broadcast(b.data(), b.size(), root);
    for (float v : b) REQUIRE(v == static_cast<float>(root));
  }
}

TEST_CASE("split makes sub-groups whose collectives stay inside them", "[mpi]") {
  const auto world = mpi::Communicator::world();
  const int color = world.rank() % 2;  // e.g. two pipeline stages, each a data-parallel group
  const auto group = world.split(color, world.rank());
  int expected_size = 0, expected_sum = 0;
  for (int r = 0; r < world.size(); ++r)
    if (r % 2 == color) {
      ++expected_size;
      expected_sum += r;
    }
  CHECK(group.size() == expected_size);
  CHECK(group.rank() == world.rank() / 2);
  float v = static_cast<float>(world.rank());
  group.all_reduce(&v, 1);
  CHECK(v == static_cast<float>(expected_sum));
  group.barrier();
}

TEST_CASE("ranks that agree pass; a rank that differs is named on every rank", "[mpi][errors]") {
  const auto comm = mpi::Communicator::world();
  const Model m = models::mlp({8, 16, 3}, act::relu, loss::softmax_cross_entropy, {.seed = 1});
  CHECK_NOTHROW(comm.agree("model signature", mpi::signature(m)));
  if (comm.size() == 1) return;  // nobody to disagree with
  const int odd = comm.size() - 1;
  const Model other = models::mlp({8, comm.rank() == odd ? 32u : 16u, 3}, act::relu, loss::softmax_cross_entropy);
  CHECK_THROWS_WITH(comm.agree("model signature", mpi::signature(other)),
                    Catch::Contains("ranks disagree on the model signature: rank 0 has \"8 -> 16 relu -> 3") &&
                        Catch::Contains("rank " + std::to_string(odd) + " has \"8 -> 32 relu -> 3"));
}

TEST_CASE("all_ready passes when every rank is ready and names the first rank that is not", "[mpi][errors]") {
  const auto comm = mpi::Communicator::world();
  CHECK_NOTHROW(comm.all_ready("set-up", ""));
  const int last = comm.size() - 1;
  // the last rank cannot; every rank throws the same message
  CHECK_THROWS_WITH(comm.all_ready("set-up", comm.rank() == last ? "no GPU here" : ""),
                    Catch::Equals("tessera: set-up: rank " + std::to_string(last) + " of " + std::to_string(comm.size()) +
                                  " cannot take part: no GPU here"));
  // every rank cannot: the first is named, the others counted
  const std::string others = comm.size() > 1 ? " (and " + std::to_string(comm.size() - 1) + " other rank(s) cannot either)" : "";
  CHECK_THROWS_WITH(comm.all_ready("set-up", "reason of rank " + std::to_string(comm.rank())),
                    Catch::Equals("tessera: set-up: rank 0 of " + std::to_string(comm.size()) + " cannot take part: reason of rank 0" +
                                  others));
  CHECK_NOTHROW(comm.all_ready("set-up again", ""));  // the group is still usable
}

TEST_CASE("node groups the ranks of this machine; broadcast_bytes copies the root's bytes", "[mpi]") {
  const auto comm = mpi::Communicator::world();
  const auto node = comm.node();
  // ctest starts every rank on this machine
  CHECK(node.size() == comm.size());
  CHECK(node.rank() == comm.rank());
  for (int root : {0, comm.size() - 1}) {
    std::array<unsigned char, 131> b{};
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<unsigned char>((i * 7 + static_cast<std::size_t>(comm.rank())) & 0xff);
    comm.broadcast_bytes(b.data(), b.size(), root, "record");
    for (std::size_t i = 0; i < b.size(); ++i) REQUIRE(b[i] == static_cast<unsigned char>((i * 7 + static_cast<std::size_t>(root)) & 0xff));
  }
}

TEST_CASE("an MPI error becomes a tessera::Error naming the call and the rank", "[mpi][errors]") {
  const auto comm = mpi::Communicator::world();
  float v = 1.0f;
  // every rank passes the same invalid root, so every rank fails the same way (no rank waits)
  CHECK_THROWS_WITH(comm.broadcast(&v, 1, comm.size()),
                    Catch::Contains("MPI_Bcast failed on rank " + std::to_string(comm.rank()) + " of " +
                                    std::to_string(comm.size())));
}

TEST_CASE("all_reduce is exact for every size: empty, smaller than the ranks, several segments", "[mpi]") {
  const auto comm = mpi::Communicator::world();
  const int n = comm.size(), r = comm.rank();
  for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{3}, (std::size_t{1} << 17) * 3 + 7}) {
    CAPTURE(count, n);
    std::vector<float> f(count);
    for (std::size_t i = 0; i < count; ++i) f[i] = static_cast<float>((r + 1) * static_cast<int>(i % 11));
    comm.all_reduce(f.data(), f.size(), "test");
    bool exact = true;
    for (std::size_t i = 0; i < count; ++i) exact = exact && f[i] == static_cast<float>(n * (n + 1) / 2 * static_cast<int>(i % 11));
    CHECK(exact);
  }
}

TEST_CASE("started sums complete in order with progress() and finish()", "[mpi]") {
  auto comm = mpi::Communicator::world();
  const int n = comm.size(), r = comm.rank();
  std::vector<std::vector<float>> bufs = {std::vector<float>(5, 1.0f), std::vector<float>(200003, 2.0f),
                                          std::vector<float>(17, 3.0f)};
  for (auto& b : bufs) {
    for (float& v : b) v *= static_cast<float>(r + 1);
    comm.start_all_reduce(b.data(), b.size(), "bucket");
    comm.progress();
  }
  if (n > 1) CHECK_THROWS_WITH(comm.all_reduce(bufs[0].data(), 1), Catch::Contains("while started sums are pending; call finish() first"));
  comm.finish();
  CHECK(comm.progress());
  const float t = static_cast<float>(n * (n + 1) / 2);
  for (std::size_t k = 0; k < bufs.size(); ++k)
    for (float v : bufs[k]) REQUIRE(v == t * static_cast<float>(k + 1));
}

TEST_CASE("exchange passes messages between pairs of ranks", "[mpi]") {
  const auto comm = mpi::Communicator::world();
  const int n = comm.size(), r = comm.rank();
  std::vector<float> out(1000, static_cast<float>(r)), in(1000, -1.0f);
  const mpi::Transfer send{out.data(), out.size(), (r + 1) % n, 7};
  const mpi::Transfer recv{in.data(), in.size(), (r + n - 1) % n, 7};
  comm.exchange(std::span(&send, 1), std::span(&recv, 1), "ring test");
  for (float v : in) REQUIRE(v == static_cast<float>((r + n - 1) % n));
}

TEST_CASE("the timeout must be positive", "[mpi][errors]") {
  CHECK_THROWS_WITH(mpi::set_timeout(0.0), Catch::Contains("mpi::set_timeout: the timeout must be positive"));
  CHECK_THROWS_WITH(mpi::set_timeout(-1.0), Catch::Contains("must be positive"));
  const double before = mpi::timeout();
  mpi::set_timeout(42.0);
  CHECK(mpi::timeout() == 42.0);
  mpi::set_timeout(before);
}

int main(int argc, char** argv) {
  mpi::Environment env(&argc, &argv);
  return Catch::Session().run(argc, argv);
}
