// tessera-train: trains a model on a CSV (or .tsrd) file from the command line - a held-out test
// set or k-fold cross-validation, any of the shipped Partition strategies chosen at run time,
// checkpoints, and a model file that carries its standardizer. `tessera-train --help` is its
// documentation (docs/cli.md has examples). Built twice from this one source: tessera-train, and
// tessera-train-mpi with the component mpi (TESSERA_TRAIN_MPI), whose --mpi trains across the
// ranks of `mpirun`.
//
// Exit status: 0 done; 1 an error of the library or the data (its message); 2 a bad command line
// (a message naming the argument); 3 stopped by SIGTERM / SIGINT after writing a checkpoint.
#include <tessera/partition.hpp>
#include <tessera/tessera.hpp>
#ifdef TESSERA_TRAIN_MPI
#include <tessera/mpi.hpp>
#include <tessera/partition/mpi.hpp>
#endif

#include <algorithm>
#include <charconv>
#include <cstdarg>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace tessera;

namespace {

#ifdef TESSERA_TRAIN_MPI
constexpr const char* program = "tessera-train-mpi";
#else
constexpr const char* program = "tessera-train";
#endif

// The text of --help; docs/cli.md repeats it.
constexpr const char* help_text = R"(usage: %s DATA [options]

Trains a model on DATA, a numeric CSV file with a header line (or a .tsrd file written by
tessera's data::write_binary), and reports its metric on held-out rows.

data
  DATA                  the CSV (or .tsrd) file; every column but the label is a float feature
  --label NAME|last     the target column, by header name; `last`: the last column (default last);
                        with --no-header a 0-based column index or `last`
  --no-header           the CSV has no header line
  --task classify|regress
                        default: classify when every label is a whole number >= 0 and there are
                        at most 100 distinct labels (or --classes is given), regress otherwise
  --classes K           number of classes (labels 0..K-1); default: 1 + the largest label
  --standardize, --no-standardize
                        scale every feature to mean 0, deviation 1 with statistics of the
                        training rows; the saved model carries it and scales raw rows itself
                        (default on)

model
  --model linear|logistic|softmax|mlp:W1,W2,...[:relu|tanh|sigmoid]
                        linear: least squares (regress); logistic: 2 classes; softmax: softmax
                        regression; mlp: hidden layers of widths W1,W2,... (default activation
                        relu). The input width comes from the data, the output width from the
                        task (K classes, or 1); when the list starts with the input width and
                        ends with the output width it is the whole MLP (mlp:64,128,10 on 64
                        features and 10 classes is mlp:128). Default: softmax to classify,
                        linear to regress
  --optimizer sgd|momentum|adam|rmsprop|adagrad[:LR]
                        default adam; learning rates: sgd 0.1, momentum 0.01 (mu 0.9),
                        adam 0.01, rmsprop 0.001, adagrad 0.01
  --epochs N            passes over the training rows (default 20)
  --batch N             rows per worker (per replica) per step (default 32)
  --micro-batches N     forward/backward passes per step (pipelines want 2 or more; default 1)
  --seed N              seeds the split, the initialisation and every shuffle (default 0)

parallelism
  --workers N           worker threads (pipeline: stages; columns: workers of one split);
                        default: one per hardware thread; pipeline: the number of layers at most
  --strategy replicate|pipeline|columns
                        replicate: data parallel, a model per worker; pipeline: a stage of
                        layers per worker (1F1B); columns: every layer split by columns over the
                        workers (default replicate)
  --deterministic       bitwise-identical results whatever the number of workers, for the same
                        rows per step (--workers x --batch; replicate only)
  --mpi                 train across the ranks of mpirun (Reduce<MpiAllreduce>; tessera-train-mpi
                        only): mpirun -n 2 tessera-train-mpi DATA --mpi ...

evaluation
  --test-fraction F     fraction of the rows held out and reported, in [0, 1); 0: train on every
                        row, report the training metric (default 0.2; stratified to classify)
  --folds K             k-fold cross-validation instead: K models, each tested on one K-th of the
                        rows and trained on the rest; prints each fold's metric, their mean and
                        standard deviation. With --save, one more model is trained on every row
                        and saved

output
  --save PATH           the trained model file (load_model(PATH); with its standardizer)
  --history PATH        the history as CSV, one line per epoch (with --folds: PATH-foldK per fold)
  --checkpoint PREFIX   checkpoints PREFIX-<step>.tsrckpt every --checkpoint-every steps and on
                        SIGTERM / SIGINT (then exit status 3); run the same command again and it
                        goes on from the newest one
  --checkpoint-every N  steps between checkpoints (default: one epoch's steps)
  --plan                print what the fit would do (Trainer::plan) and exit
  -h, --help            this text

Exit status: 0 done, 1 an error of the library or the data, 2 a bad command line, 3 stopped by a
signal after writing a checkpoint.

example
  %s data/digits.csv --label last --model mlp:128 --workers 2 --epochs 20 \
      --save digits.tsr --history digits-history.csv
)";

/// A bad command line: exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

bool printer = true;  // rank 0 prints (every process without MPI)

__attribute__((format(printf, 1, 2))) void say(const char* format, ...) {
  if (!printer) return;
  va_list args;
  va_start(args, format);
  std::vprintf(format, args);
  va_end(args);
  std::fflush(stdout);
}

struct Options {
  std::string data;
  std::string label = "last";
  bool label_set = false;
  bool header = true;
  std::string task;  // "", classify, regress
  std::size_t classes = 0;
  bool standardize = true;
  std::string model;  // "": the task's default
  std::string optimizer = "adam";
  std::size_t epochs = 20, batch = 32, micro_batches = 1, workers = 0, checkpoint_every = 0;
  bool workers_set = false;
  std::uint64_t seed = 0;
  std::string strategy = "replicate";
  bool deterministic = false, mpi = false, plan = false;
  double test_fraction = 0.2;
  bool test_fraction_set = false;
  std::size_t folds = 0;
  std::string save, history, checkpoint;
};

template <class T>
T parse_number(std::string_view option, std::string_view text, T least) {
  T v{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < least)
    throw UsageError(std::string(option) + ": expected a whole number >= " + std::to_string(least) + ", got '" +
                     std::string(text) + "'");
  return v;
}

double parse_real(std::string_view option, std::string_view text) {
  const std::string s(text);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v))
    throw UsageError(std::string(option) + ": expected a number, got '" + s + "'");
  return v;
}

