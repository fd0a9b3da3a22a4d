// Checkpoints and resume on threads: a fit that writes checkpoints trains the same bits as one
// that does not; resumed from any of its checkpoints (mid-epoch or at an epoch's end), a fit ends
// with the uninterrupted fit's parameters and history, bitwise; in deterministic mode at another
// worker count too; pipelines and column splits resume, at other stage counts as well; a
// checkpoint that does not fit the resumed fit is refused naming the fields; SIGTERM stops a fit
// with a checkpoint; damaged checkpoint files are refused.
#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include "support.hpp"
#include "tessera/partition.hpp"
#include "tessera/tessera.hpp"

using namespace tessera;
using test::ErrorWith;

namespace {
data::Dataset blobs(std::size_t n, std::size_t d, std::size_t k) {
  Matrix x(n, d);
  std::vector<float> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t c = (i * 7 + i / 5) % k;
    y[i] = float(c);
    for (std::size_t j = 0; j < d; ++j) x(i, j) = rng::normal(3, rng::Stream::user, i * d + j, 0) + (j == c ? 2.0f : 0.0f);
  }
  return {std::move(x), std::move(y)};
}

Model fresh(std::uint64_t seed = 5) {
  return models::mlp({6, 12, 12, 3}, act::tanh, loss::softmax_cross_entropy, {.seed = seed, .weight_decay = 1e-3f});
}

const optim::Optimizer adam = optim::adam(3e-3).with(optim::cosine_decay(0.1, 1.0));

struct Result {
  std::vector<float> parameters;
  History history;
  std::vector<std::string> files;
};

bool bitwise(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// The same epochs with the same losses, learning rates and validation results, bit for bit.
bool same_history(const History& a, const History& b) {
  if (a.epochs.size() != b.epochs.size()) return false;
  for (std::size_t i = 0; i < a.epochs.size(); ++i) {
    const EpochRecord &x = a.epochs[i], &y = b.epochs[i];
    const auto same = [](double p, double q) { return std::memcmp(&p, &q, sizeof p) == 0; };
    if (x.epoch != y.epoch || !same(x.loss, y.loss) || !same(x.learning_rate, y.learning_rate) ||
        !same(x.validation_loss, y.validation_loss) || !same(x.validation_metric, y.validation_metric))
      return false;
  }
  return true;
}

double max_relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0.0, scale = 0.0;
  for (float v : b) scale = std::max(scale, double(std::fabs(v)));
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(double(a[i]) - b[i]) / scale);
  return worst;
}

std::vector<float> params(const Model& m) { return {m.parameters().begin(), m.parameters().end()}; }

/// A whole fit, writing a checkpoint every `every` steps (every file kept) when a prefix is given.
template <class... Ps>
Result full(const data::Dataset& d, const data::Dataset* v, TrainerOptions o, const std::string& prefix = "",
            std::size_t every = 0) {
  o.progress = Progress::never;
  Model m = fresh();
  Trainer<Ps...> t(o, adam);
  Result r;
  if (prefix.empty()) {
    r.history = v ? t.fit(m, d, *v) : t.fit(m, d);
  } else {
    CheckpointEvery each{prefix, every, 0.0, 0};
    r.history = v ? t.fit(m, d, *v, each) : t.fit(m, d, each);
    r.files = each.written();
  }
  r.parameters = params(m);
  return r;
}

template <class... Ps>
Result resumed(const data::Dataset& d, const data::Dataset* v, TrainerOptions o, const std::string& file) {
  o.progress = Progress::never;
  Model m = fresh(77);  // its own parameters are not used
  Trainer<Ps...> t(o, adam);
  const Checkpoint c = load_checkpoint(file);
  Result r;
  r.history = v ? t.fit(m, d, *v, c) : t.fit(m, d, c);
  r.parameters = params(m);
  return r;
}
}  // namespace

TEST_CASE("a fit that writes checkpoints trains the same bits as one that does not", "[resume]") {
  const test::TempDir dir;
  const auto d = blobs(301, 6, 3);
  const TrainerOptions o{.batch_size = 16, .epochs = 3, .seed = 4, .workers = 2};
  const Result plain = full<DataSplit<Random>>(d, nullptr, o);
  const Result with = full<DataSplit<Random>>(d, nullptr, o, dir.file("run"), 4);
  CHECK(bitwise(with.parameters, plain.parameters));
  CHECK(same_history(with.history, plain.history));
  CHECK_FALSE(with.history.interrupted);
  // 301 rows in steps of 32: 10 steps per epoch, 30 in all; a checkpoint every 4 steps
  CHECK(with.files.size() == 7);
  CHECK(with.files.front() == checkpoint_path(dir.file("run"), 4));
}

