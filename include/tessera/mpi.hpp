// tessera/mpi.hpp - tessera across processes with Open MPI. Needs the CMake component `mpi`
// (find_package(tessera CONFIG COMPONENTS mpi), target tessera::mpi); the default headers never
// include <mpi.h>.
#pragma once

#include <string>

#include "tessera/comm/mpi_comm.hpp"
#include "tessera/model/model.hpp"

namespace tessera::mpi {

/// What every rank must agree on before training together: the architecture, the parameter
/// count and the weight decay.
inline std::string signature(const Model& m) {
  return m.architecture().describe() + " | " + std::to_string(m.parameter_count()) + " parameters | weight_decay " +
         std::to_string(m.weight_decay());
}

}  // namespace tessera::mpi

#include <memory>
#include <optional>
#include <vector>

#include "tessera/trainer.hpp"

namespace tessera::detail {

/// Reduce<MpiAllreduce>: every rank of MPI_COMM_WORLD trains on its share of each global batch
/// (ranks x workers x batch_size samples); each step the ranks' summed gradients are all-reduced.
template <>
struct ReduceBackend<MpiAllreduce> {
  static constexpr bool available = true;
  static std::optional<CrossRanks> join(std::vector<float>& params, const std::string& signature) {
    auto world = std::make_shared<mpi::Communicator>(mpi::Communicator::world());
    world->agree("training setup", signature);
    world->broadcast(params.data(), params.size(), 0);
    CrossRanks c;
    c.rank = static_cast<std::size_t>(world->rank());
    c.size = static_cast<std::size_t>(world->size());
    c.sum = [world](float* p, std::size_t n) { world->all_reduce(p, n); };
    c.sum_double = [world](double* p, std::size_t n) { world->all_reduce(p, n); };
    return c;
  }
};

}  // namespace tessera::detail
