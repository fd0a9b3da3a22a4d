// tessera/select/search.hpp - model selection on the task pool: k-fold cross-validation, grid and
// random search with a refit of the best point, and ensembles of several models.
//
// Every (point, fold) pair is one task of the pool (tasks::OnThreads on the threads of this
// process, tasks::OnRanks in tessera/tasks/mpi.hpp over ranks and groups of ranks), so the pool
// balances points of uneven cost. Inside a task the preprocessing is fitted on the fold's training
// rows only, the model and the trainer are seeded from the candidate, and the score is the exact
// evaluation of the fold's test rows; the same candidate and folds give the same bits wherever the
// task runs (with `deterministic` for tasks trained over several workers or ranks).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "tessera/data/dataset.hpp"
#include "tessera/data/folds.hpp"
#include "tessera/data/standardize.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/model/models.hpp"
#include "tessera/optim/optimizer.hpp"
#include "tessera/tasks/pool.hpp"
#include "tessera/trainer.hpp"

namespace tessera {

namespace tasks {
/// Runs a search's tasks on the threads of this process (see tasks::run and PoolOptions).
struct OnThreads {
  /// How the cores are shared.
  PoolOptions pool{};
  /// tasks::run(count, task, pool).
  template <class F>
  auto run(std::size_t count, F&& task) const {
    return tasks::run(count, std::forward<F>(task), pool);
  }
  /// Cores a fit outside the pool may use: the pool's (`cores`, else slots x threads_per_task when
  /// both are set), or the machine's (a task's share inside a task).
  [[nodiscard]] std::size_t threads() const {
    if (pool.cores) return pool.cores;
    if (pool.slots && pool.threads_per_task) return pool.slots * pool.threads_per_task;
    if (const std::size_t b = tessera::detail::task_thread_budget()) return b;
    return tessera::detail::hardware_threads();
  }
  /// Processes: this one.
  [[nodiscard]] static constexpr std::size_t processes() noexcept { return 1; }
};

/// A model travels between processes as the bytes of its model file.
template <>
struct Codec<Model> {
  /// Appends the model file's bytes.
  static void write(std::string& out, const Model& m) {
    std::string bytes;
    tessera::detail::write_model(m, [&](const void* p, std::size_t n) { bytes.append(static_cast<const char*>(p), n); });
    Codec<std::string>::write(out, bytes);
  }
  /// Reads a model back, checked as load_model checks a file.
  static Model read(std::string_view& in) {
    const std::string bytes = Codec<std::string>::read(in);
    return parse_model(std::span<const unsigned char>(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size()),
                       "a task's model");
  }
};
}  // namespace tasks

namespace select {

/// What a search ranks candidates by.
enum class Metric {
  automatic,  ///< accuracy for classification, R^2 for regression
  accuracy,   ///< higher is better
  log_loss,   ///< lower is better
  mse,        ///< lower is better
  r2,         ///< higher is better
  loss,       ///< the model's loss, its weight penalty included (lower is better; it favours small weight decays)
};

/// The metric's name.
inline const char* to_string(Metric m) noexcept {
  switch (m) {
    case Metric::automatic: return "automatic";
    case Metric::accuracy: return "accuracy";
    case Metric::log_loss: return "log_loss";
    case Metric::mse: return "mse";
    case Metric::r2: return "r2";
    case Metric::loss: return "loss";
  }
  return "?";
}
/// Whether a higher value of the metric is better.
constexpr bool higher_is_better(Metric m) noexcept { return m == Metric::accuracy || m == Metric::r2; }
/// The metric `m` stands for with a model of loss `l`.
constexpr Metric resolve(Metric m, Loss l) noexcept {
  return m != Metric::automatic ? m : is_classification(l) ? Metric::accuracy : Metric::r2;
}
/// The value of metric `m` in an evaluation.
inline double value_of(Metric m, const Evaluation& e) {
  switch (m) {
    case Metric::accuracy: return e.accuracy;
    case Metric::log_loss: return e.log_loss;
    case Metric::mse: return e.mse;
    case Metric::r2: return e.r2;
    case Metric::loss:
    case Metric::automatic: break;
  }
  return e.loss;
}

/// One point of a search: the model family and size, the optimizer and the training settings.
struct Candidate {
  /// Hidden layer widths; empty: no hidden layer (softmax, logistic or linear regression).
  std::vector<std::size_t> hidden{};
  Activation activation = Activation::relu;  ///< of the hidden layers
  /// The loss: softmax cross-entropy (classes), binary cross-entropy or mean squared error.
  Loss loss = Loss::softmax_cross_entropy;
  float weight_decay = 0.0f;  ///< L2 penalty on the weights
  /// The optimizer and its learning rate.
  optim::Optimizer optimizer = optim::adam(1e-2);
  /// Rows per step, all workers and ranks of a task together, so that a candidate trains the same
  /// steps whatever share of the machine its task gets.
  std::size_t batch_size = 32;
  std::size_t epochs = 20;      ///< passes over the training rows
  /// Seeds the model's initial weights and the trainer's shuffles.
  std::uint64_t seed = 0;

