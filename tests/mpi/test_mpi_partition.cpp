// Model parallelism across MPI ranks (Reduce<MpiAllreduce>): a pipeline with one stage per rank
// (both schedules) computes the outputs, loss and gradient of the whole model and of the same
// pipeline on threads, and trains to the same parameters and epoch losses; pipelines x replicas on
// a grid of ranks likewise; a column split over the ranks likewise; every rank ends with the whole
// model, which saves as one file; a rank count or setup that does not fit is refused on every rank.
// Run under mpirun with 1, 2, 3 and 4 ranks: the pipeline has as many stages as ranks.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "../partition_support.hpp"
#include "tessera/partition/mpi.hpp"
#include "tessera/tessera.hpp"

using namespace tessera;
using tessera::test::deep_model;
using tessera::test::make_data;
using tessera::test::scaled_difference;

namespace {

// Tolerance, as in tests/test_partition.cpp: the largest absolute difference over a buffer is at
// most 1e-5 of the largest absolute reference value for one pass, 1e-4 after three epochs of
// training (sums taken per micro-batch, per stage and over ranks in another order than the whole
// model's; the measured differences are printed by rank 0).
constexpr double tolerance = 1e-5;
constexpr double training_tolerance = 1e-4;

// (not through Communicator::world(): making a communicator is a collective call)
std::size_t ranks() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return static_cast<std::size_t>(n);
}
std::size_t my_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return static_cast<std::size_t>(r);
}
bool rank0() { return my_rank() == 0; }

Model own_seed(Loss loss, float weight_decay) {
  return deep_model(loss, weight_decay, 100 + static_cast<std::uint64_t>(my_rank()));
}

/// Rank 0's parameters, on every rank.
std::vector<float> rank0_parameters(const Model& m) {
  std::vector<float> p(m.parameters().begin(), m.parameters().end());
  mpi::Communicator::world().broadcast(p.data(), p.size(), 0, "rank 0's parameters");
  return p;
}

std::vector<float> values(const Model& m) { return {m.parameters().begin(), m.parameters().end()}; }

void report(const std::string& what, double diff) {
  if (rank0()) std::printf("  %-58s ranks %zu  max scaled difference %.2e\n", what.c_str(), ranks(), diff);
}

TrainerOptions opts(std::size_t batch, std::size_t workers, std::size_t micro) {
  return {.batch_size = batch, .epochs = 3, .seed = 5, .workers = workers, .micro_batches = micro,
          .progress = Progress::never};
}

/// Trains `start` with `trainer`, and checks parameters and epoch losses against `ref`.
template <class T>
History trains_like(T trainer, const Model& start, const data::Dataset& d, const Model& ref, const History& ref_h,
                    const std::string& what) {
  Model m = start;
  const History h = trainer.fit(m, d);
  CAPTURE(what, ranks());
  REQUIRE(h.epochs.size() == ref_h.epochs.size());
  const double diff = scaled_difference(values(m), values(ref));
  report(what, diff);
  CHECK(diff < training_tolerance);
  for (std::size_t e = 0; e < h.epochs.size(); ++e) CHECK(h.epochs[e].loss == Approx(ref_h.epochs[e].loss).epsilon(training_tolerance));
  // every rank holds the same whole model
  CHECK(std::equal(m.parameters().begin(), m.parameters().end(), rank0_parameters(m).begin()));
  return h;
}

}  // namespace