/// The optimizer `spec` names, and how it is shown ("adam:0.001").
std::pair<optim::Optimizer, std::string> make_optimizer(const std::string& spec) {
  const auto colon = spec.find(':');
  const std::string name = spec.substr(0, colon);
  double lr = name == "sgd" ? 0.1 : name == "rmsprop" ? 0.001 : 0.01;
  if (colon != std::string::npos) {
    lr = parse_real("--optimizer " + spec, std::string_view(spec).substr(colon + 1));
    if (!(lr > 0.0)) throw UsageError("--optimizer " + spec + ": the learning rate must be > 0");
  }
  char shown[64];
  std::snprintf(shown, sizeof shown, "%s:%g", name.c_str(), lr);
  if (name == "sgd") return {optim::sgd(lr), shown};
  if (name == "momentum") return {optim::momentum(lr), shown};
  if (name == "adam") return {optim::adam(lr), shown};
  if (name == "rmsprop") return {optim::rmsprop(lr), shown};
  if (name == "adagrad") return {optim::adagrad(lr), shown};
  throw UsageError("--optimizer: expected sgd, momentum, adam, rmsprop or adagrad[:LR], got '" + spec + "'");
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    bool has_value = false;
    if (arg.starts_with("--") && arg.find('=') != std::string::npos) {
      value = arg.substr(arg.find('=') + 1);
      arg = arg.substr(0, arg.find('='));
      has_value = true;
    }
    const auto next = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= argc) throw UsageError(arg + ": needs a value");
      return argv[++i];
    };
    const auto flag = [&] {
      if (has_value) throw UsageError(arg + ": takes no value, got '" + value + "'");
    };
    if (arg == "-h" || arg == "--help") {
      std::printf(help_text, program, program);
      std::exit(0);
    } else if (arg == "--label") {
      o.label = next();
      o.label_set = true;
    } else if (arg == "--no-header") {
      flag();
      o.header = false;
    } else if (arg == "--task") {
      o.task = next();
      if (o.task != "classify" && o.task != "regress")
        throw UsageError("--task: expected classify or regress, got '" + o.task + "'");
    } else if (arg == "--classes") {
      o.classes = parse_number<std::size_t>(arg, next(), 2);
    } else if (arg == "--standardize") {
      flag();
      o.standardize = true;
    } else if (arg == "--no-standardize") {
      flag();
      o.standardize = false;
    } else if (arg == "--model") {
      o.model = next();
    } else if (arg == "--optimizer") {
      o.optimizer = next();
      make_optimizer(o.optimizer);  // checked here, before the data is read
    } else if (arg == "--epochs") {
      o.epochs = parse_number<std::size_t>(arg, next(), 1);
    } else if (arg == "--batch") {
      o.batch = parse_number<std::size_t>(arg, next(), 1);
    } else if (arg == "--micro-batches") {
      o.micro_batches = parse_number<std::size_t>(arg, next(), 1);
    } else if (arg == "--seed") {
      o.seed = parse_number<std::uint64_t>(arg, next(), 0);
    } else if (arg == "--workers") {
      o.workers = parse_number<std::size_t>(arg, next(), 1);
      o.workers_set = true;
    } else if (arg == "--strategy") {
      o.strategy = next();
      if (o.strategy != "replicate" && o.strategy != "pipeline" && o.strategy != "columns")
        throw UsageError("--strategy: expected replicate, pipeline or columns, got '" + o.strategy + "'");
    } else if (arg == "--deterministic") {
      flag();
      o.deterministic = true;
    } else if (arg == "--mpi") {
      flag();
      o.mpi = true;
    } else if (arg == "--test-fraction") {
      o.test_fraction = parse_real(arg, next());
      o.test_fraction_set = true;
      if (!(o.test_fraction >= 0.0 && o.test_fraction < 1.0))
        throw UsageError("--test-fraction: expected a fraction in [0, 1), got " + std::string(argv[i]));
    } else if (arg == "--folds") {
      o.folds = parse_number<std::size_t>(arg, next(), 2);
    } else if (arg == "--save") {
      o.save = next();
    } else if (arg == "--history") {
      o.history = next();
    } else if (arg == "--checkpoint") {
      o.checkpoint = next();
    } else if (arg == "--checkpoint-every") {
      o.checkpoint_every = parse_number<std::size_t>(arg, next(), 1);
    } else if (arg == "--plan") {
      flag();
      o.plan = true;
    } else if (arg.starts_with("-") && arg.size() > 1) {
      throw UsageError(arg + ": unknown option");
    } else if (o.data.empty()) {
      o.data = arg;
    } else {
      throw UsageError(arg + ": a second data file (the first is " + o.data + ")");
    }
  }
  if (o.data.empty()) throw UsageError("DATA: no data file given");
  if (o.folds && o.test_fraction_set)
    throw UsageError("--folds and --test-fraction: cross-validation holds out each fold in turn; give one of them");
  if (o.folds && !o.checkpoint.empty()) throw UsageError("--checkpoint: not with --folds (one fit at a time)");
  if (o.checkpoint_every && o.checkpoint.empty()) throw UsageError("--checkpoint-every: needs --checkpoint PREFIX");
  if (o.deterministic && o.strategy != "replicate")
    throw UsageError("--deterministic: applies to --strategy replicate, not " + o.strategy);
  if (o.micro_batches > o.batch)
    throw UsageError("--micro-batches: " + std::to_string(o.micro_batches) + " is more than --batch " +
                     std::to_string(o.batch));
