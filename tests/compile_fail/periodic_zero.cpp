// expect: Sync<Periodic<K>> needs K >= 1
#include <tessera/trainer.hpp>
using namespace tessera;
Trainer<Sync<Periodic<0>>> trainer({}, optim::sgd(0.1));
int main() {}
