// expect: more than one Reduce<...> policy; give at most one per family
#include <tessera/trainer.hpp>
using namespace tessera;
Trainer<Reduce<ThreadAllreduce>, DataSplit<Random>, Reduce<MpiAllreduce>> trainer({}, optim::sgd(0.1));
int main() {}