TEST_CASE("a pipeline across ranks computes the outputs, loss and gradient of the whole model and of threads",
          "[mpi][partition][layerwise]") {
  const std::size_t S = ranks();
  if (S > 5) return;  // the model has five layers
  using Engine = detail::LayerwiseEngine<detail::CpuWorker, comm::MpiGroup>;
  comm::MpiGroup world;
  for (const Loss loss : {Loss::softmax_cross_entropy, Loss::mean_squared_error}) {
    const data::Dataset d = make_data(29, 10, loss == Loss::softmax_cross_entropy ? 4 : 3, loss, 3);
    Model whole = own_seed(loss, 0.01f);
    const std::vector<float> p = rank0_parameters(whole);
    std::copy(p.begin(), p.end(), whole.parameters().begin());
    const detail::RowSource src{d.features.data(), d.targets.data(), d.cols(), d.target_dim, nullptr};
    const Matrix ref_out = whole.forward(d.x());
    std::vector<float> ref_grad;
    const double ref_loss = whole.loss_and_gradient(d.x(), d.targets, ref_grad);
    for (const Schedule sched : {Schedule::one_f_one_b, Schedule::gpipe})
      for (const std::size_t M : {1, 4, 7}) {
        CAPTURE(to_string(loss), to_string(sched), M, S);
        const PipelineOptions po{.stages = S, .micro_batches = M, .replicas = 1, .schedule = sched};
        Engine e(world, whole.architecture(), whole.weight_decay(), optim::sgd(1.0), p, po, 1, d.rows());
        std::vector<float> out(d.rows() * whole.output_dim());
        e.run_once(src, d.rows(), Engine::Mode::forward, out.data());
        CHECK(scaled_difference(out, std::span<const float>(ref_out.data(), out.size())) < tolerance);
        const double sum = e.run_once(src, d.rows(), Engine::Mode::gradient, nullptr);
        const double l = sum / detail::loss_normaliser(loss, d.rows(), whole.output_dim()) + e.weight_penalty();
        CHECK(l == Approx(ref_loss).epsilon(tolerance));
        const std::vector<float> grad = e.gradient();
        const double diff = scaled_difference(grad, ref_grad);
        CHECK(diff < tolerance);
        if (M == 4) report(std::string("gradient vs whole, ") + to_string(sched) + ", M = 4, " + to_string(loss), diff);
        // the same pipeline on S threads
        Pipeline threads(whole, po);
        std::vector<float> tgrad;
        const double tl = threads.loss_and_gradient(d.x(), d.targets, tgrad);
        CHECK(l == Approx(tl).epsilon(tolerance));
        CHECK(scaled_difference(grad, tgrad) < tolerance);
        // the parameters gathered from the stages are the whole model's, bit for bit
        const std::vector<float> back = e.parameters();
        CHECK(std::equal(back.begin(), back.end(), p.begin()));
        // each rank holds its stage: the parameters held sum to the whole, Adam-free SGD holds no state
        const std::vector<WorkerMemory> mem = e.memory();
        REQUIRE(mem.size() == S);
        std::size_t held = 0;
        for (const WorkerMemory& w : mem) held += w.parameters;
        CHECK(held == whole.parameter_count());
        CHECK(mem[my_rank()].parameters == e.plan().stages[e.stage()].parameters());
      }
  }
}

TEST_CASE("a pipeline across ranks trains like the same pipeline on threads and like the whole model",
          "[mpi][partition][layerwise][training]") {
  const std::size_t S = ranks();
  if (S > 5) return;
  const data::Dataset d = make_data(103, 10, 4, Loss::softmax_cross_entropy, 11);
  const Model start = own_seed(Loss::softmax_cross_entropy, 0.001f);
  Model ref = start;
  std::copy_n(rank0_parameters(start).begin(), ref.parameter_count(), ref.parameters().begin());
  const Model start0 = ref;  // rank 0's start, for the references in this process
  const History ref_h = Trainer<DataSplit<Random>>(opts(16, 1, 1), optim::momentum(0.05)).fit(ref, d);
  Model th1 = start0, th2 = start0;
  const History th1_h = Trainer<DataSplit<Random>, Partition<Layerwise>>(opts(16, S, 4), optim::momentum(0.05)).fit(th1, d);
  const History th2_h =
      Trainer<DataSplit<Random>, Partition<LayerwiseWith<GPipe>>>(opts(16, S, 5), optim::momentum(0.05)).fit(th2, d);

  const History h1 = trains_like(Trainer<DataSplit<Random>, Partition<Layerwise>, Reduce<MpiAllreduce>>(
                                     opts(16, 0, 4), optim::momentum(0.05)),
                                 start, d, ref, ref_h, "1F1B, M = 4, one stage per rank, vs whole model");
  trains_like(Trainer<DataSplit<Random>, Partition<Layerwise>, Reduce<MpiAllreduce>>(opts(16, S, 4), optim::momentum(0.05)),
              start, d, th1, th1_h, "1F1B, M = 4, one stage per rank, vs threads");
  const History h2 = trains_like(Trainer<DataSplit<Random>, Partition<LayerwiseWith<GPipe>>, Reduce<MpiAllreduce>>(
                                     opts(16, 0, 5), optim::momentum(0.05)),
                                 start, d, ref, ref_h, "GPipe, M = 5, one stage per rank, vs whole model");
  trains_like(Trainer<DataSplit<Random>, Partition<LayerwiseWith<GPipe>>, Reduce<MpiAllreduce>>(opts(16, 0, 5),
                                                                                                optim::momentum(0.05)),
              start, d, th2, th2_h, "GPipe, M = 5, one stage per rank, vs threads");
  for (const History* h : {&h1, &h2}) {
    CHECK(h->workers == S);
    CHECK(h->last().bubble_fraction >= 0.0);
    CHECK(h->last().bubble_fraction < 1.0);
  }
  // Adam: its state lives on the stages too
  Model adam_ref = start0;
  Trainer<DataSplit<Random>>(opts(16, 1, 1), optim::adam(1e-2)).fit(adam_ref, d);
  Model adam = start;
  Trainer<DataSplit<Random>, Partition<Layerwise>, Reduce<MpiAllreduce>>(opts(16, 0, 3), optim::adam(1e-2)).fit(adam, d);
  const double diff = scaled_difference(values(adam), values(adam_ref));
  report("1F1B, Adam, vs whole model", diff);
  CHECK(diff < training_tolerance);
}

