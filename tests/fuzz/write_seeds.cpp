// Writes the fuzz targets' seed corpora with the library itself: valid CSV, TSRD, raw float32 and
// model files of a few shapes, each prefixed with the option byte(s) its target reads first.
//   write_seeds <folder>   ->  <folder>/csv, <folder>/tsrd, <folder>/model, <folder>/checkpoint, <folder>/tasks
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tessera/data/binary.hpp"
#include "tessera/data/standardize.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/model/models.hpp"
#include "tessera/select/search.hpp"
#include "tessera/tasks/pool.hpp"
#include "tessera/train/checkpoint.hpp"

namespace fs = std::filesystem;
using namespace tessera;

namespace {
std::vector<char> bytes_of(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void seed(const fs::path& dir, const std::string& name, const std::string& prefix, const std::vector<char>& body) {
  std::ofstream f(dir / name, std::ios::binary);
  f.write(prefix.data(), static_cast<std::streamsize>(prefix.size()));
  f.write(body.data(), static_cast<std::streamsize>(body.size()));
}
data::Dataset sample(std::size_t rows, std::size_t cols, std::size_t tdim) {
  Matrix x(rows, cols);
  std::vector<float> y(rows * tdim);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i % 7) - 3.0f;
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<float>(i % 3);
  return {std::move(x), std::move(y), tdim};
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: write_seeds <folder>\n");
    return 2;
  }
  const fs::path root = argv[1];
  for (const char* t : {"csv", "tsrd", "model", "checkpoint", "tasks"}) fs::create_directories(root / t);
  const fs::path tmp = root / "scratch";
  fs::create_directories(tmp);

  // CSV: the digits' shape in miniature, line ends LF, CRLF and CR, quoted names, spaces
  const std::vector<std::pair<std::string, std::string>> csv = {
      {"lf", "x0,x1,y\n1,2,0\n3.5,-4e2,1\n"},
      {"crlf", "\xEF\xBB\xBF\"a\",\"b c\",label\r\n+1, 2 ,3\r\n4,5,6\r\n"},
      {"cr", "a;b;y\r1;2;0\r3;4;1"},
      {"noheader", "1,2,3\n4,5,6"},
      {"nonfinite", "a,b\nnan,1\ninf,0\n"}};
  int k = 0;
  for (const auto& [name, text] : csv)
    seed(root / "csv", name, std::string(1, static_cast<char>(k++ * 37 + 1)), {text.begin(), text.end()});

  // TSRD: whole files of a few shapes, read whole, as a slice and as a shard; raw float32 rows
  const std::vector<std::vector<std::size_t>> shapes = {{5, 3, 1}, {12, 2, 2}, {1, 1, 1}, {0, 4, 1}};
  k = 0;
  for (const auto& s : shapes) {
    const std::string p = (tmp / "d.tsrd").string();
    data::write_binary(sample(s[0], s[1], s[2]), p);
    const auto body = bytes_of(p);
    for (char mode : {'\0', '\1', '\2'}) seed(root / "tsrd", "tsrd" + std::to_string(k) + "_" + std::to_string(int(mode)),
                                            std::string{mode, static_cast<char>(k * 9 + 3)}, body);
    ++k;
  }
  std::vector<char> raw(4 * 4 * 6);
  for (std::size_t i = 0; i < raw.size(); i += 4) raw[i + 3] = 0x3f;  // 0.5f-ish values
  seed(root / "tsrd", "raw", std::string{'\3', '\3'}, raw);

