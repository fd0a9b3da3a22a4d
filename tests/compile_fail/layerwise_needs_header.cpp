// expect: Partition<Layerwise> and Partition<Columnwise> need #include <tessera/partition.hpp>
#include <tessera/tessera.hpp>
using namespace tessera;
int main() {
  Model m = models::mlp({2, 4, 2}, act::relu, loss::softmax_cross_entropy);
  Trainer<Partition<Layerwise>> t({.workers = 2}, optim::sgd(0.1));
  t.fit(m, data::Dataset(Matrix(2, 2), std::vector<float>{0.0f, 1.0f}));
}
