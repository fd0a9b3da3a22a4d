// Checkpoints and resume: an MLP trained on data/digits.csv that writes a checkpoint every 50
// steps and on SIGTERM / SIGINT (Ctrl-C), and that, started again, goes on from the newest one.
// The resumed run ends with the same parameters and losses, bit for bit, as a run never stopped.
//
//   resume [--dir DIR] [--interrupt-at STEP] [path/to/digits.csv]
//
// --interrupt-at sends this process a SIGTERM after that step, as a scheduler would.
#include <tessera/tessera.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>

using namespace tessera;

namespace {
/// Sends this process a SIGTERM once the fit is past a step: a stand-in for a scheduler's notice.
struct InterruptAt {
  std::uint64_t step = 0;
  bool sent = false;
  void on_step_boundary(const StepPoint& p, const std::function<const Checkpoint&()>&) {
    if (step && !sent && p.global_step >= step) {
      sent = true;
      std::raise(SIGTERM);
    }
  }
};
}  // namespace

int main(int argc, char** argv) try {
  std::string path = std::string(TESSERA_DATA_DIR) + "/digits.csv", dir = "resume-run";
  InterruptAt interrupt;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--dir") && i + 1 < argc) {
      dir = argv[++i];
    } else if (!std::strcmp(argv[i], "--interrupt-at") && i + 1 < argc) {
      interrupt.step = std::strtoull(argv[++i], nullptr, 10);
    } else if (argv[i][0] == '-') {
      std::fprintf(stderr, "usage: %s [--dir DIR] [--interrupt-at STEP] [digits.csv]\n", argv[0]);
      return 2;
    } else {
      path = argv[i];
    }
  }
  const data::Dataset digits = data::read_csv(path, {.label = data::last_column, .num_classes = 10});
  auto [train, test] = data::train_test_split(digits, {.test_fraction = 0.2, .seed = 42});
  const data::Standardizer scaler(train.x());
  train = scaler.transform(train);
  test = scaler.transform(test);

  Trainer<DataSplit<Random>> trainer({.batch_size = 8, .epochs = 10, .seed = 42, .workers = 2,
                                      .progress = Progress::never},
                                     optim::adam(1e-2).with(optim::cosine_decay(0.05)));
  Model mlp = models::mlp({64, 128, 10}, act::relu, loss::softmax_cross_entropy, {.seed = 42});

  std::filesystem::create_directories(dir);
  const std::string prefix = dir + "/digits";
  CheckpointEvery every(prefix, 50);  // every 50 steps (of 90 per epoch); the newest 2 files kept
  StopOnSignal stop;
  const std::string last = latest_checkpoint(prefix);
  History h;
  if (last.empty()) {
    std::printf("starting a new fit (checkpoints in %s)\n", dir.c_str());
    h = trainer.fit(mlp, train, test, every, stop, interrupt);
  } else {
    const Checkpoint c = load_checkpoint(last);
    std::printf("resuming from %s: epoch %zu, step %zu of %zu\n", last.c_str(), c.epoch + 1, c.step, c.steps_per_epoch);
    h = trainer.fit(mlp, train, test, c, every, stop, interrupt);
  }
  if (h.interrupted) {
    std::printf("interrupted after %zu epochs; the newest checkpoint is %s - run again to go on\n", h.epochs.size(),
                latest_checkpoint(prefix).c_str());
    return 0;
  }
  for (const EpochRecord& e : h.epochs)
    std::printf("epoch %2zu  loss %.9g  test accuracy %.4f\n", e.epoch, e.loss, e.validation_metric);
  std::printf("done: test accuracy %.4f\n", metrics::accuracy(mlp, test));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