  // models: every loss, a few depths and activations; two with a standardizer attached
  std::vector<Model> models = {
      models::linear_regression(3, {.seed = 1}), models::logistic_regression(2, {.seed = 2}),
      models::softmax_regression(4, 3, {.seed = 3}),
      models::mlp({4, 6, 2}, act::relu, loss::binary_cross_entropy, {.seed = 4}),
      models::mlp({3, 5, 4, 2}, act::tanh, loss::softmax_cross_entropy, {.seed = 5, .weight_decay = 0.01f})};
  models.push_back(models[0]);
  models.back().set_input_transform(data::Standardizer(sample(6, 3, 1).x()));
  models.push_back(models[3]);
  models.back().set_input_transform(data::Standardizer({1.0f, -2.0f, 0.5f, 1e3f}, {0.25f, 2.0f, 1.0f, 1e-3f}));
  // layer kinds and losses of the concept: kind names and options texts for the reader to take apart
  models.emplace_back(4, std::vector<LayerSpec>{layers::dense(6, act::relu), layers::layer_norm(1e-3f), layers::dropout(0.25f),
                                                layers::dense(3)},
                      loss::weighted_softmax_cross_entropy({1.0f, 2.0f, 0.5f}), ModelOptions{.seed = 6});
  models.emplace_back(3, std::vector<LayerSpec>{layers::dense(5, act::tanh), layers::layer_norm(), layers::dense(2)},
                      loss::huber(0.5f), ModelOptions{.seed = 7});
  k = 0;
  for (const Model& m : models) {
    const std::string p = (tmp / "m.tsm").string();
    save(m, p);
    const auto body = bytes_of(p);
    for (char mode : {'\0', '\1', '\2'})
      seed(root / "model", "model" + std::to_string(k) + "_" + std::to_string(int(mode)), std::string{mode}, body);
    ++k;
  }
  // task outcomes: a group's report of numbers, named numbers, parameters and models, some failed
  {
    const auto outcomes = [](auto value, std::size_t n) {
      using R = decltype(value);
      std::vector<tasks::Outcome<R>> v(n);
      for (std::size_t i = 0; i < n; ++i) {
        v[i].index = n - 1 - i;
        v[i].slot = i % 2;
        v[i].seconds = 0.25 * static_cast<double>(i);
        if (i % 3 == 2) v[i].error = "tessera: task " + std::to_string(i) + " failed";
        else v[i].value = value;
      }
      const std::string b = tasks::encode_outcomes(v);
      return std::vector<char>(b.begin(), b.end());
    };
    // first byte: result type (low 2 bits) and task count - 1 (the rest)
    const auto prefix = [](int type, std::size_t tasks) { return std::string(1, static_cast<char>(type | ((tasks - 1) << 2))); };
    seed(root / "tasks", "numbers", prefix(0, 4), outcomes(0.975, 4));
    seed(root / "tasks", "named", prefix(1, 5),
         outcomes(std::vector<std::pair<std::string, double>>{{"accuracy", 0.97}, {"loss", 0.1}}, 5));
    seed(root / "tasks", "parameters", prefix(2, 3), outcomes(std::vector<float>{1.0f, -2.0f, 0.5f}, 3));
    seed(root / "tasks", "models", prefix(3, 2), outcomes(models[2], 2));
  }

  // checkpoints: at an epoch's start and mid-epoch, with and without optimizer state and history
  k = 0;
  for (const Model& m : models) {
    Checkpoint c;
    c.model = m;
    c.moments.assign(k % 3, std::vector<float>(m.parameter_count(), 0.25f));
    c.optimizer_steps = 7 * k;
    c.steps_per_epoch = 5;
    c.step = k % 5;
    c.epoch = k % 2;
    c.history.epochs.resize(c.epoch);
    c.setup = "model: x\nseed: " + std::to_string(k) + "\n";
    c.run = "fuzz seed";
    const std::string p = (tmp / "c.tsrckpt").string();
    save_checkpoint(c, p);
    const auto body = bytes_of(p);
    for (char mode : {'\0', '\1'})
      seed(root / "checkpoint", "checkpoint" + std::to_string(k) + "_" + std::to_string(int(mode)), std::string{mode}, body);
    ++k;
  }
  fs::remove_all(tmp);
  std::printf("seed corpora written under %s\n", root.string().c_str());
  return 0;
}
