// A layer, a loss and an update rule of your own, with no change to tessera (docs/models.md):
//   - LearnedSwish, a layer: y = x * sigmoid(beta * x), one learned beta per feature;
//   - SmoothedCrossEntropy, a loss: softmax cross-entropy against labels smoothed by epsilon;
//   - Adamax, an update rule (Kingma & Ba): Adam with an infinity-norm second moment.
// It checks the layer's and the loss's gradients first, trains on the shipped digits with two
// worker threads, and saves and loads the model with both kinds registered.
//   open_model [digits.csv] [--epochs N]
#include <tessera/tessera.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

using namespace tessera;

/// y = x * sigmoid(beta_j * x) per feature j; beta starts at 1 (the SiLU).
class LearnedSwish final : public LayerOp {
 public:
  std::string kind() const override { return "learned_swish"; }
  std::size_t parameter_count(std::size_t in) const override { return in; }
  void initialise(std::span<float> p, std::size_t in, std::uint64_t, std::uint32_t) const override {
    for (std::size_t j = 0; j < in; ++j) p[j] = 1.0f;
  }
  void forward(const LayerPass& p) const override {
    for (std::size_t r = 0; r < p.rows; ++r)
      for (std::size_t j = 0; j < p.in; ++j) {
        const float x = p.x[r * p.in + j];
        p.y[r * p.in + j] = x / (1.0f + std::exp(-p.params[j] * x));
      }
  }
  void backward(const LayerPass& p) const override {
    if (!p.accumulate)
      for (std::size_t j = 0; j < p.in; ++j) p.grads[j] = 0.0f;
    for (std::size_t r = 0; r < p.rows; ++r)
      for (std::size_t j = 0; j < p.in; ++j) {
        const std::size_t i = r * p.in + j;
        const float x = p.x[i], b = p.params[j], s = 1.0f / (1.0f + std::exp(-b * x));
        const float ds = s * (1.0f - s);
        p.grads[j] += p.dy[i] * x * x * ds;                   // dy/dbeta = x^2 s (1 - s)
        if (p.dx) p.dx[i] = p.dy[i] * (s + b * x * ds);        // dy/dx = s + beta x s (1 - s)
      }
  }
};

/// Softmax cross-entropy against (1 - eps) one-hot + eps / K: a classifier that is less sure.
class SmoothedCrossEntropy final : public LossOp {
 public:
  explicit SmoothedCrossEntropy(float eps) : eps_(eps) {}
  std::string kind() const override { return "smoothed_cross_entropy"; }
  std::string options() const override { return "eps=" + std::to_string(eps_); }
  Loss family() const override { return Loss::softmax_cross_entropy; }  // class labels, softmax predictions
  double evaluate(const LossPass& p) const override {
    double sum = 0.0;
    for (std::size_t r = 0; r < p.rows; ++r) {
      const float* z = p.z + r * p.cols;
      float m = z[0];
      for (std::size_t j = 1; j < p.cols; ++j) m = std::max(m, z[j]);
      double total = 0.0;
      for (std::size_t j = 0; j < p.cols; ++j) total += std::exp(double(z[j]) - m);
      const double lse = m + std::log(total);
      const auto label = static_cast<std::size_t>(p.y[r]);
      double row = 0.0;
      for (std::size_t j = 0; j < p.cols; ++j) {
        const double target = (j == label ? 1.0 - eps_ : 0.0) + eps_ / double(p.cols);
        row += target * (lse - z[j]);
        if (p.grad) p.grad[r * p.cols + j] = p.scale * float(std::exp(double(z[j]) - lse) - target);
      }
      if (p.per_row)
        p.per_row[r] = row;
      else
        sum += row;
    }
    return sum;
  }

 private:
  float eps_;
};

