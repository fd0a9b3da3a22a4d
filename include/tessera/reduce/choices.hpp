// tessera/reduce/choices.hpp - the Reduce choices: how workers communicate. Each is a factory of a
// communicator group (comm/concepts.hpp): ThreadAllreduce's is here-only machinery (comm/
// thread_comm.hpp); MpiAllreduce's comes with tessera/mpi.hpp, NcclAllreduce's with
// tessera/nccl.hpp. `across_processes`: the group spans processes (every process runs the same
// program); `gpu`: its collectives run on GPU memory.
#pragma once

namespace tessera {

/// Gradients summed over the worker threads of one process.
struct ThreadAllreduce {
  /// Shown in messages and progress lines.
  static constexpr const char* name = "ThreadAllreduce";
  /// Within one process.
  static constexpr bool across_processes = false;
  /// Host memory.
  static constexpr bool gpu = false;
};
/// Gradients summed over the processes of an MPI job (component mpi), and over threads within each.
struct MpiAllreduce {
  /// Shown in messages and progress lines.
  static constexpr const char* name = "MpiAllreduce";
  /// Across processes.
  static constexpr bool across_processes = true;
  /// Host memory.
  static constexpr bool gpu = false;
};
/// Gradients summed on GPUs with NCCL (component nccl), one GPU per lane.
struct NcclAllreduce {
  /// Shown in messages and progress lines.
  static constexpr const char* name = "NcclAllreduce";
  /// Across processes.
  static constexpr bool across_processes = true;
  /// GPU memory (needs Device<Cuda>).
  static constexpr bool gpu = true;
};

}  // namespace tessera
