// Model parallelism: pipeline stages (GPipe, 1F1B, pipelines x replicas) and column splits
// compute the outputs, loss and gradient of the whole model, train to the same parameters and
// accuracy, hold about 1/S of the model per worker, save as one whole model, and fail loudly.
#include <tessera/partition.hpp>
#include <tessera/tessera.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "partition_support.hpp"
#include "support.hpp"

using namespace tessera;
using tessera::test::ErrorWith;
using tessera::test::IsError;
using tessera::test::deep_model;
using tessera::test::make_data;
using tessera::test::scaled_difference;

namespace {

// Tolerance of every equivalence check below: the largest absolute difference over a buffer is at
// most 1e-5 of the largest absolute reference value (the partitioned model sums the same products
// in another order: per micro-batch, per worker; measured differences are below 1e-6).
constexpr double tolerance = 1e-5;

void check_same_as_whole(auto& partitioned, const Model& whole, const data::Dataset& d) {
  const Matrix ref_out = whole.forward(d.x());
  const Matrix out = partitioned.forward(d.x());
  CHECK(scaled_difference(out, ref_out) < tolerance);
  std::vector<float> ref_grad, grad;
  const double ref_loss = whole.loss_and_gradient(d.x(), d.targets, ref_grad);
  const double loss = partitioned.loss_and_gradient(d.x(), d.targets, grad);
  CHECK(loss == Approx(ref_loss).epsilon(tolerance));
  CHECK(scaled_difference(grad, ref_grad) < tolerance);
  // and the gathered model is the whole model, bit for bit (nothing was trained)
  const Model back = partitioned.model();
  CHECK(std::equal(back.parameters().begin(), back.parameters().end(), whole.parameters().begin()));
}

}  // namespace

TEST_CASE("stages are contiguous, cover the model and balance the estimated cost", "[partition][plan]") {
  const Model m = deep_model(Loss::mean_squared_error);
  const Architecture& a = m.architecture();
  for (std::size_t S = 1; S <= a.layers.size(); ++S) {
    for (Balance b : {Balance::cost, Balance::parameters}) {
      const StagePlan p = plan_stages(a, S, b);
      REQUIRE(p.size() == S);
      std::size_t layer = 0, param = 0;
      for (const StageSpan& st : p.stages) {
        CHECK(st.first_layer == layer);
        CHECK(st.parameter_begin == param);
        CHECK(st.layers() >= 1);
        layer = st.end_layer;
        param = st.parameter_end;
      }
      CHECK(layer == a.layers.size());
      CHECK(param == a.parameter_count());
      CHECK(p.imbalance() >= 1.0);
    }
  }
  // eight equal layers: four stages of two layers each, balanced by parameters exactly
  std::vector<DenseSpec> eight(8, {32, act::relu});
  const Architecture u(32, eight, Loss::mean_squared_error);
  const StagePlan p = plan_stages(u, 4, Balance::parameters);
  for (const StageSpan& st : p.stages) CHECK(st.layers() == 2);
  CHECK(p.imbalance() == Approx(1.0));
  // the cut minimises the largest stage: a wide first layer gets a stage of its own
  const Architecture wide(64, {{512, act::relu}, {8, act::relu}, {8, act::relu}, {8}}, Loss::mean_squared_error);
  const StagePlan q = plan_stages(wide, 2);
  CHECK(q.stages[0].end_layer == 1);
  CHECK(q.describe().find("layers 0 | 1-3") == 0);
}

TEST_CASE("a pipeline cannot have more stages than layers", "[partition][plan][errors]") {
  const Architecture a(64, {{128, act::relu}, {32, act::relu}, {10}}, Loss::softmax_cross_entropy);
  CHECK_THROWS_MATCHES(plan_stages(a, 4), Error,
                       IsError(ErrorKind::invalid_argument,
                               "Partition<Layerwise>: 4 stages for a model of 3 layers (64 -> 128 relu -> 32 relu -> 10 | "
                               "softmax_cross_entropy); every stage needs at least one layer, so use at most 3 stages"));
  CHECK_THROWS_MATCHES(plan_stages(a, 0), Error, ErrorWith(ErrorKind::invalid_argument, "0 stages"));
  const Model m(a);
  CHECK_THROWS_MATCHES(Pipeline(m, {.stages = 2, .micro_batches = 0}), Error,
                       ErrorWith(ErrorKind::invalid_argument, "Partition<Layerwise>: 0 micro-batches"));
}

