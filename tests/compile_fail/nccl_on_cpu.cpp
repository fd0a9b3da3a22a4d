// expect: Reduce<NcclAllreduce> requires Device<Cuda>; use Reduce<ThreadAllreduce> or Reduce<MpiAllreduce>, or add Device<Cuda>
#include <tessera/trainer.hpp>
using namespace tessera;
Trainer<Reduce<NcclAllreduce>> trainer({}, optim::sgd(0.1));
int main() {}