TEST_CASE("pipelines x replicas on a grid of ranks train like threads and like the whole model",
          "[mpi][partition][layerwise][hybrid]") {
  const std::size_t W = ranks();
  if (W % 2 != 0) return;  // an odd rank count is refused below
  const data::Dataset d = make_data(103, 10, 4, Loss::softmax_cross_entropy, 12);
  const Model start = own_seed(Loss::softmax_cross_entropy, 0.001f);
  Model start0 = start;
  std::copy_n(rank0_parameters(start).begin(), start0.parameter_count(), start0.parameters().begin());
  Model ref = start0, th = start0;
  const History ref_h = Trainer<DataSplit<Random>>(opts(16, 1, 1), optim::momentum(0.05)).fit(ref, d);
  const History th_h =
      Trainer<DataSplit<Random>, Partition<LayerwiseWith<OneFOneB, 2>>>(opts(8, W, 2), optim::momentum(0.05)).fit(th, d);
  const std::string grid = std::to_string(W / 2) + " stage(s) x 2 replicas";
  const History h = trains_like(Trainer<DataSplit<Random>, Partition<LayerwiseWith<OneFOneB, 2>>, Reduce<MpiAllreduce>>(
                                    opts(8, 0, 2), optim::momentum(0.05)),
                                start, d, ref, ref_h, "1F1B, " + grid + ", vs whole model");
  trains_like(Trainer<DataSplit<Random>, Partition<LayerwiseWith<OneFOneB, 2>>, Reduce<MpiAllreduce>>(opts(8, 0, 2),
                                                                                                      optim::momentum(0.05)),
              start, d, th, th_h, "1F1B, " + grid + ", vs threads");
  trains_like(Trainer<DataSplit<Random>, Partition<LayerwiseWith<GPipe, 2>>, Reduce<MpiAllreduce>>(opts(8, 0, 3),
                                                                                                   optim::momentum(0.05)),
              start, d, ref, ref_h, "GPipe, " + grid + ", vs whole model");
  CHECK(h.workers == W);
}

TEST_CASE("after a pipeline fit across ranks every rank holds the whole model, saved as one file",
          "[mpi][partition][checkpoint]") {
  const std::size_t S = ranks();
  if (S > 5) return;
  const data::Dataset d = make_data(40, 10, 3, Loss::mean_squared_error, 8);
  Model m = own_seed(Loss::mean_squared_error, 0.01f);
  Trainer<Partition<Layerwise>, Reduce<MpiAllreduce>>({.batch_size = 10, .epochs = 2, .micro_batches = 2,
                                                       .progress = Progress::never},
                                                      optim::adam(1e-2))
      .fit(m, d);
  const auto world = mpi::Communicator::world();
  const std::vector<float> p0 = rank0_parameters(m);
  CHECK(std::equal(m.parameters().begin(), m.parameters().end(), p0.begin()));
  const std::string path = "mpi_partition_checkpoint_np" + std::to_string(S) + ".tsr";
  save(m, path);  // only rank 0 writes
  world.barrier("checkpoint written");
  const Model loaded = load_model(path);
  CHECK(std::equal(loaded.parameters().begin(), loaded.parameters().end(), m.parameters().begin()));
  CHECK(loaded.architecture() == m.architecture());
  world.barrier("checkpoint read");
  if (rank0()) std::filesystem::remove(path);
}