/// Adamax: m = b1 m + (1 - b1) g; u = max(b2 u, |g|); w -= lr / (1 - b1^t) * m / (u + eps).
struct Adamax {
  float beta1 = 0.9f, beta2 = 0.999f, epsilon = 1e-8f;
  struct Step {
    float rate;  // lr / (1 - beta1^t), computed once per step
  };
  std::string name() const { return "adamax"; }
  std::size_t state_buffers() const { return 2; }
  Step prepare(double lr, std::uint64_t t) const {
    return {float(lr / (1.0 - std::pow(double(beta1), double(t))))};
  }
  TESSERA_HD void apply(float& w, float g, optim::Slots s, Step k) const {
    const float m = beta1 * s[0] + (1.0f - beta1) * g;
    const float u = std::fmax(beta2 * s[1], std::fabs(g));
    s[0] = m;
    s[1] = u;
    w -= k.rate * m / (u + epsilon);
  }
};

int main(int argc, char** argv) try {
  std::string path = std::string(TESSERA_DATA_DIR) + "/digits.csv";
  std::size_t epochs = 30;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--epochs") && i + 1 < argc)
      epochs = std::strtoul(argv[++i], nullptr, 10);
    else if (argv[i][0] == '-')
      return std::fprintf(stderr, "usage: %s [digits.csv] [--epochs N]\n", argv[0]), 2;
    else
      path = argv[i];
  }
  const data::Dataset digits = data::read_csv(path, {.label = data::last_column, .num_classes = 10});
  auto [train, test] = data::train_test_split(digits, {.test_fraction = 0.2, .seed = 42});
  const data::Standardizer scaler(train.x());
  train = scaler.transform(train);
  test = scaler.transform(test);

  const auto smoothed = loss::custom(std::make_shared<SmoothedCrossEntropy>(0.1f));
  const std::vector<LayerSpec> layers_of = {layers::dense(128), layers::custom(std::make_shared<LearnedSwish>()),
                                            layers::dense(10)};

  // 1. The gradient checker first, on a few rows and parameters away from their start.
  Model probe(64, layers_of, smoothed, {.seed = 7});
  for (std::size_t i = 0; i < probe.parameter_count(); ++i)
    probe.parameters()[i] += 0.05f * rng::normal(1, rng::Stream::user, i, 0);
  const std::vector<std::size_t> first{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  const data::Dataset few = train.subset(first);
  const GradientCheckResult g = check_gradients(probe, few.x(), few.targets, {.stride = 7});
  std::printf("gradient check: %s, largest relative error %.2e over %zu parameters%s%s\n", g.ok ? "ok" : "FAILED",
              g.max_error, g.checked, g.ok ? "" : " at ", g.ok ? "" : g.where.c_str());
  if (!g.ok) return 1;

  // 2. Train: the user's rule through optim::custom, on two worker threads.
  Model model(64, layers_of, smoothed, {.seed = 42});
  Trainer<DataSplit<Random>> trainer({.batch_size = 16, .epochs = epochs, .seed = 42, .workers = 2},
                                     optim::custom(2e-3, Adamax{}));
  const History h = trainer.fit(model, train, test);
  std::printf("%s\n  %s: final loss %.4f, %.2f s, test accuracy %.4f\n", model.architecture().describe().c_str(),
              trainer.optimizer().describe().c_str(), h.last().loss, h.total_seconds, metrics::accuracy(model, test));

  // 3. Model files name the kinds; register them so that save and load know them.
  register_layer("learned_swish", [](const std::string&) { return std::make_shared<LearnedSwish>(); });
  register_loss("smoothed_cross_entropy", [](const std::string& options) {
    return std::make_shared<SmoothedCrossEntropy>(std::stof(options.substr(options.find('=') + 1)));
  });
  const std::string file = (std::filesystem::temp_directory_path() / "open_model.tsm").string();
  save(model, file);
  const Model back = load_model(file);
  std::filesystem::remove(file);
  std::printf("saved and loaded: %s, test accuracy %.4f\n", back == model ? "the same model" : "DIFFERENT",
              metrics::accuracy(back, test));
  return back == model ? 0 : 1;
} catch (const tessera::Error& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
