// Model parallelism across MPI ranks on the digits: the MLP 64-128-10 trained with one pipeline
// stage per rank (1F1B and GPipe, 4 micro-batches), as a column split over the ranks, and, with an
// even rank count, as pipelines x 2 replicas; every rank ends with the whole model, which rank 0
// saves as one model file. Same data, split, model and optimizer as examples/model_parallel.cpp.
//
//   mpirun -np 2 model_parallel_mpi [path/to/digits.csv] [model file to write]
#include <cmath>
#include <cstdio>
#include <string>
#include <tessera/partition/mpi.hpp>
#include <tessera/tessera.hpp>

#ifndef TESSERA_DATA_DIR
#define TESSERA_DATA_DIR "data"
#endif

using namespace tessera;

int main(int argc, char** argv) {
  mpi::Environment env(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  try {
    const std::string path = argc > 1 ? argv[1] : TESSERA_DATA_DIR "/digits.csv";
    auto [train, test] = data::train_test_split(data::read_csv(path, {.label = data::last_column}),
                                                {.test_fraction = 0.2, .seed = 42, .stratify = true});
    const data::Standardizer scaler(train.x());
    train = scaler.transform(train);
    test = scaler.transform(test);
    const Model start = models::mlp({64, 128, 10}, act::relu, loss::softmax_cross_entropy, {.seed = 42});
    const auto options = [](std::size_t batch, std::size_t micro) {
      return TrainerOptions{
          .batch_size = batch, .epochs = 15, .seed = 42, .micro_batches = micro, .progress = Progress::never};
    };
    if (rank == 0)
      std::printf("digits: train %zu, test %zu; mlp 64-128-10, Adam 2e-3, 15 epochs, 32 samples per step, %d ranks\n",
                  train.rows(), test.rows(), ranks);

    const auto run = [&](const char* label, auto trainer) {
      Model m = start;
      const History h = trainer.fit(m, train);
      char bubble[16] = "  -";
      if (!std::isnan(h.last().bubble_fraction)) std::snprintf(bubble, sizeof bubble, "%.3f", h.last().bubble_fraction);
      if (rank == 0)
        std::printf("  %-30s workers %zu  loss %.4f  test accuracy %.4f  %6.0f samples/s  bubble %s\n", label,
                    h.workers, h.last().loss, metrics::accuracy(m, test), h.last().samples_per_second, bubble);
      return m;
    };
    const std::string stages = std::to_string(ranks) + (ranks == 1 ? " stage" : " stages");
    const Model piped = run(
        ("pipeline 1F1B, " + stages).c_str(),
        Trainer<DataSplit<Stratified>, Partition<Layerwise>, Reduce<MpiAllreduce>>(options(32, 4), optim::adam(2e-3)));
    run(("pipeline GPipe, " + stages).c_str(),
        Trainer<DataSplit<Stratified>, Partition<LayerwiseWith<GPipe>>, Reduce<MpiAllreduce>>(options(32, 4),
                                                                                              optim::adam(2e-3)));
    run(("column split, " + std::to_string(ranks) + " ranks").c_str(),
        Trainer<DataSplit<Stratified>, Partition<Columnwise>, Reduce<MpiAllreduce>>(options(32, 1), optim::adam(2e-3)));
    if (ranks % 2 == 0)  // 16 samples per replica per step: the same 32-sample steps
      run((std::to_string(ranks / 2) + " stage(s) x 2 replicas").c_str(),
          Trainer<DataSplit<Stratified>, Partition<LayerwiseWith<OneFOneB, 2>>, Reduce<MpiAllreduce>>(
              options(16, 4), optim::adam(2e-3)));

    // every rank holds the whole trained model; rank 0 writes it as one file
    const std::string out = argc > 2 ? argv[2] : "model_parallel_mpi.tsr";
    save(piped, out);
    MPI_Barrier(MPI_COMM_WORLD);
    const Model loaded = load_model(out);
    if (rank == 0)
      std::printf("saved by the pipeline, loaded whole: test accuracy %.4f\n", metrics::accuracy(loaded, test));
  } catch (const std::exception& e) {  // a setup that does not fit is refused on every rank alike
    if (rank == 0) std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