TEST_CASE("resumed from any checkpoint, a fit ends with the uninterrupted parameters and history, bitwise",
          "[resume][bitwise]") {
  const test::TempDir dir;
  const auto d = blobs(301, 6, 3), v = blobs(90, 6, 3);
  for (const std::size_t workers : {1u, 2u, 3u}) {
    CAPTURE(workers);
    const TrainerOptions o{.batch_size = 10, .epochs = 3, .seed = 4, .workers = workers};
    const std::string prefix = dir.file("w" + std::to_string(workers));
    const Result whole = full<DataSplit<Stratified>, Load<Prefetch>>(d, &v, o, prefix, 3);
    REQUIRE(whole.files.size() >= 4);
    for (const std::string& f : whole.files) {
      CAPTURE(f);
      const Result r = resumed<DataSplit<Stratified>, Load<Prefetch>>(d, &v, o, f);
      CHECK(bitwise(r.parameters, whole.parameters));
      CHECK(same_history(r.history, whole.history));
    }
  }
}

TEST_CASE("deterministic mode: a checkpoint of N workers resumes with M workers to the same bits", "[resume][deterministic]") {
  const test::TempDir dir;
  const auto d = blobs(250, 6, 3);
  const auto opts = [](std::size_t workers) {
    return TrainerOptions{.batch_size = 60 / workers, .epochs = 3, .seed = 8, .workers = workers, .deterministic = true};
  };
  const Result one = full<DataSplit<Random>>(d, nullptr, opts(1));
  const Result four = full<DataSplit<Random>>(d, nullptr, opts(4), dir.file("four"), 2);
  REQUIRE(bitwise(four.parameters, one.parameters));
  for (const std::string& f : {four.files[1], four.files[3]}) {  // mid-epoch (step 4) and at an epoch's end (step 8... of 5)
    for (const std::size_t m : {1u, 2u, 3u}) {
      CAPTURE(f, m);
      const Result r = resumed<DataSplit<Random>>(d, nullptr, opts(m), f);
      CHECK(bitwise(r.parameters, one.parameters));
      CHECK(same_history(r.history, one.history));
      const Result s = resumed<DataSplit<Random>, Sync<Sharded>>(d, nullptr, opts(m), f);
      CHECK(bitwise(s.parameters, one.parameters));
    }
  }
  // and the other way: Sync<Sharded> over 3 workers (a third of Adam's moments each) to 2
  const Result sharded = full<DataSplit<Random>, Sync<Sharded>>(d, nullptr, opts(3), dir.file("sharded"), 3);
  CHECK(bitwise(sharded.parameters, one.parameters));
  const Result r = resumed<DataSplit<Random>>(d, nullptr, opts(2), sharded.files[1]);
  CHECK(bitwise(r.parameters, one.parameters));
}

TEST_CASE("default mode: resumed with other workers, a fit goes on in the same order within float tolerance",
          "[resume]") {
  const test::TempDir dir;
  const auto d = blobs(250, 6, 3);
  const auto opts = [](std::size_t workers) {
    return TrainerOptions{.batch_size = 24 / workers, .epochs = 3, .seed = 8, .workers = workers};
  };
  const Result two = full<DataSplit<Random>>(d, nullptr, opts(2), dir.file("two"), 7);
  for (const std::size_t m : {1u, 3u, 4u}) {
    CAPTURE(m);
    const Result r = resumed<DataSplit<Random>>(d, nullptr, opts(m), two.files[1]);
    CHECK(max_relative_difference(r.parameters, two.parameters) < 1e-5);
  }
}