TEST_CASE("a rank count or setup that does not fit the partition is refused on every rank",
          "[mpi][partition][errors]") {
  const std::size_t W = ranks();
  const data::Dataset d = make_data(40, 10, 4, Loss::softmax_cross_entropy, 9);
  const auto small = [] {
    return Model(10, {{8, act::relu}, {6, act::relu}, {4, act::identity}}, Loss::softmax_cross_entropy, {.seed = 1});
  };
  const TrainerOptions o{.batch_size = 8, .epochs = 1, .micro_batches = 2, .progress = Progress::never};
  if (W > 3) {  // more stages than layers
    Model m = small();
    const std::vector<float> before = values(m);
    CHECK_THROWS_WITH((Trainer<Partition<Layerwise>, Reduce<MpiAllreduce>>(o, optim::sgd(0.1)).fit(m, d)),
                      Catch::Contains(std::to_string(W) + " stages for a model of 3 layers") &&
                          Catch::Contains("(" + std::to_string(W) + " ranks, 1 replica(s)"));
    CHECK(values(m) == before);
  }
  if (W % 2 == 1) {  // not a grid of 2 replicas
    Model m = small();
    CHECK_THROWS_WITH((Trainer<Partition<LayerwiseWith<OneFOneB, 2>>, Reduce<MpiAllreduce>>(o, optim::sgd(0.1)).fit(m, d)),
                      "tessera: Partition<LayerwiseWith<1F1B, 2>>: " + std::to_string(W) +
                          " ranks do not form a grid of 2 replicas; run ranks = stages x 2");
  }
  {  // workers other than the rank count
    Model m = deep_model(Loss::softmax_cross_entropy, 0.0f);
    TrainerOptions bad = o;
    bad.workers = W + 1;
    CHECK_THROWS_WITH((Trainer<Partition<Layerwise>, Reduce<MpiAllreduce>>(bad, optim::sgd(0.1)).fit(m, d)),
                      Catch::Contains("each rank is one worker, so workers must be 0 or the number of ranks"));
  }
  if (W > 1) {  // one rank's data does not fit: every rank hears which
    Model m = deep_model(Loss::softmax_cross_entropy, 0.0f);
    const data::Dataset wrong = make_data(40, 9, 4, Loss::softmax_cross_entropy, 9);
    const bool last = my_rank() == W - 1;
    CHECK_THROWS_WITH((Trainer<Partition<Layerwise>, Reduce<MpiAllreduce>>(o, optim::sgd(0.1)).fit(m, last ? wrong : d)),
                      Catch::Contains("ranks disagree on the training setup") &&
                          Catch::Contains("rank " + std::to_string(W - 1) + " has \"this rank cannot train"));
  }
  // and after the refusals the ranks still train together
  if (W <= 3) {
    Model m = small();
    CHECK_NOTHROW(Trainer<Partition<Layerwise>, Reduce<MpiAllreduce>>(o, optim::sgd(0.1)).fit(m, d));
  }
}

