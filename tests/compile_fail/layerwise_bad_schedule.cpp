// expect: LayerwiseWith<Schedule, R> needs Schedule = GPipe or OneFOneB
#include <tessera/partition.hpp>
using namespace tessera;
Trainer<Partition<LayerwiseWith<Random>>> trainer({}, optim::sgd(0.1));
int main() {}
