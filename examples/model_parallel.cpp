// Model parallelism on the digits: the MLP 64-128-10 trained as a 2-stage pipeline (1F1B and
// GPipe), as a column split over 2 workers, and as 2 stages x 2 replicas, against the same MLP
// trained whole. Then the pipeline's model is saved as one whole model file with its standardizer,
// loaded and evaluated unpartitioned on the raw test rows.
//
//   model_parallel [path/to/digits.csv]
#include <tessera/partition.hpp>
#include <tessera/tessera.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#ifndef TESSERA_DATA_DIR
#define TESSERA_DATA_DIR "data"
#endif

using namespace tessera;

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : TESSERA_DATA_DIR "/digits.csv";
  auto [train, test] = data::train_test_split(data::read_csv(path, {.label = data::last_column}),
                                              {.test_fraction = 0.2, .seed = 42, .stratify = true});
  const data::Standardizer scaler(train.x());
  const data::Dataset raw_test = test;
  train = scaler.transform(train);
  test = scaler.transform(test);
  const Model start = models::mlp({64, 128, 10}, act::relu, loss::softmax_cross_entropy, {.seed = 42});
  const auto options = [](std::size_t workers, std::size_t micro) {
    return TrainerOptions{.batch_size = 32, .epochs = 15, .seed = 42, .workers = workers, .micro_batches = micro,
                          .progress = Progress::never};
  };

  std::printf("digits: train %zu, test %zu; mlp 64-128-10, Adam 2e-3, 15 epochs, 32 samples per step\n",
              train.rows(), test.rows());
  std::printf("pipeline stages: %s\n", plan_stages(start.architecture(), 2).describe().c_str());
  std::printf("column split:    %s\n", ColumnSplit(start, 2).describe().c_str());

  const auto run = [&](const char* label, auto trainer) {
    Model m = start;
    const History h = trainer.fit(m, train);
    char bubble[16] = "  -";
    if (!std::isnan(h.last().bubble_fraction)) std::snprintf(bubble, sizeof bubble, "%.3f", h.last().bubble_fraction);
    std::printf("  %-26s workers %zu  loss %.4f  test accuracy %.4f  %6.0f samples/s  bubble %s\n", label, h.workers,
                h.last().loss, metrics::accuracy(m, test), h.last().samples_per_second, bubble);
    return m;
  };
  run("whole model", Trainer<DataSplit<Stratified>>(options(1, 1), optim::adam(2e-3)));
  Model piped =
      run("pipeline 1F1B, 2 stages", Trainer<DataSplit<Stratified>, Partition<Layerwise>>(options(2, 4), optim::adam(2e-3)));
  run("pipeline GPipe, 2 stages",
      Trainer<DataSplit<Stratified>, Partition<LayerwiseWith<GPipe>>>(options(2, 4), optim::adam(2e-3)));
  run("column split, 2 workers", Trainer<DataSplit<Stratified>, Partition<Columnwise>>(options(2, 1), optim::adam(2e-3)));
  // 16 samples per replica per step: the same 32-sample steps as above
  run("2 stages x 2 replicas",
      Trainer<DataSplit<Stratified>, Partition<LayerwiseWith<OneFOneB, 2>>>(
          {.batch_size = 16, .epochs = 15, .seed = 42, .workers = 4, .micro_batches = 4, .progress = Progress::never},
          optim::adam(2e-3)));

  // what each worker holds (floats): parameters, gradients, Adam's two moments; the model carries
  // its standardizer into the file saved below
  piped.set_input_transform(scaler);
  Pipeline pipe(piped, {.stages = 2, .micro_batches = 4});
  const auto mem = pipe.memory();
  std::printf("pipeline memory per worker (parameters of %zu):", piped.parameter_count());
  for (const auto& w : mem) std::printf("  %zu", w.parameters);
  std::printf("\n");

  // one whole model file, evaluated unpartitioned on raw rows: the file standardises them
  const std::string file = "model_parallel_digits.tsr";
  pipe.save(file);
  const Model loaded = load_model(file);
  const std::vector<int> predicted = loaded.predict_classes_raw(raw_test.x());
  std::printf("saved by the pipeline, loaded whole: test accuracy %.4f\n", metrics::accuracy(predicted, raw_test.y()));
  std::remove(file.c_str());
}
