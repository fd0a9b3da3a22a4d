// Built (not run) when the package has the component mpi: tessera/mpi.hpp compiles and links
// through tessera::mpi.
#include <tessera/mpi.hpp>

int main(int argc, char** argv) {
  tessera::mpi::Environment env(&argc, &argv);
  return tessera::mpi::Communicator::world().size() > 0 ? 0 : 1;
}
