// The main example: softmax regression and a multi-layer perceptron trained on the handwritten
// digits shipped in data/digits.csv (1797 8x8 images, 10 classes), reporting test accuracy.
//
//   digits [path/to/digits.csv] [--epochs N] [--export-split DIR] [--history DIR]
//
// --export-split writes the exact train/test split as CSV, for bench/sklearn_digits.py.
// --history writes each fit's history (per epoch: loss, test accuracy, times) as DIR/softmax.csv
// and DIR/mlp.csv, for tools/plot.py.
#include <tessera/tessera.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

using namespace tessera;

namespace {

void report(const char* name, const Model& model, const History& h, const data::Dataset& test) {
  std::printf("%-20s params %6zu  final loss %.4f  %8.0f samples/s  %.2f s  test accuracy %.4f\n", name,
              model.parameter_count(), h.last().loss, h.last().samples_per_second, h.total_seconds,
              metrics::accuracy(model, test));
}

}  // namespace

int main(int argc, char** argv) try {
  std::string path = std::string(TESSERA_DATA_DIR) + "/digits.csv", export_dir, history_dir;
  std::size_t epochs = 20;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--epochs") && i + 1 < argc) {
      epochs = std::strtoul(argv[++i], nullptr, 10);
    } else if (!std::strcmp(argv[i], "--export-split") && i + 1 < argc) {
      export_dir = argv[++i];
    } else if (!std::strcmp(argv[i], "--history") && i + 1 < argc) {
      history_dir = argv[++i];
    } else if (argv[i][0] == '-') {
      std::fprintf(stderr, "usage: %s [digits.csv] [--epochs N] [--export-split DIR] [--history DIR]\n", argv[0]);
      return 2;
    } else {
      path = argv[i];
    }
  }

  const data::Dataset digits = data::read_csv(path, {.label = data::last_column, .num_classes = 10});
  auto [train, test] = data::train_test_split(digits, {.test_fraction = 0.2, .seed = 42});
  std::printf("digits: %zu samples x %zu features; train %zu, test %zu (seed 42)\n", digits.rows(), digits.cols(),
              train.rows(), test.rows());
  if (!export_dir.empty()) {
    std::filesystem::create_directories(export_dir);
    data::write_csv(train, export_dir + "/train.csv");
    data::write_csv(test, export_dir + "/test.csv");
    std::printf("wrote %s/train.csv and %s/test.csv\n", export_dir.c_str(), export_dir.c_str());
  }

  // Standardise with statistics of the training part only.
  const data::Standardizer scaler(train.x());
  train = scaler.transform(train);
  test = scaler.transform(test);

  // Two worker threads, each with 8 samples per step: a global batch of 16. The worker count is
  // fixed (not one per core) so that the result is the same on every machine.
  Trainer<DataSplit<Random>> trainer({.batch_size = 8, .epochs = epochs, .seed = 42, .workers = 2}, optim::adam(1e-2));

  Model softmax = models::softmax_regression(64, 10, {.seed = 42, .weight_decay = 1e-3f});
  const History hs = trainer.fit(softmax, train, test);
  report("softmax regression", softmax, hs, test);

  Model mlp = models::mlp({64, 128, 10}, act::relu, loss::softmax_cross_entropy, {.seed = 42});
  const History h = trainer.fit(mlp, train, test);
  report("mlp 64-128-10 relu", mlp, h, test);
  for (const EpochRecord& e : h.epochs)
    if (e.epoch % 5 == 0 || e.epoch == 1)
      std::printf("  mlp epoch %2zu  loss %.4f  test accuracy %.4f\n", e.epoch, e.loss, e.validation_metric);
  if (!history_dir.empty()) {
    std::filesystem::create_directories(history_dir);
    hs.write_csv(history_dir + "/softmax.csv");
    h.write_csv(history_dir + "/mlp.csv");
    std::printf("wrote %s/softmax.csv and %s/mlp.csv\n", history_dir.c_str(), history_dir.c_str());
  }
  return 0;
} catch (const tessera::Error& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
