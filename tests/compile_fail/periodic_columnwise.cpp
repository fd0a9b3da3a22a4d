// expect: Sync<Periodic<K>> averages whole replicas and needs Partition<Replicate>
#include <tessera/trainer.hpp>
using namespace tessera;
Trainer<Sync<Periodic<4>>, Partition<Columnwise>> trainer({}, optim::sgd(0.1));
int main() {}