TEST_CASE("a column split across ranks computes the outputs, loss and gradient of the whole model and of threads",
          "[mpi][partition][columnwise]") {
  const std::size_t W = ranks();
  using Engine = detail::ColumnEngine<detail::CpuWorker, comm::MpiGroup>;
  comm::MpiGroup world;
  const data::Dataset d = make_data(29, 10, 4, Loss::softmax_cross_entropy, 4);
  // five layers (the last one replicated) and four (two split pairs)
  Model four(10, {{16, act::tanh}, {12, act::relu}, {9, act::sigmoid}, {4, act::identity}}, Loss::softmax_cross_entropy,
             {.seed = 100 + my_rank(), .weight_decay = 0.01f});
  for (Model whole : {own_seed(Loss::softmax_cross_entropy, 0.01f), four}) {
    const std::vector<float> p = rank0_parameters(whole);
    std::copy(p.begin(), p.end(), whole.parameters().begin());
    const detail::RowSource src{d.features.data(), d.targets.data(), d.cols(), d.target_dim, nullptr};
    const Matrix ref_out = whole.forward(d.x());
    std::vector<float> ref_grad;
    const double ref_loss = whole.loss_and_gradient(d.x(), d.targets, ref_grad);
    for (const std::size_t M : {1, 3}) {
      CAPTURE(whole.architecture().describe(), M, W);
      Engine e(world, whole.architecture(), whole.weight_decay(), p, optim::sgd(1.0), d.rows(), M, 1);
      std::vector<float> out(d.rows() * whole.output_dim());
      e.run_once(src, d.rows(), Engine::Mode::forward, out.data());
      CHECK(scaled_difference(out, std::span<const float>(ref_out.data(), out.size())) < tolerance);
      const double sum = e.run_once(src, d.rows(), Engine::Mode::gradient, nullptr);
      const double l = sum / detail::loss_normaliser(whole.loss(), d.rows(), whole.output_dim()) + e.weight_penalty();
      CHECK(l == Approx(ref_loss).epsilon(tolerance));
      const std::vector<float> grad = e.gradient();
      const double diff = scaled_difference(grad, ref_grad);
      CHECK(diff < tolerance);
      if (M == 3)
        report("column split gradient vs whole, " + std::to_string(whole.architecture().layers.size()) + " layers", diff);
      ColumnSplit threads(whole, W);
      std::vector<float> tgrad;
      const double tl = threads.loss_and_gradient(d.x(), d.targets, tgrad);
      CHECK(l == Approx(tl).epsilon(tolerance));
      CHECK(scaled_difference(grad, tgrad) < tolerance);
      const std::vector<float> back = e.parameters();
      CHECK(std::equal(back.begin(), back.end(), p.begin()));
      const std::vector<WorkerMemory> mem = e.memory();
      REQUIRE(mem.size() == W);
      std::size_t held = 0;
      for (const WorkerMemory& m : mem) held += m.parameters;
      // the parts sum to the whole, plus the replicated values (row biases, a replicated layer)
      // once per extra rank
      const auto& L = whole.architecture().layers;
      const std::size_t replicated = L[1].out + L[3].out + (L.size() == 5 ? L[4].weight_count() + L[4].out : 0);
      CHECK(held == whole.parameter_count() + (W - 1) * replicated);
    }
  }
}

TEST_CASE("a column split across ranks trains like threads and like the whole model", "[mpi][partition][columnwise][training]") {
  const std::size_t W = ranks();
  const data::Dataset d = make_data(103, 10, 4, Loss::softmax_cross_entropy, 13);
  const Model start = own_seed(Loss::softmax_cross_entropy, 0.001f);
  Model start0 = start;
  std::copy_n(rank0_parameters(start).begin(), start0.parameter_count(), start0.parameters().begin());
  Model ref = start0, th = start0;
  const History ref_h = Trainer<DataSplit<Random>>(opts(16, 1, 1), optim::momentum(0.05)).fit(ref, d);
  const History th_h = Trainer<DataSplit<Random>, Partition<Columnwise>>(opts(16, W, 2), optim::momentum(0.05)).fit(th, d);
  const History h = trains_like(Trainer<DataSplit<Random>, Partition<Columnwise>, Reduce<MpiAllreduce>>(
                                    opts(16, 0, 2), optim::momentum(0.05)),
                                start, d, ref, ref_h, "column split, M = 2, vs whole model");
  trains_like(Trainer<DataSplit<Random>, Partition<Columnwise>, Reduce<MpiAllreduce>>(opts(16, 0, 2), optim::momentum(0.05)),
              start, d, th, th_h, "column split, M = 2, vs threads");
  CHECK(h.workers == W);
  CHECK(std::isnan(h.last().bubble_fraction));
  if (W > 2) {  // a column layer narrower than the rank count is refused on every rank
    Model narrow(10, {{2, act::relu}, {4, act::identity}}, Loss::softmax_cross_entropy, {.seed = 1});
    CHECK_THROWS_WITH((Trainer<Partition<Columnwise>, Reduce<MpiAllreduce>>(opts(8, 0, 1), optim::sgd(0.1)).fit(narrow, d)),
                      "tessera: Partition<Columnwise>: layer 0 (10 -> 2) has 2 outputs, too few to split across " +
                          std::to_string(W) + " workers; use at most 2 workers (the job has " + std::to_string(W) +
                          " ranks, one worker each)");
  }
}

int main(int argc, char** argv) {
  mpi::Environment env(&argc, &argv);
  return Catch::Session().run(argc, argv);
}
