// tessera/reduce/choices.hpp - the Reduce choices: how workers communicate. Each is a factory of a
// communicator group (comm/concepts.hpp): ThreadAllreduce's is here-only machinery (comm/
// thread_comm.hpp); MpiAllreduce's comes with tessera/mpi.hpp, NcclAllreduce's with
// tessera/nccl.hpp. `across_processes`: the group spans processes (every process runs the same
// program); `gpu`: its collectives run on GPU memory.
#pragma once

namespace tessera {

struct ThreadAllreduce {
  static constexpr const char* name = "ThreadAllreduce";
  static constexpr bool across_processes = false;
  static constexpr bool gpu = false;
};
struct MpiAllreduce {
  static constexpr const char* name = "MpiAllreduce";
  static constexpr bool across_processes = true;
  static constexpr bool gpu = false;
};
struct NcclAllreduce {
  static constexpr const char* name = "NcclAllreduce";
  static constexpr bool across_processes = true;
  static constexpr bool gpu = true;
};

}  // namespace tessera