#ifndef TESSERA_TRAIN_MPI
  if (o.mpi) throw UsageError("--mpi: this tessera-train was built without MPI; run tessera-train-mpi under mpirun");
#endif
  return o;
}

/// Every label a whole number in [0, 2^24), one per row, at most 100 distinct: a classification.
bool looks_like_classes(const data::Dataset& d) {
  if (d.target_dim != 1) return false;
  std::set<float> distinct;
  for (float v : d.targets) {
    if (!(v >= 0.0f && v < 16777216.0f) || v != std::floor(v)) return false;
    distinct.insert(v);
    if (distinct.size() > 100) return false;
  }
  return distinct.size() >= 2;
}

std::vector<std::size_t> parse_widths(const std::string& option, const std::string& list) {
  std::vector<std::size_t> w;
  std::size_t at = 0;
  while (at <= list.size()) {
    const std::size_t comma = std::min(list.find(',', at), list.size());
    w.push_back(parse_number<std::size_t>(option, std::string_view(list).substr(at, comma - at), 1));
    at = comma + 1;
  }
  return w;
}

/// The model `spec` names, on `inputs` features, for `classes` classes (0: regression).
Model make_model(const std::string& spec, std::size_t inputs, std::size_t classes, std::uint64_t seed) {
  const ModelOptions mo{.seed = seed};
  const bool classify = classes > 0;
  if (spec == "linear") {
    if (classify) throw UsageError("--model linear: regresses; use --task regress, or softmax / logistic to classify");
    return models::linear_regression(inputs, mo);
  }
  if (spec == "logistic") {
    if (classes != 2)
      throw UsageError("--model logistic: needs 2 classes, the task has " +
                       (classify ? std::to_string(classes) + " classes" : std::string("none (regress)")));
    return models::logistic_regression(inputs, mo);
  }
  if (spec == "softmax") {
    if (!classify) throw UsageError("--model softmax: classifies; use --model linear or mlp:... to regress");
    return models::softmax_regression(inputs, classes, mo);
  }
  if (spec.starts_with("mlp:")) {
    std::string rest = spec.substr(4), activation = "relu";
    if (const auto colon = rest.find(':'); colon != std::string::npos) {
      activation = rest.substr(colon + 1);
      rest = rest.substr(0, colon);
    }
    Activation hidden = act::relu;
    if (activation == "tanh") hidden = act::tanh;
    else if (activation == "sigmoid") hidden = act::sigmoid;
    else if (activation != "relu")
      throw UsageError("--model " + spec + ": activation '" + activation + "', expected relu, tanh or sigmoid");
    std::vector<std::size_t> widths = parse_widths("--model " + spec, rest);
    const std::size_t outputs = classify ? classes : 1;
    if (widths.size() >= 2 && widths.front() == inputs && widths.back() == outputs) {
      widths.erase(widths.begin());
      widths.pop_back();
    }
    std::vector<std::size_t> sizes{inputs};
    sizes.insert(sizes.end(), widths.begin(), widths.end());
    sizes.push_back(outputs);
    return models::mlp(sizes, hidden, classify ? loss::softmax_cross_entropy : loss::mse, mo);
  }
  throw UsageError("--model: expected linear, logistic, softmax or mlp:W1,W2,...[:relu|tanh|sigmoid], got '" + spec + "'");
}

