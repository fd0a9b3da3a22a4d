#include <tessera/tessera.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  using namespace tessera;
  const char* path = argc > 1 ? argv[1] : "data/digits.csv";

  data::Dataset digits = data::read_csv(path, {.label = data::last_column});
  auto [train, test] = data::train_test_split(digits, {.test_fraction = 0.2, .seed = 42});
  data::Standardizer scaler(train.x());
  train = scaler.transform(train);
  test = scaler.transform(test);

  Model model = models::mlp({64, 128, 10}, act::relu, loss::softmax_cross_entropy, {.seed = 42});
  Trainer<DataSplit<Random>> trainer({.batch_size = 8, .epochs = 20, .seed = 42, .workers = 2}, optim::adam(1e-2));
  History history = trainer.fit(model, train);

  std::printf("final loss %.4f, test accuracy %.4f\n", history.last().loss, metrics::accuracy(model, test));
}
