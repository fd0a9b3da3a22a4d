// tessera/partition/plan.hpp - where a pipeline cuts a model: S contiguous runs of layers whose
// estimated cost (or parameter count) is as even as possible. The cut minimises the largest
// stage, since the slowest stage sets a pipeline's pace (dynamic programming over the layers).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/engine/common.hpp"
#include "tessera/model/architecture.hpp"

namespace tessera {

/// One stage: layers [first_layer, end_layer), parameters [parameter_begin, parameter_end) of the
/// model's flat buffer, and the stage's estimated cost or parameter count (as balanced).
struct StageSpan {
  ///@{
  /// The stage's layers: [first_layer, end_layer).
  std::size_t first_layer = 0, end_layer = 0;
  ///@}
  ///@{
  /// The stage's parameters: [parameter_begin, parameter_end) of the model's flat buffer.
  std::size_t parameter_begin = 0, parameter_end = 0;
  ///@}
  /// What it balances (cost or parameters).
  double weight = 0.0;

  /// Number of layers.
  [[nodiscard]] std::size_t layers() const noexcept { return end_layer - first_layer; }
  /// Number of parameters.
  [[nodiscard]] std::size_t parameters() const noexcept { return parameter_end - parameter_begin; }
};

/// How a pipeline's layers are divided into stages.
struct StagePlan {
  /// One span per stage, in order.
  std::vector<StageSpan> stages;
  /// What the division balances.
  Balance balance = Balance::cost;

  /// Number of stages.
  [[nodiscard]] std::size_t size() const noexcept { return stages.size(); }
  /// Largest stage weight over the mean stage weight: 1 is perfect balance.
  [[nodiscard]] double imbalance() const {
    double mx = 0.0, sum = 0.0;
    for (const auto& s : stages) {
      mx = std::max(mx, s.weight);
      sum += s.weight;
    }
    return sum > 0.0 ? mx * static_cast<double>(stages.size()) / sum : 1.0;
  }
  /// "layers 0-1 | 2-3; cost share 0.52 0.48; parameters 8320 1290; imbalance 1.04".
  [[nodiscard]] std::string describe() const {
    std::string s = "layers";
    double sum = 0.0;
    for (const auto& st : stages) sum += st.weight;
    for (std::size_t i = 0; i < stages.size(); ++i) {
      s += i ? " | " : " ";
      s += std::to_string(stages[i].first_layer);
      if (stages[i].layers() > 1) {
        s += '-';  // appended on its own: GCC 12 sees a false -Wrestrict in "-" + std::string
        s += std::to_string(stages[i].end_layer - 1);
      }
    }
    s += balance == Balance::cost ? "; cost share" : "; parameter share";
    char b[32];
    for (const auto& st : stages) {
      std::snprintf(b, sizeof b, " %.2f", sum > 0.0 ? st.weight / sum : 0.0);
      s += b;
    }
    s += "; parameters";
    for (const auto& st : stages) {
      s += ' ';
      s += std::to_string(st.parameters());
    }
    std::snprintf(b, sizeof b, "; imbalance %.2f", imbalance());
    return s + b;
  }
};

/// Estimated work of layer l per sample, in multiply-adds: the forward product, the weight
/// gradient, the input gradient (not for the first layer: the data needs none), and a few
/// operations per output for bias, activation and its derivative (and the loss after the last).
inline double layer_cost(const Architecture& a, std::size_t l) {
  const Layer& L = a.layers[l];
  if (L.op) return L.op->cost(L.in) + (l + 1 == a.layers.size() ? 4.0 * static_cast<double>(L.out) : 0.0);
  const auto io = static_cast<double>(L.in) * static_cast<double>(L.out);
  const auto out = static_cast<double>(L.out);
  return (l == 0 ? 2.0 : 3.0) * io + 4.0 * out + (l + 1 == a.layers.size() ? 4.0 * out : 0.0);
}

/// Cuts `arch` into `stages` contiguous stages balanced by `balance`.
inline StagePlan plan_stages(const Architecture& arch, std::size_t stages, Balance balance = Balance::cost) {
  const std::size_t L = arch.layers.size();
  detail::require(stages >= 1, ErrorKind::invalid_argument, "Partition<Layerwise>: 0 stages; a pipeline needs at least 1");
  detail::require(stages <= L, ErrorKind::invalid_argument,
                  "Partition<Layerwise>: " + std::to_string(stages) + " stages for a model of " + std::to_string(L) +
                      " layer" + (L == 1 ? "" : "s") + " (" + arch.describe() + "); every stage needs at least one layer, "
                      "so use at most " + std::to_string(L) + " stages");
  std::vector<double> w(L), prefix(L + 1, 0.0);
  for (std::size_t l = 0; l < L; ++l) {
    w[l] = balance == Balance::cost ? layer_cost(arch, l) : static_cast<double>(arch.layers[l].parameter_count());
    prefix[l + 1] = prefix[l] + w[l];
  }
  // best[k][j]: the smallest possible largest stage when layers [0, j) form k stages
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(stages + 1, std::vector<double>(L + 1, inf));
  std::vector<std::vector<std::size_t>> cut(stages + 1, std::vector<std::size_t>(L + 1, 0));
  best[0][0] = 0.0;
  for (std::size_t k = 1; k <= stages; ++k)
    for (std::size_t j = k; j <= L; ++j)
      for (std::size_t i = k - 1; i < j; ++i) {
        const double v = std::max(best[k - 1][i], prefix[j] - prefix[i]);
        if (v < best[k][j]) {
          best[k][j] = v;
          cut[k][j] = i;
        }
      }
  StagePlan plan;
  plan.balance = balance;
  plan.stages.resize(stages);
  std::size_t j = L;
  for (std::size_t k = stages; k >= 1; --k) {
    const std::size_t i = cut[k][j];
    StageSpan& s = plan.stages[k - 1];
    s.first_layer = i;
    s.end_layer = j;
    s.parameter_begin = arch.layers[i].offset;
    s.parameter_end = arch.layers[j - 1].offset + arch.layers[j - 1].parameter_count();
    s.weight = prefix[j] - prefix[i];
    j = i;
  }
  return plan;
}

}  // namespace tessera