/// `path` with `-fold<k>` before its extension: h.csv -> h-fold2.csv.
std::string fold_path(const std::string& path, std::size_t k) {
  const std::filesystem::path p(path);
  return (p.parent_path() / (p.stem().string() + "-fold" + std::to_string(k) + p.extension().string())).string();
}


struct Run {
  const Options& o;
  const data::Dataset& all;
  const Model& start;  // the initial model
  bool classify;
  const char* metric;  // "accuracy" or "r2"
  std::string optimizer;  // as shown
};

struct FitResult {
  Model model;
  History history;
  double metric = NAN;  // on the test rows (or the training rows without any)
  double mse = NAN;
};

/// Standardises `train` (and `test`) with statistics of `train`, fits a copy of the start model,
/// evaluates it, and gives it the standardizer so that it reads raw rows once saved.
template <class T, class... Callbacks>
FitResult fit_one(T& trainer, const Run& r, data::Dataset train, std::optional<data::Dataset> test,
                  const Checkpoint* from, Callbacks&... cbs) {
  std::optional<data::Standardizer> scaler;
  if (r.o.standardize) {
    scaler.emplace(train.x());
    train = scaler->transform(train);
    if (test) test = scaler->transform(*test);
  }
  FitResult out{r.start, {}};
  if (test) out.history = from ? trainer.fit(out.model, train, *test, *from, cbs...) : trainer.fit(out.model, train, *test, cbs...);
  else out.history = from ? trainer.fit(out.model, train, *from, cbs...) : trainer.fit(out.model, train, cbs...);
  const Evaluation e = trainer.evaluate(out.model, test ? *test : train);
  out.metric = r.classify ? e.accuracy : e.r2;
  out.mse = e.mse;
  if (scaler) out.model.set_input_transform(*scaler);
  return out;
}

