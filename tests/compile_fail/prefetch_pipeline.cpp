// expect: Load<Prefetch> gathers the batches of data-parallel replicas; Partition<Layerwise> and Partition<Columnwise> read each micro-batch's rows where they are used: use Load<Sequential>
#include <tessera/trainer.hpp>
using namespace tessera;
// Prefetching would have nothing to feed: a pipeline's stages read their rows themselves.
Trainer<Partition<Layerwise>, Load<Prefetch>> trainer({}, optim::sgd(0.1));
int main() {}
