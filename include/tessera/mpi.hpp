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
