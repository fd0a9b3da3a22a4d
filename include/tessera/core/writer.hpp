// tessera/core/writer.hpp - whether this process writes tessera's files. In a job of several
// processes (mpi::Environment), only rank 0 of MPI_COMM_WORLD writes: io::save and
// History::write_csv / write_json return without writing on every other rank, so that ranks that
// train one model together never race to write the same file.
#pragma once

#include <atomic>

namespace tessera::detail {

inline std::atomic<bool>& this_process_writes() {
  static std::atomic<bool> writes{true};
  return writes;
}

}  // namespace tessera::detail
