// Data-parallel training on every core: the digits MLP trained by several worker threads that
// combine their gradients every step (synchronous SGD), then by local SGD (parameters averaged
// every K steps), then in deterministic mode (the same bits whatever the number of workers).
//
//   data_parallel [path/to/digits.csv] [--workers N] [--epochs N]
#include <tessera/tessera.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

using namespace tessera;

namespace {

/// Prints one line per epoch: the progress a user wants to see.
struct PrintEpoch {
  const char* label;
  void on_epoch(const EpochRecord& e) const {
    std::printf("  %-14s epoch %2zu  loss %.4f  test accuracy %.4f  %7.0f samples/s  compute %.3f s  communication %.3f s\n",
                label, e.epoch, e.loss, e.validation_metric, e.samples_per_second, e.compute_seconds,
                e.communication_seconds);
  }
};

}  // namespace

int main(int argc, char** argv) try {
  std::string path = std::string(TESSERA_DATA_DIR) + "/digits.csv";
  std::size_t workers = 0, epochs = 15;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--workers") && i + 1 < argc) {
      workers = std::strtoul(argv[++i], nullptr, 10);
    } else if (!std::strcmp(argv[i], "--epochs") && i + 1 < argc) {
      epochs = std::strtoul(argv[++i], nullptr, 10);
    } else if (argv[i][0] == '-') {
      std::fprintf(stderr, "usage: %s [digits.csv] [--workers N] [--epochs N]\n", argv[0]);
      return 2;
    } else {
      path = argv[i];
    }
  }
  auto [train, test] = data::train_test_split(data::read_csv(path, {.num_classes = 10}),
                                              {.test_fraction = 0.2, .seed = 42, .stratify = true});
  const data::Standardizer scaler(train.x());
  train = scaler.transform(train);
  test = scaler.transform(test);

  const TrainerOptions options{.batch_size = 16, .epochs = epochs, .seed = 42, .workers = workers};
  const auto make_model = [] { return models::mlp({64, 128, 10}, act::relu, loss::softmax_cross_entropy, {.seed = 42}); };

  // 1. Synchronous SGD: gradients all-reduced every step; batches prefetched in the background.
  Trainer<DataSplit<Stratified>, Load<Prefetch>, Reduce<ThreadAllreduce>, Sync<EveryStep>> sync(options, optim::adam(2e-3));
  std::printf("synchronous SGD, %zu workers x batch %zu\n", sync.workers(), options.batch_size);
  Model a = make_model();
  sync.fit(a, train, test, PrintEpoch{"sync"});

  // 2. Local SGD: every worker steps alone; parameters averaged every 10 steps.
  Trainer<DataSplit<Stratified>, Sync<Periodic<10>>> local(options, optim::adam(2e-3));
  std::printf("local SGD (average every 10 steps), %zu workers\n", local.workers());
  Model b = make_model();
  local.fit(b, train, test, PrintEpoch{"local"});

  // 3. Deterministic mode: bitwise the same parameters for any number of workers.
  TrainerOptions det = options;
  det.deterministic = true;
  Trainer<DataSplit<Stratified>> exact(det, optim::adam(2e-3));
  Model c = make_model();
  const History h = exact.fit(c, train, test);
  std::printf("deterministic, %zu workers: final loss %.6f, test accuracy %.4f\n", exact.workers(), h.last().loss,
              metrics::accuracy(c, test));

  std::printf("test accuracy: synchronous %.4f, local SGD %.4f, deterministic %.4f\n", metrics::accuracy(a, test),
              metrics::accuracy(b, test), metrics::accuracy(c, test));
  return 0;
} catch (const tessera::Error& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