void print_epochs(const History& h, bool with_test, const char* metric) {
  for (const EpochRecord& e : h.epochs) {
    say("epoch %3zu  loss %.4f", e.epoch, e.loss);
    if (with_test) say("  test %s %.4f", metric, e.validation_metric);
    say("  %.0f samples/s\n", e.samples_per_second);
  }
}

void print_result(const Run& r, const FitResult& f, const char* part, std::size_t rows) {
  if (r.classify) say("%s accuracy %.4f (%zu rows)\n", part, f.metric, rows);
  else say("%s r2 %.4f, mse %.6g (%zu rows)\n", part, f.metric, f.mse, rows);
}

/// One line on the trainer: its workers and processes as the fit will use them.
template <class T>
void describe_trainer(const T& trainer, const Run& r, const data::Dataset& train) {
  const FitPlan p = trainer.plan(r.start, train);
  say("trainer: %s, %zu worker(s) x %zu process(es), %zu replica(s) of batch %zu, %s, %zu epochs, seed %llu\n",
      r.o.strategy.c_str(), p.workers, p.processes, p.replicas, p.batch, r.optimizer.c_str(), p.epochs,
      static_cast<unsigned long long>(r.o.seed));
}

template <class T>
int run(T trainer, const Run& r) {
  const Options& o = r.o;
  // ---- k-fold cross-validation
  if (o.folds) {
    if (o.folds > r.all.rows())
      throw UsageError("--folds: " + std::to_string(o.folds) + " folds of " + std::to_string(r.all.rows()) + " rows");
    // seeded folds, stratified by class when classifying
    const auto folds = data::kfold(r.all, {.k = o.folds, .seed = o.seed, .stratify = r.classify});
    describe_trainer(trainer, r, r.all);
    std::vector<double> metrics;
    for (std::size_t k = 0; k < o.folds; ++k) {
      const data::Dataset train = r.all.subset(folds[k].train), test = r.all.subset(folds[k].test);
      if (o.plan) {
        say("%s", trainer.plan(r.start, train).describe().c_str());
        return 0;
      }
      const FitResult f = fit_one(trainer, r, train, test, nullptr);
      say("fold %zu/%zu: train %zu, test %zu, loss %.4f, %s %.4f\n", k + 1, o.folds, train.rows(), test.rows(),
          f.history.last().loss, r.metric, f.metric);
      if (!o.history.empty()) f.history.write_csv(fold_path(o.history, k + 1));
      metrics.push_back(f.metric);
    }
    double mean = 0.0, var = 0.0;
    for (double m : metrics) mean += m;
    mean /= static_cast<double>(metrics.size());
    for (double m : metrics) var += (m - mean) * (m - mean);
    const double sd = std::sqrt(var / static_cast<double>(metrics.size() - 1));
    const auto [lo, hi] = std::minmax_element(metrics.begin(), metrics.end());
    say("cross-validation: %s mean %.4f, std %.4f, min %.4f, max %.4f over %zu folds\n", r.metric, mean, sd, *lo, *hi,
        o.folds);
    if (!o.history.empty())
      say("wrote %s ... %s\n", fold_path(o.history, 1).c_str(), fold_path(o.history, o.folds).c_str());
    if (!o.save.empty()) {
      const FitResult f = fit_one(trainer, r, r.all, std::nullopt, nullptr);
      say("final model on all %zu rows: loss %.4f, training %s %.4f\n", r.all.rows(), f.history.last().loss, r.metric,
          f.metric);
      save(f.model, o.save);
      say("saved %s\n", o.save.c_str());
    }
    return 0;
  }

  // ---- one fit, with a held-out test set unless --test-fraction 0
  data::Dataset train = r.all;
  std::optional<data::Dataset> test;
  if (o.test_fraction > 0.0) {
    auto [a, b] = data::train_test_split(r.all, {.test_fraction = o.test_fraction, .seed = o.seed, .stratify = r.classify});
    train = std::move(a);
    test = std::move(b);
    say("split: train %zu, test %zu (test fraction %g%s)\n", train.rows(), test->rows(), o.test_fraction,
        r.classify ? ", stratified" : "");
  } else {
    say("split: train on all %zu rows, no test set\n", train.rows());
  }
  describe_trainer(trainer, r, train);
  if (o.plan) {
    say("%s", trainer.plan(r.start, train).describe().c_str());
    return 0;
  }

  FitResult f;
  if (!o.checkpoint.empty()) {
    const std::filesystem::path parent = std::filesystem::path(o.checkpoint).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    const std::size_t every = o.checkpoint_every ? o.checkpoint_every : trainer.plan(r.start, train).steps_per_epoch;
    CheckpointEvery checkpoints(o.checkpoint, every);
    StopOnSignal stop;
    const std::string last = latest_checkpoint(o.checkpoint);
    std::optional<Checkpoint> from;
    if (!last.empty()) {
      from = load_checkpoint(last);
      say("resuming from %s: epoch %zu, step %zu of %zu\n", last.c_str(), from->epoch + 1, from->step,
          from->steps_per_epoch);
    } else {
      say("checkpoints: %s-<step>.tsrckpt every %zu steps\n", o.checkpoint.c_str(), every);
    }
    f = fit_one(trainer, r, train, test, from ? &*from : nullptr, checkpoints, stop);
    if (f.history.interrupted) {
      say("interrupted after %zu epoch(s); the newest checkpoint is %s - run the same command again to go on\n",
          f.history.epochs.size(), latest_checkpoint(o.checkpoint).c_str());
      return 3;
    }
  } else {
    f = fit_one(trainer, r, train, test, nullptr);
  }
  print_epochs(f.history, test.has_value(), r.metric);
  say("trained in %.2f s, final loss %.4f\n", f.history.total_seconds, f.history.last().loss);
  print_result(r, f, test ? "test" : "training", test ? test->rows() : train.rows());
  if (!o.save.empty()) {
    save(f.model, o.save);
    say("saved %s\n", o.save.c_str());
  }
  if (!o.history.empty()) {
    f.history.write_csv(o.history);
    say("wrote %s\n", o.history.c_str());
  }
  return 0;
}

