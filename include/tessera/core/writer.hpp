// tessera/core/writer.hpp - who writes tessera's files, and when a write is complete.
//
// In one process, io::save and History::write_csv / write_json write at once. In a job of several
// processes (mpi::Environment), writing is collective: every rank calls the function, rank 0 of
// MPI_COMM_WORLD writes, and every rank returns only once the file is complete and in place - or
// throws the same Error when rank 0 could not write it. So a rank may load a model right after
// every rank saved it, and ranks that train one model together never race to write one file.
#pragma once

#include <atomic>
#include <functional>

namespace tessera::detail {

/// Whether this process shows progress and writes files (false on every rank but 0 of an MPI job).
inline std::atomic<bool>& this_process_writes() {
  static std::atomic<bool> writes{true};
  return writes;
}

/// How a write runs: null, in this process at once; mpi::Environment installs the collective one.
using FileWriteRunner = void (*)(const std::function<void()>& write);
inline std::atomic<FileWriteRunner>& file_write_runner() {
  static std::atomic<FileWriteRunner> runner{nullptr};
  return runner;
}

/// Runs `write` (which writes one file and throws tessera::Error when it cannot) as this process
/// must: at once, or collectively under mpi::Environment.
inline void run_file_write(const std::function<void()>& write) {
  if (const FileWriteRunner r = file_write_runner().load()) {
    r(write);
    return;
  }
  write();
}

}  // namespace tessera::detail