TEST_CASE("pipelines and column splits resume bitwise, and at other stage counts from the whole model",
          "[resume][partition]") {
  const test::TempDir dir;
  const auto d = blobs(200, 6, 3);
  const TrainerOptions o{.batch_size = 16, .epochs = 3, .seed = 2, .workers = 3, .micro_batches = 4};
  SECTION("pipeline") {
    const Result pipe = full<DataSplit<Random>, Partition<Layerwise>>(d, nullptr, o, dir.file("pipe"), 5);
    REQUIRE(pipe.files.size() >= 3);
    for (const std::string& f : pipe.files) {
      CAPTURE(f);
      const Result r = resumed<DataSplit<Random>, Partition<Layerwise>>(d, nullptr, o, f);
      CHECK(bitwise(r.parameters, pipe.parameters));
      CHECK(same_history(r.history, pipe.history));
    }
    TrainerOptions two = o;
    two.workers = 2;  // two stages instead of three
    const Result r2 = resumed<DataSplit<Random>, Partition<Layerwise>>(d, nullptr, two, pipe.files[2]);
    CHECK(max_relative_difference(r2.parameters, pipe.parameters) < 1e-5);
    TrainerOptions whole = o;
    whole.workers = 1;  // one replica of the whole model
    const Result r1 = resumed<DataSplit<Random>>(d, nullptr, whole, pipe.files[2]);
    CHECK(max_relative_difference(r1.parameters, pipe.parameters) < 1e-5);
  }
  SECTION("column split") {
    TrainerOptions c = o;
    c.workers = 2;
    c.micro_batches = 1;
    const Result cols = full<DataSplit<Random>, Partition<Columnwise>>(d, nullptr, c, dir.file("cols"), 5);
    REQUIRE(cols.files.size() >= 3);
    for (const std::string& f : cols.files) {
      CAPTURE(f);
      const Result r = resumed<DataSplit<Random>, Partition<Columnwise>>(d, nullptr, c, f);
      CHECK(bitwise(r.parameters, cols.parameters));
      CHECK(same_history(r.history, cols.history));
    }
    TrainerOptions three = c;
    three.workers = 3;
    const Result r3 = resumed<DataSplit<Random>, Partition<Columnwise>>(d, nullptr, three, cols.files[1]);
    CHECK(max_relative_difference(r3.parameters, cols.parameters) < 1e-5);
  }
}

TEST_CASE("a checkpoint that does not fit the fit is refused, naming what differs", "[resume][errors]") {
  const test::TempDir dir;
  const auto d = blobs(120, 6, 3);
  const TrainerOptions o{.batch_size = 12, .epochs = 2, .seed = 4, .workers = 2};
  const Result r = full<DataSplit<Random>>(d, nullptr, o, dir.file("run"), 3);
  const Checkpoint c = load_checkpoint(r.files[0]);
  Model m = fresh();
  {
    TrainerOptions other = o;
    other.seed = 5;
    other.batch_size = 10;
    Trainer<DataSplit<Random>> t(other, adam);
    CHECK_THROWS_MATCHES(t.fit(m, d, c), Error,
                         ErrorWith(ErrorKind::invalid_argument,
                                   "global batch: the checkpoint has 24, this fit 20; seed: the checkpoint has 4, this fit 5"));
  }
  {
    Trainer<DataSplit<Uniform>> t(o, optim::sgd(0.1));
    CHECK_THROWS_MATCHES(t.fit(m, d, c), Error, ErrorWith(ErrorKind::invalid_argument, "split: the checkpoint has Random, this fit Uniform"));
  }
  {
    Model other = models::mlp({6, 8, 3}, act::tanh, loss::softmax_cross_entropy, {.seed = 5, .weight_decay = 1e-3f});
    Trainer<DataSplit<Random>> t(o, adam);
    CHECK_THROWS_MATCHES(t.fit(other, d, c), Error, ErrorWith(ErrorKind::invalid_argument, "model: the checkpoint has"));
  }
  {
    Trainer<Sync<Periodic<2>>> t(o, adam);
    CheckpointEvery each{dir.file("local"), 2};
    CHECK_THROWS_MATCHES(t.fit(m, d, each), Error, ErrorWith(ErrorKind::invalid_argument, "Sync<Periodic> keeps a replica"));
  }
}

