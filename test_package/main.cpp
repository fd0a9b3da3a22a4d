// Conan's test of the tessera package: softmax regression on a small synthetic data set (three
// Gaussian blobs in 2-D, 300 points), trained on 2 worker threads; prints the training accuracy.
#include <tessera/tessera.hpp>

#include <cstdio>

int main() {
  using namespace tessera;
  constexpr std::size_t n = 300, classes = 3;
  const float centre[classes][2] = {{-2.0f, 0.0f}, {2.0f, 0.0f}, {0.0f, 2.5f}};
  Matrix x(n, 2);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t c = i % classes;
    x(i, 0) = centre[c][0] + 0.6f * rng::normal(7, rng::Stream::user, 2 * i, 0);
    x(i, 1) = centre[c][1] + 0.6f * rng::normal(7, rng::Stream::user, 2 * i + 1, 0);
    y[i] = static_cast<float>(c);
  }
  const data::Dataset blobs(std::move(x), std::move(y));

  Model model = models::softmax_regression(2, classes, {.seed = 1});
  Trainer<DataSplit<Random>> trainer({.batch_size = 16, .epochs = 30, .seed = 1, .workers = 2}, optim::adam(5e-2));
  const History history = trainer.fit(model, blobs);
  const double accuracy = metrics::accuracy(model, blobs);
  std::printf("tessera test_package: softmax regression on %zu points, final loss %.4f, accuracy %.4f\n", n,
              history.last().loss, accuracy);
  return accuracy > 0.9 ? 0 : 1;
}
