// Open models: a layer, a loss and an update rule defined here (tests/open_model_parts.hpp), not in
// the library, pass the gradient checker and train on threads (bitwise equal at any worker count
// in deterministic mode), with ZeRO-1 and in a 2-stage pipeline; model files carry layer and loss
// kinds. The shipped layer kinds (LayerNorm, Dropout), losses (Huber, weighted cross-entropy) and
// rules (RMSProp, AdaGrad) are checked the same way: gradients, strategy equivalence, dropout's
// masks (deterministic, resumable, off in predict), and accuracy on the shipped digits.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "open_model_parts.hpp"
#include "support.hpp"
#include "tessera/partition.hpp"
#include "tessera/tessera.hpp"

using namespace tessera;
using test::ErrorWith;

namespace {
using user::blobs;
std::vector<float> params(const Model& m) { return {m.parameters().begin(), m.parameters().end()}; }
bool bitwise(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
double max_relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0.0, scale = 0.0;
  for (float v : b) scale = std::max(scale, double(std::fabs(v)));
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(double(a[i]) - b[i]) / scale);
  return worst;
}


/// A classifier with both shipped layer kinds: 6 -> 16 tanh -> layer_norm -> dropout(0.25) -> 3.
Model normed(std::uint64_t seed = 5, float drop = 0.25f) {
  return Model(6, {layers::dense(16, Activation::tanh), layers::layer_norm(), layers::dropout(drop), layers::dense(3)},
               loss::softmax_cross_entropy, {.seed = seed, .weight_decay = 1e-3f});
}

template <class... Ps>
std::vector<float> train(Model m, const data::Dataset& d, TrainerOptions o, optim::Optimizer opt) {
  o.progress = Progress::never;
  Trainer<Ps...> t(o, opt);
  t.fit(m, d);
  return params(m);
}

const optim::Optimizer lion = optim::custom(3e-3, user::Lion{});
}  // namespace

TEST_CASE("a user's layer and loss pass the gradient checker", "[open_models][gradients]") {
  Model m = user::model();
  // parameters away from their start, so that scales and shifts are not 1 and 0
  for (std::size_t i = 0; i < m.parameter_count(); ++i) m.parameters()[i] += 0.1f * rng::normal(4, rng::Stream::user, i, 0);
  const data::Dataset d = user::data(24);
  const GradientCheckResult r = check_gradients(m, d.x(), d.targets);
  INFO(r.where << ": analytic " << r.analytic << ", numeric " << r.numeric);
  CHECK(r.ok);
  CHECK(r.checked > m.parameter_count() / 2);
  CHECK(m.architecture().describe() == "6 -> 16 tanh -> scaled_tanh -> 2 | log_cosh");
}

TEST_CASE("the shipped layer kinds and losses pass the gradient checker", "[open_models][gradients]") {
  const data::Dataset d = blobs(20, 6, 3);
  SECTION("layer_norm and dropout") {
    Model m = normed();
    for (std::size_t i = 0; i < m.parameter_count(); ++i) m.parameters()[i] += 0.1f * rng::normal(6, rng::Stream::user, i, 0);
    const GradientCheckResult r = check_gradients(m, d.x(), d.targets);
    INFO(r.where << ": analytic " << r.analytic << ", numeric " << r.numeric);
    CHECK(r.ok);
  }
  SECTION("weighted softmax cross-entropy") {
    Model m(6, {layers::dense(8, Activation::tanh), layers::dense(3)}, loss::weighted_softmax_cross_entropy({1.0f, 3.0f, 0.5f}),
            {.seed = 2});
    const GradientCheckResult r = check_gradients(m, d.x(), d.targets);
    INFO(r.where << ": analytic " << r.analytic << ", numeric " << r.numeric << ", error " << r.max_error);
    CHECK(r.ok);
  }
  SECTION("huber") {
    const data::Dataset reg = user::data(20);
    Model m(6, {layers::dense(8, Activation::tanh), layers::layer_norm(), layers::dense(2)}, loss::huber(0.3f), {.seed = 2});
    const GradientCheckResult r = check_gradients(m, reg.x(), reg.targets);
    CHECK(r.ok);
  }
}