  /// The model family: "softmax regression", "mlp 128 relu", ...
  [[nodiscard]] std::string family() const {
    if (hidden.empty())
      return loss == Loss::softmax_cross_entropy  ? "softmax regression"
             : loss == Loss::binary_cross_entropy ? "logistic regression"
                                                  : "linear regression";
    std::string s = "mlp ";
    for (std::size_t i = 0; i < hidden.size(); ++i) s += (i ? "-" : "") + std::to_string(hidden[i]);
    return s + " " + tessera::to_string(activation);
  }
  /// Every setting on one line.
  [[nodiscard]] std::string describe() const {
    char wd[32];
    std::snprintf(wd, sizeof wd, "%g", static_cast<double>(weight_decay));
    return family() + ", " + optimizer.describe() + ", weight_decay " + wd + ", batch " + std::to_string(batch_size) +
           ", epochs " + std::to_string(epochs) + ", seed " + std::to_string(seed);
  }
  /// The model on `inputs` features with `outputs` outputs (classes for softmax), from `seed`.
  [[nodiscard]] Model make_model(std::size_t inputs, std::size_t outputs) const {
    std::vector<std::size_t> sizes{inputs};
    sizes.insert(sizes.end(), hidden.begin(), hidden.end());
    sizes.push_back(outputs);
    return models::mlp(sizes, activation, loss, {seed, weight_decay});
  }
  /// The trainer's options for a task of `threads` cores on each of `ranks` ranks: quiet, epochs
  /// and seed from the candidate, and as many workers (at most `threads`) as split the global
  /// batch evenly over workers x ranks. Throws Error (ErrorKind::invalid_argument) when the batch
  /// does not divide over the ranks.
  [[nodiscard]] TrainerOptions trainer_options(bool deterministic, std::size_t threads = 1, std::size_t ranks = 1) const {
    tessera::detail::require(batch_size > 0, ErrorKind::invalid_argument,
                             "select::Candidate: batch_size must be at least 1, got 0");
    tessera::detail::require(ranks > 0 && batch_size % ranks == 0, ErrorKind::invalid_argument,
                             "select::Candidate: a batch of " + std::to_string(batch_size) + " rows does not divide over " +
                                 std::to_string(ranks) + " ranks");
    const std::size_t per_rank = batch_size / ranks;
    std::size_t workers = std::max<std::size_t>(1, std::min(threads, per_rank));
    while (per_rank % workers) --workers;
    TrainerOptions o;
    o.batch_size = per_rank / workers;
    o.workers = workers;
    o.epochs = epochs;
    o.seed = seed;
    o.progress = Progress::never;
    o.deterministic = deterministic;
    return o;
  }
};

/// A grid: every combination of the listed values (an empty list keeps the base's value).
struct Grid {
  /// The settings not varied.
  Candidate base{};
  std::vector<std::vector<std::size_t>> hidden{};  ///< hidden layer widths ({} for none)
  std::vector<Activation> activations{};            ///< hidden activations
  std::vector<optim::Optimizer> optimizers{};       ///< optimizers (their learning rate overridden by learning_rates)
  std::vector<double> learning_rates{};             ///< learning rates
  std::vector<float> weight_decays{};               ///< L2 penalties
  std::vector<std::size_t> batch_sizes{};           ///< batch sizes
  std::vector<std::size_t> epochs{};                ///< epoch counts
  std::vector<std::uint64_t> seeds{};               ///< seeds