TEST_CASE("schedules run every forward before its backward, and 1F1B keeps at most S - s in flight",
          "[partition][schedule]") {
  for (Schedule sch : {Schedule::gpipe, Schedule::one_f_one_b})
    for (std::size_t S = 1; S <= 4; ++S)
      for (std::size_t M = 1; M <= 6; ++M)
        for (std::size_t s = 0; s < S; ++s) {
          const auto ops = detail::pipeline_ops(sch, S, s, M);
          REQUIRE(ops.size() == 2 * M);
          std::vector<int> fwd(M, 0), bwd(M, 0);
          std::size_t in_flight = 0, most = 0, next_f = 0, next_b = 0;
          for (const auto& op : ops) {
            if (op.forward) {
              CHECK(op.micro == next_f++);  // in order: the channels are FIFO
              ++fwd[op.micro];
              most = std::max(most, ++in_flight);
            } else {
              CHECK(op.micro == next_b++);
              CHECK(fwd[op.micro] == 1);
              ++bwd[op.micro];
              --in_flight;
            }
          }
          CHECK(std::count(fwd.begin(), fwd.end(), 1) == static_cast<long>(M));
          CHECK(std::count(bwd.begin(), bwd.end(), 1) == static_cast<long>(M));
          CHECK(most == detail::pipeline_slots(sch, S, s, M));
          if (sch == Schedule::one_f_one_b) CHECK(most == std::min(S - s, M));
        }
}

TEST_CASE("a pipeline computes the outputs, loss and gradient of the whole model", "[partition][layerwise]") {
  for (Loss loss : {Loss::mean_squared_error, Loss::softmax_cross_entropy, Loss::binary_cross_entropy}) {
    const Model whole = deep_model(loss);
    const data::Dataset d = make_data(23, 10, whole.output_dim(), loss, 3);
    for (Schedule sch : {Schedule::gpipe, Schedule::one_f_one_b})
      for (std::size_t S : {2, 3, 4})
        for (std::size_t M : {1, 4, 7}) {
          CAPTURE(to_string(loss), to_string(sch), S, M);
          Pipeline p(whole, {.stages = S, .micro_batches = M, .schedule = sch});
          check_same_as_whole(p, whole, d);
        }
  }
}

TEST_CASE("pipelines on a grid of replicas compute the gradient of the whole batch", "[partition][layerwise][hybrid]") {
  const Model whole = deep_model(Loss::softmax_cross_entropy);
  const data::Dataset d = make_data(29, 10, whole.output_dim(), Loss::softmax_cross_entropy, 5);
  for (Schedule sch : {Schedule::gpipe, Schedule::one_f_one_b})
    for (std::size_t R : {2, 3}) {
      CAPTURE(to_string(sch), R);
      Pipeline p(whole, {.stages = 2, .micro_batches = 3, .replicas = R, .schedule = sch});
      CHECK(p.workers() == 2 * R);
      check_same_as_whole(p, whole, d);
    }
}

TEST_CASE("a column split computes the outputs, loss and gradient of the whole model", "[partition][columnwise]") {
  for (Loss loss : {Loss::mean_squared_error, Loss::softmax_cross_entropy}) {
    const Model odd = deep_model(loss);  // five layers: two split pairs, the last replicated
    const Model even(10, {{16, act::relu}, {12, act::tanh}, {9, act::relu}, {odd.output_dim()}}, loss,
                     {.seed = 9, .weight_decay = 0.02f});
    const data::Dataset d = make_data(21, 10, odd.output_dim(), loss, 4);
    for (std::size_t T : {1, 2, 3, 4}) {
      CAPTURE(to_string(loss), T);
      ColumnSplit c(odd, T);
      check_same_as_whole(c, odd, d);
      ColumnSplit e(even, T);
      check_same_as_whole(e, even, d);
    }
  }
  const Model m = deep_model(Loss::mean_squared_error);
  CHECK(ColumnSplit(m, 2).describe() ==
        "layer 0 (10 -> 16): columns | layer 1 (16 -> 12): rows | layer 2 (12 -> 9): columns | layer 3 (9 -> 11): rows | "
        "layer 4 (11 -> 3): replicated");
  CHECK_THROWS_MATCHES(ColumnSplit(m, 10), Error,
                       IsError(ErrorKind::invalid_argument,
                               "Partition<Columnwise>: layer 2 (12 -> 9) has 9 outputs, too few to split across 10 "
                               "workers; use at most 9 workers"));
}