TEST_CASE("losses of the concept compute what they say", "[open_models][losses]") {
  // one row, one output: z = 2, y = 0.5, d = 1.5
  const Matrix x(1, 1, 1.0f);
  Model h(1, {layers::dense(1)}, loss::huber(1.0f));
  h.parameters()[0] = 2.0f;  // w
  h.parameters()[1] = 0.0f;  // b
  const std::vector<float> y{0.5f};
  std::vector<float> g;
  CHECK(h.loss_and_gradient(x, y, g) == Approx(1.0 * (1.5 - 0.5)));  // delta (|d| - delta / 2)
  CHECK(g[0] == Approx(1.0f));                                      // clipped at delta
  Model q(1, {layers::dense(1)}, loss::huber(2.0f));
  q.parameters()[0] = 2.0f;
  q.parameters()[1] = 0.0f;
  CHECK(q.loss_and_gradient(x, y, g) == Approx(0.5 * 1.5 * 1.5));  // inside delta: half the square
  CHECK(g[0] == Approx(1.5f));
  // class weights scale each row's cross-entropy by its class's weight
  Model plain(2, {layers::dense(3)}, loss::softmax_cross_entropy, {.seed = 3});
  Model weighted(2, {layers::dense(3)}, loss::weighted_softmax_cross_entropy({1.0f, 4.0f, 1.0f}), {.seed = 3});
  const Matrix two(1, 2, 0.7f);
  CHECK(weighted.loss_value(two, std::vector<float>{1.0f}) == Approx(4.0 * plain.loss_value(two, std::vector<float>{1.0f})));
  CHECK(weighted.loss_value(two, std::vector<float>{2.0f}) == Approx(plain.loss_value(two, std::vector<float>{2.0f})));
  CHECK_THROWS_MATCHES(Model(2, {layers::dense(4)}, loss::weighted_softmax_cross_entropy({1.0f, 2.0f})), Error,
                       ErrorWith(ErrorKind::invalid_argument, "2 class weights for a model of 4 outputs"));
  CHECK_THROWS_MATCHES(loss::huber(0.0f), Error, ErrorWith(ErrorKind::invalid_argument, "delta must be positive"));
}

TEST_CASE("a user's layer, loss and rule train on threads: bitwise equal at 1 to 4 workers in deterministic mode",
          "[open_models][deterministic]") {
  const data::Dataset d = user::data(203);
  const TrainerOptions o{.batch_size = 24, .epochs = 4, .seed = 3, .workers = 1, .deterministic = true};
  const std::vector<float> one = train<DataSplit<Random>>(user::model(), d, o, lion);
  for (std::size_t w : {2u, 3u, 4u}) {
    CAPTURE(w);
    TrainerOptions ow = o;
    ow.workers = w;
    ow.batch_size = 24 / w;
    CHECK(bitwise(train<DataSplit<Random>>(user::model(), d, ow, lion), one));
    CHECK(bitwise(train<DataSplit<Random>, Sync<Sharded>>(user::model(), d, ow, lion), one));  // ZeRO-1 slices
  }
  // and it learns: the loss falls to less than half of its start
  Model m = user::model();
  const double before = m.loss_value(d.x(), d.targets);
  Trainer<> t({.batch_size = 16, .epochs = 20, .seed = 1, .workers = 2, .progress = Progress::never}, lion);
  t.fit(m, d);
  CHECK(m.loss_value(d.x(), d.targets) < 0.5 * before);
}

