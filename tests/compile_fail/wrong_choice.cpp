// expect: DataSplit<X> needs X = Uniform, Random or Stratified
#include <tessera/trainer.hpp>
using namespace tessera;
Trainer<DataSplit<Prefetch>> trainer({}, optim::sgd(0.1));
int main() {}