TEST_CASE("each worker holds about 1/S of the parameters and optimizer state", "[partition][memory]") {
  std::vector<DenseSpec> eight(8, {64, act::relu});
  const Model m(Architecture(64, eight, Loss::mean_squared_error));
  const std::size_t whole = m.parameter_count();
  for (std::size_t S : {1, 2, 4, 8}) {
    Pipeline p(m, {.stages = S, .micro_batches = 4});
    const auto mem = p.memory();
    REQUIRE(mem.size() == S);
    std::size_t sum = 0;
    for (const auto& w : mem) {
      CHECK(w.parameters == whole / S);  // equal layers: an exact split
      CHECK(w.gradients == w.parameters);
      sum += w.parameters;
    }
    CHECK(sum == whole);
  }
  // Adam state follows the parameters: two moments per owned parameter
  comm::LocalGroup four(4);
  detail::LayerwiseEngine<detail::CpuWorker, comm::LocalGroup> e(four, m.architecture(), 0.0f, optim::adam(), m.parameters(),
                                                                  {.stages = 4}, 1, 8);
  for (const auto& w : e.memory()) CHECK(w.optimizer_state == 2 * w.parameters);
  // a column split of the digits MLP: each of 2 workers holds half of both layers' weights
  const Model mlp = models::mlp({64, 128, 10}, act::relu, loss::softmax_cross_entropy);
  ColumnSplit c(mlp, 2);
  for (const auto& w : c.memory()) CHECK(w.parameters == (64 * 128 + 128 + 128 * 10) / 2 + 10);
}

TEST_CASE("partitioned training takes the same steps as one worker on the whole batch", "[partition][training]") {
  const data::Dataset d = make_data(103, 10, 4, Loss::softmax_cross_entropy, 11);
  const Model start = deep_model(Loss::softmax_cross_entropy, 0.001f);
  const auto o = [](std::size_t batch, std::size_t workers, std::size_t micro) {
    return TrainerOptions{.batch_size = batch, .epochs = 3, .seed = 5, .workers = workers, .micro_batches = micro,
                          .progress = Progress::never};
  };
  Model ref = start;
  const History ref_h = Trainer<DataSplit<Random>>(o(16, 1, 1), optim::momentum(0.05)).fit(ref, d);
  const std::vector<float> expected(ref.parameters().begin(), ref.parameters().end());
  auto check = [&](auto trainer, const char* what) {
    Model m = start;
    const History h = trainer.fit(m, d);
    CAPTURE(what);
    CHECK(h.epochs.size() == 3);
    CHECK(scaled_difference(std::vector<float>(m.parameters().begin(), m.parameters().end()), expected) < 1e-4);
    for (std::size_t e = 0; e < 3; ++e) CHECK(h.epochs[e].loss == Approx(ref_h.epochs[e].loss).epsilon(1e-4));
    return h;
  };
  const History h1 = check(Trainer<DataSplit<Random>, Partition<Layerwise>>(o(16, 3, 4), optim::momentum(0.05)), "1F1B, 3 stages");
  const History h2 = check(Trainer<DataSplit<Random>, Partition<LayerwiseWith<GPipe>>>(o(16, 4, 5), optim::momentum(0.05)), "GPipe, 4 stages");
  const History h3 = check(Trainer<DataSplit<Random>, Partition<LayerwiseWith<OneFOneB, 2>>>(o(8, 4, 2), optim::momentum(0.05)),
                           "1F1B, 2 stages x 2 replicas");
  const History h4 = check(Trainer<DataSplit<Random>, Partition<Columnwise>>(o(16, 2, 2), optim::momentum(0.05)), "columns, 2 workers");
  for (const History* h : {&h1, &h2, &h3}) {
    CHECK(h->last().bubble_fraction >= 0.0);
    CHECK(h->last().bubble_fraction < 1.0);
    CHECK(h->to_csv().find(",bubble_fraction\n") != std::string::npos);
  }
  CHECK(std::isnan(h4.last().bubble_fraction));
  CHECK(h3.workers == 4);
}

TEST_CASE("a pipeline and a column split reach the whole model's accuracy on the digits", "[partition][digits]") {
  auto [train, test] = data::train_test_split(
      data::read_csv(std::string(TESSERA_SOURCE_DIR) + "/data/digits.csv", {.num_classes = 10}),
      {.test_fraction = 0.2, .seed = 42, .stratify = true});
  const data::Standardizer s(train.x());
  train = s.transform(train);
  test = s.transform(test);
  auto accuracy = [&](auto trainer) {
    Model m = models::mlp({64, 128, 10}, act::relu, loss::softmax_cross_entropy, {.seed = 42});
    trainer.fit(m, train);
    return metrics::accuracy(m, test);
  };
  const auto o = [](std::size_t workers, std::size_t micro) {
    return TrainerOptions{.batch_size = 32, .epochs = 15, .seed = 42, .workers = workers, .micro_batches = micro,
                          .progress = Progress::never};
  };
  const double whole = accuracy(Trainer<DataSplit<Stratified>>(o(1, 1), optim::adam(2e-3)));
  const double pipe = accuracy(Trainer<DataSplit<Stratified>, Partition<Layerwise>>(o(2, 4), optim::adam(2e-3)));
  const double gpipe = accuracy(Trainer<DataSplit<Stratified>, Partition<LayerwiseWith<GPipe>>>(o(2, 4), optim::adam(2e-3)));
  const double cols = accuracy(Trainer<DataSplit<Stratified>, Partition<Columnwise>>(o(2, 1), optim::adam(2e-3)));
  CAPTURE(whole, pipe, gpipe, cols);
  CHECK(whole > 0.94);
  CHECK(std::fabs(pipe - whole) <= 0.01);
  CHECK(std::fabs(gpipe - whole) <= 0.01);
  CHECK(std::fabs(cols - whole) <= 0.01);
}