TEST_CASE("a user's layer and loss train in a 2-stage pipeline like the whole model", "[open_models][layerwise]") {
  const data::Dataset d = user::data(40);
  const Model whole = user::model();
  for (Schedule sch : {Schedule::gpipe, Schedule::one_f_one_b}) {
    CAPTURE(to_string(sch));
    Pipeline p(whole, {.stages = 2, .micro_batches = 3, .schedule = sch});
    std::vector<float> ref, grad;
    const double ref_loss = whole.loss_and_gradient(d.x(), d.targets, ref);
    CHECK(p.loss_and_gradient(d.x(), d.targets, grad) == Approx(ref_loss).epsilon(1e-5));
    CHECK(max_relative_difference(grad, ref) < 1e-5);
  }
  // trained by the pipeline engine with the user's rule: the parameters of one worker, in float tolerance
  const TrainerOptions o{.batch_size = 20, .epochs = 3, .seed = 2, .workers = 2, .micro_batches = 4};
  const std::vector<float> piped = train<Partition<Layerwise>>(user::model(), d, o, lion);
  TrainerOptions o1 = o;
  o1.workers = 1;
  o1.micro_batches = 1;
  const std::vector<float> single = train<>(user::model(), d, o1, lion);
  // Lion steps by the sign of the momentum: a last-bit difference of a near-zero momentum flips a
  // step, so compare the fit's loss, not the bits
  Model a = user::model(), b = user::model();
  std::copy(piped.begin(), piped.end(), a.parameters().begin());
  std::copy(single.begin(), single.end(), b.parameters().begin());
  CHECK(a.loss_value(d.x(), d.targets) == Approx(b.loss_value(d.x(), d.targets)).epsilon(1e-3));
}

TEST_CASE("the shipped layer kinds: pipeline gradients equal the whole model's; dropout's masks are the same at any worker count",
          "[open_models][layerwise][deterministic]") {
  const data::Dataset d = blobs(203, 6, 3);
  const Model whole = normed();
  for (std::size_t S : {2u, 3u, 4u}) {
    CAPTURE(S);
    Pipeline p(whole, {.stages = S, .micro_batches = 3});
    std::vector<float> ref, grad;
    const double ref_loss = whole.loss_and_gradient(d.x(), d.targets, ref);
    CHECK(p.loss_and_gradient(d.x(), d.targets, grad) == Approx(ref_loss).epsilon(1e-5));
    CHECK(max_relative_difference(grad, ref) < 1e-5);
  }
  const TrainerOptions o{.batch_size = 24, .epochs = 3, .seed = 8, .workers = 1, .deterministic = true};
  const std::vector<float> one = train<DataSplit<Random>>(normed(), d, o, optim::adam(1e-2));
  for (std::size_t w : {2u, 3u, 4u}) {
    CAPTURE(w);
    TrainerOptions ow = o;
    ow.workers = w;
    ow.batch_size = 24 / w;
    CHECK(bitwise(train<DataSplit<Random>>(normed(), d, ow, optim::adam(1e-2)), one));
  }
  // the masks change with the fit's seed (and so do the parameters), and dropout 0 is no dropout
  TrainerOptions other = o;
  other.seed = 9;
  CHECK_FALSE(bitwise(train<DataSplit<Random>>(normed(), d, other, optim::adam(1e-2)), one));
}