  /// The grid's points in a fixed order (the last list varies fastest); models without hidden
  /// layers are listed once whatever the activations.
  [[nodiscard]] std::vector<Candidate> points() const {
    std::vector<Candidate> out{base};
    const auto vary = [&out](const auto& values, auto set) {
      if (values.empty()) return;
      std::vector<Candidate> next;
      for (const Candidate& c : out)
        for (const auto& v : values) {
          Candidate d = c;
          set(d, v);
          next.push_back(d);
        }
      out = std::move(next);
    };
    vary(hidden, [](Candidate& c, const std::vector<std::size_t>& v) { c.hidden = v; });
    if (!activations.empty()) {
      std::vector<Candidate> next;
      for (const Candidate& c : out) {
        if (c.hidden.empty()) {
          next.push_back(c);
          continue;
        }
        for (Activation a : activations) {
          Candidate d = c;
          d.activation = a;
          next.push_back(d);
        }
      }
      out = std::move(next);
    }
    vary(optimizers, [](Candidate& c, const optim::Optimizer& o) { c.optimizer = o; });
    vary(learning_rates, [](Candidate& c, double lr) { c.optimizer.learning_rate = lr; });
    vary(weight_decays, [](Candidate& c, float wd) { c.weight_decay = wd; });
    vary(batch_sizes, [](Candidate& c, std::size_t b) { c.batch_size = b; });
    vary(epochs, [](Candidate& c, std::size_t e) { c.epochs = e; });
    vary(seeds, [](Candidate& c, std::uint64_t s) { c.seed = s; });
    return out;
  }
};

/// Random search: `count` candidates drawn from ranges, reproducibly from `seed`.
struct RandomSearch {
  /// The settings not drawn.
  Candidate base{};
  /// Candidates drawn.
  std::size_t count = 20;
  std::uint64_t seed = 0;  ///< the same seed, the same candidates
  ///@{
  /// The learning rate, log-uniform in [min, max].
  double learning_rate_min = 1e-4, learning_rate_max = 1e-1;
  ///@}
  ///@{
  /// The weight decay, log-uniform in [min, max] when min > 0; the base's otherwise.
  double weight_decay_min = 0.0, weight_decay_max = 0.0;
  ///@}
  std::vector<std::vector<std::size_t>> hidden{};  ///< drawn from uniformly (empty: the base's)
  std::vector<std::size_t> batch_sizes{};           ///< drawn from uniformly (empty: the base's)
  std::vector<std::size_t> epochs{};                ///< drawn from uniformly (empty: the base's)

  /// The drawn candidates.
  [[nodiscard]] std::vector<Candidate> points() const {
    tessera::detail::require(learning_rate_min > 0.0 && learning_rate_max >= learning_rate_min,
                             ErrorKind::invalid_argument,
                             "RandomSearch: the learning-rate range must satisfy 0 < min <= max");
    tessera::detail::require(weight_decay_min == 0.0 || (weight_decay_min > 0.0 && weight_decay_max >= weight_decay_min),
                             ErrorKind::invalid_argument,
                             "RandomSearch: the weight-decay range must be 0 (off) or satisfy 0 < min <= max");
    std::vector<Candidate> out;
    const auto uniform = [this](std::size_t i, std::uint32_t what) {
      return static_cast<double>(rng::u64(seed, rng::Stream::split, i, 1000 + what) >> 11) * 0x1p-53;
    };
    const auto log_uniform = [&](std::size_t i, std::uint32_t what, double lo, double hi) {
      return std::exp(std::log(lo) + uniform(i, what) * (std::log(hi) - std::log(lo)));
    };
    const auto pick = [&](std::size_t i, std::uint32_t what, const auto& list) -> decltype(auto) {
      return list[std::min(list.size() - 1, static_cast<std::size_t>(uniform(i, what) * static_cast<double>(list.size())))];
    };
    for (std::size_t i = 0; i < count; ++i) {
      Candidate c = base;
      c.optimizer.learning_rate = log_uniform(i, 0, learning_rate_min, learning_rate_max);
      if (weight_decay_min > 0.0) c.weight_decay = static_cast<float>(log_uniform(i, 1, weight_decay_min, weight_decay_max));
      if (!hidden.empty()) c.hidden = pick(i, 2, hidden);
      if (!batch_sizes.empty()) c.batch_size = pick(i, 3, batch_sizes);
      if (!epochs.empty()) c.epochs = pick(i, 4, epochs);
      out.push_back(c);
    }
    return out;
  }
};

/// How cross-validation and searches run.
struct SearchOptions {
  /// The folds (5, seeded, stratified by default for classification).
  data::KFold folds{5, 0, true};
  /// Fit a standardizer on each fold's training rows (and for the refit on all rows).
  bool standardize = true;
  /// What candidates are ranked by.
  Metric metric = Metric::automatic;
  /// Train each task in deterministic mode (the same bits on any worker or rank count).
  bool deterministic = false;
  /// Refit the best candidate on all the training rows (search only).
  bool refit = true;
};

/// A candidate's cross-validated scores.
struct Scores {
  std::vector<double> folds{};  ///< one score per fold, in fold order (NaN for a fold that failed)
  double mean = NAN;            ///< over the folds
  double stddev = NAN;          ///< population standard deviation over the folds
  std::string error{};          ///< the first failing fold's error ("fold 3: ..."), empty when all ran
  double seconds = 0.0;         ///< the folds' training time, summed
  /// Whether every fold ran.
  [[nodiscard]] bool ok() const noexcept { return error.empty(); }
};

/// One point of a search and its scores.
struct PointResult {
  /// The candidate.
  Candidate candidate{};
  /// Its cross-validated scores.
  Scores scores{};
};

/// What a search found: every point's scores, the best point and its refit model.
struct SearchResult {
  std::vector<PointResult> points{};                       ///< in the order of the candidates
  std::size_t best = std::numeric_limits<std::size_t>::max();  ///< index of the best point (max: none ran)
  /// The metric ranked by.
  Metric metric = Metric::accuracy;
  /// The best candidate refit on all training rows, its standardizer attached (serve it with
  /// predict_raw); empty when refit is off or no point ran.
  Model model{};
  /// Why the refit failed (the best candidate's batch does not divide over the ranks of the refit,
  /// say); empty when it ran or was not asked for.
  std::string refit_error{};
  /// Wall time of the whole search, refit included.
  double seconds = 0.0;