TEST_CASE("a partitioned model saves as one whole model file", "[partition][checkpoint]") {
  const test::TempDir dir;
  const data::Dataset d = make_data(40, 10, 3, Loss::mean_squared_error, 8);
  Model m = deep_model(Loss::mean_squared_error);
  Trainer<Partition<Layerwise>>({.batch_size = 10, .epochs = 2, .workers = 3, .micro_batches = 2,
                                 .progress = Progress::never},
                                optim::adam(1e-2))
      .fit(m, d);
  Pipeline p(m, {.stages = 3, .micro_batches = 5});
  p.save(dir.file("pipe.tsr"));
  const Model loaded = load_model(dir.file("pipe.tsr"));
  CHECK(std::equal(loaded.parameters().begin(), loaded.parameters().end(), m.parameters().begin()));
  CHECK(loaded.architecture() == m.architecture());
  CHECK(scaled_difference(p.forward(d.x()), loaded.forward(d.x())) < tolerance);
  // and back: the loaded whole model split by columns computes the same outputs
  ColumnSplit c(loaded, 2);
  c.save(dir.file("cols.tsr"));
  const Model again = load_model(dir.file("cols.tsr"));
  CHECK(std::equal(again.parameters().begin(), again.parameters().end(), m.parameters().begin()));
  CHECK(scaled_difference(c.forward(d.x()), loaded.forward(d.x())) < tolerance);
}

TEST_CASE("a partitioned fit fails loudly: bad grids, too many stages, a diverging loss", "[partition][errors]") {
  const data::Dataset d = make_data(60, 10, 4, Loss::softmax_cross_entropy, 2);
  Model m = deep_model(Loss::softmax_cross_entropy);
  const std::vector<float> before(m.parameters().begin(), m.parameters().end());
  CHECK_THROWS_MATCHES((Trainer<Partition<Layerwise>>({.batch_size = 8, .workers = 6, .progress = Progress::never},
                                                      optim::sgd(0.1))
                            .fit(m, d)),
                       Error, ErrorWith(ErrorKind::invalid_argument, "Partition<Layerwise>: 6 stages for a model of 5 layers"));
  CHECK_THROWS_MATCHES((Trainer<Partition<LayerwiseWith<GPipe, 2>>>({.batch_size = 8, .workers = 3, .progress = Progress::never},
                                                                   optim::sgd(0.1))
                            .fit(m, d)),
                       Error,
                       IsError(ErrorKind::invalid_argument,
                               "Partition<LayerwiseWith<GPipe, 2>>: 3 workers do not form a grid of 2 replicas; give "
                               "workers = stages x 2"));
  // the last stage sees the loss diverge while the other stages wait on their channels: the fit
  // ends with the last stage's message, and the model keeps its parameters
  Model big = deep_model(Loss::mean_squared_error);
  data::Dataset huge = make_data(60, 10, 3, Loss::mean_squared_error, 2);
  for (float& v : huge.targets) v *= 1e30f;
  for (std::size_t S : {2, 4})
    CHECK_THROWS_MATCHES((Trainer<Partition<LayerwiseWith<GPipe>>>(
                              {.batch_size = 8, .epochs = 2, .workers = S, .micro_batches = 4, .progress = Progress::never},
                              optim::sgd(1e3))
                              .fit(big, huge)),
                         Error, ErrorWith(ErrorKind::runtime, "the loss became"));
  CHECK_THROWS_MATCHES((Trainer<Partition<Columnwise>>({.batch_size = 8, .epochs = 2, .workers = 3, .progress = Progress::never},
                                                      optim::sgd(1e3))
                            .fit(big, huge)),
                       Error, ErrorWith(ErrorKind::runtime, "the loss became"));
  CHECK(std::equal(before.begin(), before.end(), m.parameters().begin()));
}