TEST_CASE("dropout is off in predict and evaluate, and a resumed fit draws the same masks", "[open_models][dropout]") {
  const data::Dataset d = blobs(120, 6, 3);
  const Model m = normed(5, 0.5f);
  // without its dropout layer (which has no parameters) the model computes the same outputs
  const Model plain(6, {layers::dense(16, Activation::tanh), layers::layer_norm(), layers::dense(3)},
                    loss::softmax_cross_entropy, {.seed = 5, .weight_decay = 1e-3f});
  REQUIRE(plain.parameter_count() == m.parameter_count());
  Model same = plain;
  std::copy(m.parameters().begin(), m.parameters().end(), same.parameters().begin());
  const Matrix a = m.predict(d.x()), b = same.predict(d.x());
  CHECK(std::memcmp(a.data(), b.data(), a.rows() * a.cols() * sizeof(float)) == 0);
  CHECK(m.loss_value(d.x(), d.targets) == same.loss_value(d.x(), d.targets));
  // a training pass drops: its loss differs from the inference loss
  std::vector<float> g;
  CHECK(m.loss_and_gradient(d.x(), d.targets, g) != Approx(m.loss_value(d.x(), d.targets)).epsilon(1e-6));
  // a fit stopped at a checkpoint and resumed ends with the uninterrupted fit's bits
  test::TempDir dir;
  const std::string prefix = (dir.path / "run").string();
  TrainerOptions o{.batch_size = 16, .epochs = 3, .seed = 4, .workers = 2, .progress = Progress::never};
  Model full = normed(5, 0.5f);
  CheckpointEvery each{prefix, 5, 0.0, 0};
  Trainer<DataSplit<Random>>(o, optim::adam(1e-2)).fit(full, d, each);
  REQUIRE(each.written().size() >= 2);
  Model resumed = normed(77, 0.5f);
  Trainer<DataSplit<Random>>(o, optim::adam(1e-2)).fit(resumed, d, load_checkpoint(each.written()[1]));
  CHECK(bitwise(params(resumed), params(full)));
}

TEST_CASE("RMSProp and AdaGrad take the steps of their formulas, on any slicing of the update", "[open_models][rules]") {
  // one parameter, loss 0.5 w^2 (gradient w): two steps by hand
  const Matrix x(1, 1, 1.0f);
  const std::vector<float> y{0.0f};
  for (const bool rms : {true, false}) {
    CAPTURE(rms);
    Model m(1, {layers::dense(1)}, loss::mse);
    m.parameters()[0] = 1.0f;  // w
    m.parameters()[1] = 0.0f;  // b
    const optim::Optimizer o = rms ? optim::rmsprop(0.1, 0.9, 1e-8) : optim::adagrad(0.1, 1e-10);
    CHECK(o.state_buffers() == 1);
    optim::State<Cpu> s(o, 2);
    std::vector<float> w{1.0f, 0.0f};
    double expect = 1.0, acc = 0.0;
    for (int step = 0; step < 2; ++step) {
      const std::vector<float> grad{static_cast<float>(2.0 * w[0]), 0.0f};  // mse: d(z^2)/dw = 2 z
      s.step(w.data(), grad.data(), 0.1);
      const double gw = 2.0 * expect;
      acc = rms ? 0.9 * acc + 0.1 * gw * gw : acc + gw * gw;
      expect -= 0.1 * gw / (std::sqrt(acc) + (rms ? 1e-8 : 1e-10));
      CHECK(w[0] == Approx(expect).epsilon(1e-5));
    }
  }
  // trained on threads: 1 worker equals 3 in deterministic mode, with and without ZeRO-1
  const data::Dataset d = blobs(150, 6, 3);
  for (const optim::Optimizer& o : {optim::rmsprop(3e-3), optim::adagrad(5e-2)}) {
    CAPTURE(o.describe());
    const TrainerOptions one{.batch_size = 30, .epochs = 2, .seed = 1, .workers = 1, .deterministic = true};
    TrainerOptions three = one;
    three.workers = 3;
    three.batch_size = 10;
    const Model m = models::mlp({6, 12, 3}, act::relu, loss::softmax_cross_entropy, {.seed = 2});
    const std::vector<float> ref = train<DataSplit<Random>>(m, d, one, o);
    CHECK(bitwise(train<DataSplit<Random>>(m, d, three, o), ref));
    CHECK(bitwise(train<DataSplit<Random>, Sync<Sharded>>(m, d, three, o), ref));
  }
}