  /// Whether some point ran on every fold.
  [[nodiscard]] bool found() const noexcept { return best < points.size(); }
  /// The best point; throws Error (ErrorKind::runtime) when every point failed.
  [[nodiscard]] const PointResult& best_point() const {
    tessera::detail::require(found(), ErrorKind::runtime,
                             "select::search: no candidate ran on every fold" +
                                 (points.empty() ? std::string() : "; the first error: " + points.front().scores.error));
    return points[best];
  }
  /// A table: one line per point with its mean, standard deviation and folds; the best marked.
  [[nodiscard]] std::string table() const {
    std::string out;
    char line[256];
    std::snprintf(line, sizeof line, "  #  %-9s %-8s  %s\n", to_string(metric), "std", "candidate");
    out += line;
    for (std::size_t i = 0; i < points.size(); ++i) {
      const PointResult& p = points[i];
      if (p.scores.ok())
        std::snprintf(line, sizeof line, "%3zu  %-9.4f %-8.4f  %s%s\n", i, p.scores.mean, p.scores.stddev,
                      p.candidate.describe().c_str(), i == best ? "   <- best" : "");
      else
        std::snprintf(line, sizeof line, "%3zu  %-9s %-8s  %s   (failed: %.120s)\n", i, "-", "-",
                      p.candidate.describe().c_str(), p.scores.error.c_str());
      out += line;
    }
    return out;
  }
};

namespace detail_search {

/// Outputs of the models a search builds on `d`: classes for softmax, targets per row otherwise.
inline std::size_t outputs_for(const Candidate& c, const data::Dataset& d) {
  return c.loss == Loss::softmax_cross_entropy ? d.num_classes() : d.target_dim;
}

/// Trains candidate `c` on the rows `train_rows` of `d` (standardized on them when asked) and
/// evaluates it on `test_rows`; returns the trained model and the evaluation.
template <class TrainerT>
std::pair<Model, Evaluation> train_and_test(const data::Dataset& d, std::size_t outputs, const Candidate& c,
                                            const std::vector<std::size_t>& train_rows,
                                            const std::vector<std::size_t>* test_rows, const SearchOptions& o,
                                            std::size_t threads, std::size_t ranks) {
  data::Dataset train = d.subset(train_rows);
  data::Standardizer s;
  if (o.standardize) {
    s.fit(train.x());
    s.transform_in_place(train.features);
  }
  Model m = c.make_model(d.cols(), outputs);
  TrainerT trainer(c.trainer_options(o.deterministic, threads, ranks), c.optimizer);
  trainer.fit(m, train);
  Evaluation e;
  if (test_rows) {
    data::Dataset test = d.subset(*test_rows);
    if (o.standardize) s.transform_in_place(test.features);
    e = trainer.evaluate(m, test);
  }
  if (o.standardize) m.set_input_transform(s);
  return {std::move(m), e};
}

/// Ranks a task's fit spans: its group's for a trainer across processes; 1 for a trainer on the
/// threads of one process (each rank of a group would then train the whole task alone).
template <class TrainerT>
std::size_t task_ranks(const tasks::Context& c) {
  return TrainerT::policies::reduce::across_processes ? c.ranks : 1;
}

/// Ranks a fit outside the pool (the refit) spans: every rank for a trainer across processes.
template <class TrainerT, class Runner>
std::size_t fit_ranks(const Runner& runner) {
  return TrainerT::policies::reduce::across_processes ? runner.processes() : 1;
}

inline double mean_of(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}
inline double stddev_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0.0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size()));
}

}  // namespace detail_search