TEST_CASE("SIGTERM during a fit: the steps under way finish, a checkpoint is written, the history says interrupted",
          "[resume][signal]") {
  const test::TempDir dir;
  const auto d = blobs(400, 6, 3);
  const TrainerOptions o{.batch_size = 8, .epochs = 6, .seed = 3, .workers = 2, .progress = Progress::never};
  const Result whole = full<DataSplit<Random>>(d, nullptr, o);
  // a real SIGTERM to this process once the fit is past step 60 (mid-epoch 3)
  struct Terminate {
    bool sent = false;
    void on_step_boundary(const StepPoint& p, const std::function<const Checkpoint&()>&) {
      if (!sent && p.global_step >= 60) {
        sent = true;
        ::kill(::getpid(), SIGTERM);
      }
    }
  } terminate;
  Model m = fresh();
  Trainer<DataSplit<Random>> t(o, adam);
  CheckpointEvery each{dir.file("run"), 0, 0.0, 1};  // only at the stop
  History h;
  {
    StopOnSignal stop;
    h = t.fit(m, d, terminate, each, stop);
    CHECK(stop.signal() == SIGTERM);
  }
  CHECK(h.interrupted);
  CHECK(h.epochs.size() < 6);
  REQUIRE(each.written().size() == 1);
  const std::string f = latest_checkpoint(dir.file("run"));
  CHECK(f == each.written().back());
  const Checkpoint c = load_checkpoint(f);
  // the stop comes at the first boundary after the signal: at most ~20 ms of steps later
  CHECK(c.epoch * c.steps_per_epoch + c.step > 60);
  CHECK(c.history.epochs.size() == h.epochs.size());
  CHECK(c.epoch == h.epochs.size());
  CHECK(bitwise(params(c.model), params(m)));  // the model holds the parameters reached
  const Result r = resumed<DataSplit<Random>>(d, nullptr, o, f);
  CHECK(bitwise(r.parameters, whole.parameters));
  CHECK(same_history(r.history, whole.history));
}

TEST_CASE("a stopped fit resumes to the uninterrupted result", "[resume][signal]") {
  const test::TempDir dir;
  const auto d = blobs(200, 6, 3);
  const TrainerOptions o{.batch_size = 8, .epochs = 4, .seed = 3, .workers = 2, .progress = Progress::never};
  const Result whole = full<DataSplit<Random>>(d, nullptr, o);
  // a stop asked once the fit is past step 20 (of 52), as a signal would
  struct StopAt {
    std::uint64_t at, reached = 0;
    bool stop_requested() const { return reached >= at; }
    void on_step_boundary(const StepPoint& p, const std::function<const Checkpoint&()>&) { reached = p.global_step; }
  } stop{20};
  Model m = fresh();
  Trainer<DataSplit<Random>> t(o, adam);
  CheckpointEvery each{dir.file("run"), 0, 0.0, 1};
  const History h = t.fit(m, d, stop, each);
  CHECK(h.interrupted);
  REQUIRE(each.written().size() == 1);
  const Result r = resumed<DataSplit<Random>>(d, nullptr, o, each.written().back());
  CHECK(bitwise(r.parameters, whole.parameters));
  CHECK(same_history(r.history, whole.history));
  CHECK_FALSE(r.history.interrupted);
}

TEST_CASE("damaged checkpoint files are refused with what and where", "[resume][hostile]") {
  const test::TempDir dir;
  const auto d = blobs(60, 6, 3);
  const Result r = full<DataSplit<Random>>(d, nullptr, {.batch_size = 8, .epochs = 2, .seed = 1, .workers = 1},
                                           dir.file("run"), 3);
  std::ifstream in(r.files[0], std::ios::binary);
  const std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(bytes.size() > 200);
  const Checkpoint c = parse_checkpoint(bytes);
  CHECK(c.step == 3);
  CHECK(c.moments.size() == 2);
  for (std::size_t cut : {std::size_t{0}, std::size_t{7}, std::size_t{12}, std::size_t{60}, bytes.size() / 2, bytes.size() - 1}) {
    CAPTURE(cut);
    CHECK_THROWS_AS(parse_checkpoint(std::span(bytes.data(), cut)), Error);
  }
  CHECK_THROWS_MATCHES(parse_checkpoint(std::span(bytes.data(), 60)), Error,
                       test::IsError(ErrorKind::format, "checkpoint: truncated checkpoint: ends at byte 60 while "
                                                        "reading the epoch so far at byte 60"));
  auto flipped = bytes;
  flipped[flipped.size() - 20] ^= 0x40;
  CHECK_THROWS_MATCHES(parse_checkpoint(flipped), Error, ErrorWith(ErrorKind::format, "checksum mismatch"));
  auto longer = bytes;
  longer.push_back(0);
  CHECK_THROWS_MATCHES(parse_checkpoint(longer), Error, ErrorWith(ErrorKind::format, "oversized checkpoint"));
  auto huge = bytes;
  const std::uint64_t big = std::uint64_t{1} << 60;
  std::memcpy(huge.data() + 12, &big, 8);  // the epoch
  CHECK_THROWS_MATCHES(parse_checkpoint(huge), Error, ErrorWith(ErrorKind::format, "implausible epoch"));
  CHECK_THROWS_MATCHES(load_checkpoint(dir.file("none.tsrckpt")), Error, ErrorWith(ErrorKind::io, "no such file"));
}