TEST_CASE("model files carry layer and loss kinds; an unregistered kind is named on save and on load",
          "[open_models][files]") {
  test::TempDir dir;
  const std::string path = (dir.path / "m.tsr").string();
  // shipped kinds need no registration
  Model n(6, {layers::dense(8, Activation::relu), layers::layer_norm(1e-3f), layers::dropout(0.125f), layers::dense(3)},
          loss::weighted_softmax_cross_entropy({1.0f, 2.5f, 0.75f}), {.seed = 4, .weight_decay = 0.5f});
  save(n, path);
  const Model back = load_model(path);
  CHECK(back == n);
  CHECK(back.architecture().describe() ==
        "6 -> 8 relu -> layer_norm(epsilon=0.001) -> dropout(p=0.125) -> 3 | "
        "weighted_softmax_cross_entropy(weights=1:2.5:0.75)");
  // the user's kinds are refused until registered, before a byte is written
  const Model u = user::model();
  CHECK_THROWS_MATCHES(save(u, (dir.path / "u.tsr").string()), Error,
                       ErrorWith(ErrorKind::invalid_argument, "layer 1 is of kind 'scaled_tanh', which is not registered"));
  CHECK_FALSE(std::filesystem::exists(dir.path / "u.tsr"));
  user::register_parts();
  save(u, (dir.path / "u.tsr").string());
  const Model ub = load_model((dir.path / "u.tsr").string());
  CHECK(ub == u);
  const data::Dataset d = user::data(10);
  const Matrix p = ub.predict(d.x()), q = u.predict(d.x());
  CHECK(std::memcmp(p.data(), q.data(), p.rows() * p.cols() * sizeof(float)) == 0);
  // the shipped names cannot be taken
  CHECK_THROWS_MATCHES(register_layer("dropout", [](const std::string&) { return std::make_shared<Dropout>(0.5f); }),
                       Error, ErrorWith(ErrorKind::invalid_argument, "'dropout' is a shipped layer kind"));
}

TEST_CASE("a column split refuses layers other than dense, naming the layer", "[open_models][columnwise]") {
  const data::Dataset d = blobs(40, 6, 3);
  Model m = normed();
  Trainer<Partition<Columnwise>> t({.batch_size = 8, .epochs = 1, .workers = 2, .progress = Progress::never}, optim::sgd(0.1));
  CHECK_THROWS_MATCHES(t.fit(m, d), Error,
                       ErrorWith(ErrorKind::invalid_argument, "layer 1 (layer_norm(epsilon=1e-05)) does not split by columns"));
}

TEST_CASE("on the shipped digits, layer normalisation and dropout reach at least the plain MLP's test accuracy",
          "[open_models][accuracy]") {
  const data::Dataset all =
      data::read_csv(std::string(TESSERA_SOURCE_DIR) + "/data/digits.csv", {.label = data::last_column, .num_classes = 10});
  auto [train_set, test_set] = data::train_test_split(all, {.test_fraction = 0.2, .seed = 42});
  const data::Standardizer scaler(train_set.x());
  train_set = scaler.transform(train_set);
  test_set = scaler.transform(test_set);
  // one seed's difference is a row or two of 359 either way: compare the means over five seeds
  double plain = 0.0, normed_drop = 0.0;
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    const auto accuracy = [&](Model m) {
      Trainer<> t({.batch_size = 32, .epochs = 60, .seed = seed, .workers = 2, .progress = Progress::never},
                  optim::adam(3e-3));
      t.fit(m, train_set);
      return metrics::accuracy(m, test_set);
    };
    plain += accuracy(models::mlp({64, 128, 10}, act::relu, loss::softmax_cross_entropy, {.seed = seed})) / 5.0;
    normed_drop += accuracy(Model(64, {layers::dense(128, Activation::relu), layers::layer_norm(), layers::dropout(0.2f),
                                       layers::dense(10)},
                                  loss::softmax_cross_entropy, {.seed = seed})) /
                   5.0;
  }
  INFO("plain " << plain << ", layer_norm + dropout " << normed_drop);
  CHECK(plain > 0.95);
  CHECK(normed_drop >= plain);
}
