// tessera/mpi.hpp - tessera across processes with Open MPI. Needs the CMake component `mpi`
// (find_package(tessera CONFIG COMPONENTS mpi), target tessera::mpi); the default headers never
// include <mpi.h>.
#pragma once

#include <string>

#include "tessera/comm/mpi_comm.hpp"
#include "tessera/data/binary.hpp"
#include "tessera/model/model.hpp"

namespace tessera::mpi {

/// What every rank must agree on before training together: the architecture, the parameter
/// count and the weight decay.
inline std::string signature(const Model& m) {
  return m.architecture().describe() + " | " + std::to_string(m.parameter_count()) + " parameters | weight_decay " +
         std::to_string(m.weight_decay());
}

/// This rank's shard of a TSRD file (data::read_binary_shard with index = rank and count = size of
/// MPI_COMM_WORLD): each rank reads and holds only about 1/size of the rows.
inline data::Dataset read_binary_shard(const std::string& path) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return data::read_binary_shard(path, static_cast<std::size_t>(rank), static_cast<std::size_t>(size));
}

}  // namespace tessera::mpi

#include <memory>
#include <optional>
#include <vector>

#include "tessera/trainer.hpp"

namespace tessera::detail {

/// The ranks of MPI_COMM_WORLD as seen by the data-parallel engine.
class MpiRanks final : public CrossRanks {
 public:
  MpiRanks() : world_(mpi::Communicator::world()) {
    rank = static_cast<std::size_t>(world_.rank());
    size = static_cast<std::size_t>(world_.size());
  }
  mpi::Communicator& communicator() noexcept { return world_; }
  void sum(float* p, std::size_t n, const char* what) override { world_.all_reduce(p, n, what); }
  void sum(double* p, std::size_t n, const char* what) override { world_.all_reduce(p, n, what); }
  void start_sum(float* p, std::size_t n, const char* what) override { world_.start_all_reduce(p, n, what); }
  void progress() override { world_.progress(); }
  void finish() override { world_.finish(); }
  void broadcast(float* p, std::size_t n, std::size_t root, const char* what) override {
    world_.broadcast(p, n, static_cast<int>(root), what);
  }
  void exchange(std::span<const RankMessage> sends, std::span<const RankMessage> recvs, const char* what) override {
    auto convert = [](std::span<const RankMessage> m) {
      std::vector<mpi::Transfer> t;
      for (const RankMessage& x : m) t.push_back({x.data, x.count, static_cast<int>(x.peer), x.tag});
      return t;
    };
    const auto s = convert(sends), r = convert(recvs);
    world_.exchange(s, r, what);
  }
  void fail(const std::string& message) noexcept override {
    if (!mpi::job_failed()) world_.notify_failure("rank " + std::to_string(rank) + ": " + message);
  }

 private:
  mpi::Communicator world_;
};

/// Reduce<MpiAllreduce>: every rank of MPI_COMM_WORLD trains on its share of each global batch
/// (ranks x workers x batch_size samples); each step the ranks' summed gradients are all-reduced,
/// in buckets that start while the backward pass goes on.
template <>
struct ReduceBackend<MpiAllreduce> {
  static constexpr bool available = true;
  static constexpr bool across_processes = true;
  static std::unique_ptr<CrossRanks> join(std::vector<float>& params, const std::string& signature) {
    auto ranks = std::make_unique<MpiRanks>();
    ranks->communicator().agree("training setup", signature);
    ranks->communicator().broadcast(params.data(), params.size(), 0, "initial parameters");
    return ranks;
  }
};

}  // namespace tessera::detail
