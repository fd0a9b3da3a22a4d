// The digits MLP trained by every rank of an MPI job together (Reduce<MpiAllreduce>): the same
// program as the README's example with one policy added and MPI set up.
#include <tessera/mpi.hpp>
#include <tessera/tessera.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  using namespace tessera;
  mpi::Environment env(&argc, &argv);
  const auto world = mpi::Communicator::world();
  const char* path = argc > 1 ? argv[1] : "data/digits.csv";

  data::Dataset digits = data::read_csv(path, {.label = data::last_column});
  auto [train, test] = data::train_test_split(digits, {.test_fraction = 0.2, .seed = 42});
  data::Standardizer scaler(train.x());
  train = scaler.transform(train);
  test = scaler.transform(test);

  Model model = models::mlp({64, 128, 10}, act::relu, loss::softmax_cross_entropy, {.seed = 42});
  Trainer<DataSplit<Random>, Reduce<MpiAllreduce>> trainer({.batch_size = 8, .epochs = 20, .seed = 42, .workers = 1},
                                                           optim::adam(1e-2));
  History history = trainer.fit(model, train);

  if (world.rank() == 0)
    std::printf("%d ranks: final loss %.4f, test accuracy %.4f\n", world.size(), history.last().loss,
                metrics::accuracy(model, test));
}
