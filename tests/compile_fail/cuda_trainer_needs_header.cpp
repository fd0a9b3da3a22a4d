// expect: Device<Cuda> needs #include <tessera/cuda.hpp> \(CMake component cuda, compiled by nvcc\)
#include <tessera/tessera.hpp>
using namespace tessera;
int main() {
  Model m = models::softmax_regression(2, 2);
  Trainer<Device<Cuda>> t({}, optim::sgd(0.1));
  t.fit(m, data::Dataset(Matrix(2, 2), std::vector<float>{0.0f, 1.0f}));
}
