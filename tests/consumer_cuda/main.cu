// Consumer of the installed components cuda and nccl: the NCCL it was compiled against (nccl.h)
// must be the NCCL it runs with (libnccl), both from NCCL_ROOT. With a GPU it trains the digits MLP
// on every GPU of the machine through Reduce<NcclAllreduce> and prints the test accuracy; without
// one it says so and stops there.
#include <tessera/tessera.hpp>
#include <tessera/nccl.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  using namespace tessera;
  int library = 0;
  if (ncclGetVersion(&library) != ncclSuccess) {
    std::fprintf(stderr, "tessera_consumer_cuda: ncclGetVersion failed\n");
    return 1;
  }
  if (library != NCCL_VERSION_CODE) {
    std::fprintf(stderr, "tessera_consumer_cuda: compiled against NCCL %d (nccl.h) but runs with NCCL %d (libnccl)\n",
                 NCCL_VERSION_CODE, library);
    return 1;
  }
  std::printf("tessera_consumer_cuda: NCCL %d.%d.%d (header and library agree)\n", NCCL_MAJOR, NCCL_MINOR,
              NCCL_PATCH);
  if (detail::cuda_device_count() == 0) {
    std::printf("tessera_consumer_cuda: no CUDA device, training skipped\n");
    return 0;
  }

  const char* path = argc > 1 ? argv[1] : "data/digits.csv";
  data::Dataset digits = data::read_csv(path, {.label = data::last_column});
  auto [train, test] = data::train_test_split(digits, {.test_fraction = 0.2, .seed = 42});
  data::Standardizer scaler(train.x());
  train = scaler.transform(train);
  test = scaler.transform(test);

  Model model = models::mlp({64, 128, 10}, act::relu, loss::softmax_cross_entropy, {.seed = 42});
  Trainer<DataSplit<Random>, Reduce<NcclAllreduce>, Device<Cuda>> trainer(
      {.batch_size = 8, .epochs = 20, .seed = 42, .workers = 0}, optim::adam(1e-2));
  History history = trainer.fit(model, train);
  std::printf("tessera_consumer_cuda: final loss %.4f, test accuracy %.4f\n", history.last().loss,
              metrics::accuracy(model, test));
}