/// The Trainer of the chosen strategy (and of MPI with --mpi): one instantiation per choice.
template <class Reduction>
int run_strategy(const Run& r, const TrainerOptions& to, const optim::Optimizer& opt) {
  if (r.o.strategy == "pipeline")
    return run(Trainer<DataSplit<Random>, Partition<Layerwise>, Reduce<Reduction>>(to, opt), r);
  if (r.o.strategy == "columns")
    return run(Trainer<DataSplit<Random>, Partition<Columnwise>, Reduce<Reduction>>(to, opt), r);
  return run(Trainer<DataSplit<Random>, Partition<Replicate>, Reduce<Reduction>>(to, opt), r);
}

int train(const Options& o) {
  // the data
  data::Dataset all;
  const bool binary = o.data.ends_with(".tsrd");
  if (binary) {
    if (o.label_set || !o.header) throw UsageError("--label / --no-header: a .tsrd file holds its own targets");
    all = data::read_binary(o.data);
  } else {
    data::ColumnRef label = data::last_column;
    if (o.label != "last") {
      if (o.header) label = o.label;
      else label = parse_number<std::size_t>("--label", o.label, 0);
    }
    all = data::read_csv(o.data, {.label = label, .header = o.header, .num_classes = o.classes});
  }
  const bool classify = o.task.empty() ? (o.classes > 0 || looks_like_classes(all)) : o.task == "classify";
  if (!classify && o.classes) throw UsageError("--classes: given with --task regress");
  std::size_t classes = 0;
  if (classify) {
    classes = o.classes ? o.classes : all.num_classes();
    if (classes < 2) throw UsageError("--task classify: the labels hold one class only");
  }
  say("data: %s: %zu rows x %zu features, label \"%s\": %s", o.data.c_str(), all.rows(), all.cols(),
      all.target_name.c_str(), classify ? "classify" : "regress");
  if (classify) say(", %zu classes", classes);
  say("\n");

  // the model, optimizer and trainer
  const std::string spec = !o.model.empty() ? o.model : classify ? "softmax" : "linear";
  const Model start = make_model(spec, all.cols(), classes, o.seed);
  say("model: %s (%s), %zu parameters\n", spec.c_str(), start.architecture().describe().c_str(),
      start.parameter_count());
  const auto [opt, opt_shown] = make_optimizer(o.optimizer);
  TrainerOptions to{.batch_size = o.batch, .epochs = o.epochs, .seed = o.seed, .workers = o.workers,
                    .micro_batches = o.micro_batches, .deterministic = o.deterministic};
  if (!o.workers_set && o.strategy == "pipeline") {
    const unsigned hw = std::thread::hardware_concurrency();
    to.workers = std::clamp<std::size_t>(start.architecture().layers.size(), 1, hw ? hw : 1);
  }
  const Run r{o, all, start, classify, classify ? "accuracy" : "r2", opt_shown};
#ifdef TESSERA_TRAIN_MPI
  if (o.mpi) return run_strategy<MpiAllreduce>(r, to, opt);
#endif
  return run_strategy<ThreadAllreduce>(r, to, opt);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parse_args(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: %s\n(%s --help lists the options)\n", program, e.what(), program);
    return 2;
  }
#ifdef TESSERA_TRAIN_MPI
  std::optional<mpi::Environment> env;
  if (o.mpi) {
    env.emplace(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    printer = rank == 0;
  }
#endif
  try {
    return train(o);
  } catch (const UsageError& e) {
    if (printer) std::fprintf(stderr, "%s: %s\n(%s --help lists the options)\n", program, e.what(), program);
    return 2;
  } catch (const tessera::Error& e) {
    if (printer) std::fprintf(stderr, "%s\n", e.what());
    return 1;
  } catch (const std::exception& e) {  // the file system (a folder for checkpoints), memory
    if (printer) std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
}
