// expect: Sync<Sharded> shards the optimizer state of replicas and needs Partition<Replicate>
#include <tessera/trainer.hpp>
using namespace tessera;
Trainer<Partition<Layerwise>, Sync<Sharded>> trainer({}, optim::sgd(0.1));
int main() {}