/// Cross-validates every candidate on `d` and returns every point's scores, the best point and
/// (with `refit`) the best candidate trained on all of `d`. TrainerT is the trainer each task uses
/// (Trainer<> on threads; Trainer<Reduce<MpiAllreduce>> for tasks trained over groups of ranks),
/// Runner where the tasks run (tasks::OnThreads, tasks::OnRanks). Every rank calls it alike under
/// MPI; every rank gets the whole result. A candidate whose fold throws or diverges keeps the error
/// in its scores; the others are ranked as usual.
template <class TrainerT = Trainer<>, class Runner = tasks::OnThreads>
SearchResult search(const data::Dataset& d, const std::vector<Candidate>& candidates, const SearchOptions& o = {},
                    const Runner& runner = {}) {
  const auto t0 = std::chrono::steady_clock::now();
  tessera::detail::require(!candidates.empty(), ErrorKind::invalid_argument, "select::search: no candidates");
  tessera::detail::require(!d.empty(), ErrorKind::invalid_argument, "select::search: the data set has no rows");
  tessera::detail::require(!d.sharded(), ErrorKind::invalid_argument,
                           "select::search: the data set is shard " + std::to_string(d.shard.index) + " of " +
                               std::to_string(d.shard.count) +
                               "; folds are cut from whole data sets: give every rank all the rows");
  data::KFold kf = o.folds;
  kf.stratify = kf.stratify && is_classification(candidates.front().loss) && d.target_dim == 1;
  const std::vector<data::Fold> folds = data::kfold(d, kf);
  const std::size_t k = folds.size();
  std::vector<std::size_t> outputs(candidates.size());
  for (std::size_t i = 0; i < candidates.size(); ++i) outputs[i] = detail_search::outputs_for(candidates[i], d);

  SearchResult r;
  r.metric = resolve(o.metric, candidates.front().loss);
  const auto outcomes = runner.run(candidates.size() * k, [&](const tasks::Context& c) -> double {
    const std::size_t p = c.index / k, f = c.index % k;
    const Metric m = r.metric;
    const auto [model, e] = detail_search::train_and_test<TrainerT>(d, outputs[p], candidates[p], folds[f].train,
                                                                    &folds[f].test, o, c.threads,
                                                                    detail_search::task_ranks<TrainerT>(c));
    const double v = value_of(m, e);
    tessera::detail::require(!std::isnan(v), ErrorKind::invalid_argument,
                             std::string("select::search: the metric ") + to_string(m) + " does not apply to the loss " +
                                 tessera::to_string(candidates[p].loss));
    return v;
  });
  for (std::size_t p = 0; p < candidates.size(); ++p) {
    PointResult pr;
    pr.candidate = candidates[p];
    for (std::size_t f = 0; f < k; ++f) {
      const auto& out = outcomes[p * k + f];
      pr.scores.folds.push_back(out.ok() ? *out.value : NAN);
      pr.scores.seconds += out.seconds;
      if (!out.ok() && pr.scores.error.empty()) pr.scores.error = "fold " + std::to_string(f + 1) + ": " + out.error;
    }
    if (pr.scores.ok()) {
      pr.scores.mean = detail_search::mean_of(pr.scores.folds);
      pr.scores.stddev = detail_search::stddev_of(pr.scores.folds);
      const bool better = !r.found() || (higher_is_better(r.metric) ? pr.scores.mean > r.points[r.best].scores.mean
                                                                    : pr.scores.mean < r.points[r.best].scores.mean);
      if (better) r.best = p;
    }
    r.points.push_back(std::move(pr));
  }
  if (o.refit && r.found()) {
    std::vector<std::size_t> all(d.rows());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
    const tasks::detail_pool::TaskThreads cores(runner.threads());  // the pool's cores, not the machine's
    try {  // every point's scores stay, whatever the refit meets
      r.model = detail_search::train_and_test<TrainerT>(d, outputs[r.best], candidates[r.best], all, nullptr, o,
                                                        runner.threads(), detail_search::fit_ranks<TrainerT>(runner))
                    .first;
    } catch (const std::exception& e) {
      r.refit_error = e.what();
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

/// The cross-validated scores of one candidate (search() without the refit).
template <class TrainerT = Trainer<>, class Runner = tasks::OnThreads>
Scores cross_validate(const data::Dataset& d, const Candidate& candidate, SearchOptions o = {}, const Runner& runner = {}) {
  o.refit = false;
  return search<TrainerT>(d, {candidate}, o, runner).points.front().scores;
}

/// Several models trained on the same rows, combined: the mean of their probabilities
/// (classification) or of their predictions (regression).
class Ensemble {
 public:
  /// The members that trained; each takes raw rows (its standardizer attached).
  std::vector<Model> members{};
  /// Errors of the members that failed, as "member 2: ..." (the index in the list given, from 0).
  std::vector<std::string> errors{};

  /// The mean over members of predict_raw(x). Throws Error (ErrorKind::runtime) without members.
  [[nodiscard]] Matrix predict(MatrixView x) const {
    tessera::detail::require(!members.empty(), ErrorKind::runtime,
                             "select::Ensemble: no member trained" + (errors.empty() ? std::string() : "; " + errors.front()));
    Matrix sum = members.front().predict_raw(x);
    for (std::size_t i = 1; i < members.size(); ++i) {
      const Matrix p = members[i].predict_raw(x);
      tessera::detail::require(p.rows() == sum.rows() && p.cols() == sum.cols(), ErrorKind::shape,
                               "select::Ensemble: member " + std::to_string(i) + " predicts " +
                                   shape_string(p.rows(), p.cols()) + ", member 0 " + shape_string(sum.rows(), sum.cols()));
      for (std::size_t j = 0; j < p.values().size(); ++j) sum.data()[j] += p.values()[j];
    }
    const float inv = 1.0f / static_cast<float>(members.size());
    for (std::size_t j = 0; j < sum.values().size(); ++j) sum.data()[j] *= inv;
    return sum;
  }
  /// Classes from the mean probabilities: argmax, or threshold 0.5 for one output.
  [[nodiscard]] std::vector<int> predict_classes(MatrixView x) const {
    const Matrix p = predict(x);
    std::vector<int> out(p.rows());
    for (std::size_t r = 0; r < p.rows(); ++r) {
      const float* row = p.row(r);
      out[r] = p.cols() == 1 ? (row[0] > 0.5f ? 1 : 0) : static_cast<int>(std::max_element(row, row + p.cols()) - row);
    }
    return out;
  }
  /// Accuracy of predict_classes on raw rows `d` (class labels).
  [[nodiscard]] double accuracy(const data::Dataset& d) const {
    return metrics::accuracy(predict_classes(d.x()), d.targets);
  }
  /// R^2 of predict on raw rows `d` (regression).
  [[nodiscard]] double r2(const data::Dataset& d) const { return metrics::r2(predict(d.x()).values(), d.targets); }
};

/// Trains every candidate on all of `d` at once, as tasks of the pool, and combines them. A member
/// that fails is left out with its error kept.
template <class TrainerT = Trainer<>, class Runner = tasks::OnThreads>
Ensemble train_ensemble(const data::Dataset& d, const std::vector<Candidate>& members, const SearchOptions& o = {},
                        const Runner& runner = {}) {
  tessera::detail::require(!members.empty(), ErrorKind::invalid_argument, "select::train_ensemble: no members");
  std::vector<std::size_t> all(d.rows());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  const auto outcomes = runner.run(members.size(), [&](const tasks::Context& c) -> Model {
    const Candidate& m = members[c.index];
    return detail_search::train_and_test<TrainerT>(d, detail_search::outputs_for(m, d), m, all, nullptr, o, c.threads,
                                                   detail_search::task_ranks<TrainerT>(c))
        .first;
  });
  Ensemble e;
  for (const auto& out : outcomes) {
    if (out.ok()) e.members.push_back(*out.value);
    else e.errors.push_back("member " + std::to_string(out.index) + ": " + out.error);
  }
  return e;
}

}  // namespace select
}  // namespace tessera
