// expect: Sync<Sharded> \(optimizer state sharded across replicas\) is not in this version
#include <tessera/tessera.hpp>

int main() {
  using namespace tessera;
  Model m = models::linear_regression(3);
  data::Dataset d(Matrix(4, 3, std::vector<float>(12, 1.0f)), std::vector<float>(4, 1.0f));
  Trainer<Sync<Sharded>> t({}, optim::sgd(0.1));
  t.fit(m, d);
}
