// tessera/eval/exact.hpp - evaluation that counts every row exactly once, with the same bits
// whatever the number of worker threads and ranks that share the rows.
//
// Each row's contributions (its loss, its squared error or hit, its log-loss, its targets for R^2)
// are computed by whichever worker or rank holds the row and written at the row's global index;
// rows held elsewhere stay 0. The processes then sum these per-row tables (x + 0 + ... + 0 = x, so
// the sum is exact), and every process adds the rows up in global row order. Nothing is padded or
// dropped, and the result is the one a single process computes on all rows.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <functional>
#include <system_error>
#include <thread>
#include <vector>

#include "tessera/core/checked.hpp"
#include "tessera/core/matrix.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/detail/loss_kernels.hpp"
#include "tessera/model/model.hpp"
#include "tessera/tasks/pool.hpp"

namespace tessera {

/// Loss and the metrics that apply to the model's loss (NaN where they do not).
struct Evaluation {
  /// Mean loss (the model's loss, its weight penalty included).
  double loss = NAN;
  double accuracy = NAN;  ///< classification
  double log_loss = NAN;  ///< classification
  double mse = NAN;       ///< regression
  double r2 = NAN;        ///< regression
  /// Rows evaluated (every row of the data set once, across workers and ranks).
  std::size_t rows = 0;
};

namespace detail {

/// Values per row of the per-row table: loss, hit or squared error, log-loss, then (regression)
/// the row's targets.
inline std::size_t scored_width(const Model& m) {
  return 3 + (is_classification(m.loss()) ? 0 : m.architecture().target_dim());
}

/// Writes the per-row values of rows [lo, hi) of `d` (local indices) at rows lo + first .. of
/// `table` (scored_width(m) values per row).
inline void score_rows(const Model& m, const data::Dataset& d, std::size_t lo, std::size_t hi, std::size_t first,
                       double* table) {
  const std::size_t w = scored_width(m), t = m.architecture().target_dim(), k = m.output_dim();
  const Loss loss = m.loss();
  constexpr std::size_t block = 256;
  for (std::size_t r0 = lo; r0 < hi; r0 += block) {
    const std::size_t n = std::min(block, hi - r0);
    const MatrixView x{d.x().row(r0), n, d.cols()};
    const Matrix z = m.forward(x);
    const float* y = d.targets.data() + r0 * t;
    with_loss_row(loss, z.row(0), y, nullptr, k, 1.0f, [&](auto row) {
      for (std::size_t i = 0; i < n; ++i) table[(first + r0 + i) * w] = row(i);
      return 0;
    });
    for (std::size_t i = 0; i < n; ++i) {
      double* out = table + (first + r0 + i) * w;
      const float* zr = z.row(i);
      if (loss == Loss::softmax_cross_entropy) {
        const auto label = static_cast<std::size_t>(y[i]);
        const std::size_t arg = static_cast<std::size_t>(std::max_element(zr, zr + k) - zr);
        out[1] = arg == label ? 1.0 : 0.0;
        // the probability as Model::predict computes it (float softmax), clipped as metrics::log_loss
        const float mx = zr[arg];
        float s = 0.0f;
        for (std::size_t j = 0; j < k; ++j) s += std::exp(zr[j] - mx);
        const double p = static_cast<double>(std::exp(zr[label] - mx) / s);
        out[2] = -std::log(std::clamp(p, 1e-15, 1.0));
      } else if (loss == Loss::binary_cross_entropy) {
        const float yi = y[i * t];
        out[1] = (zr[0] > 0.0f ? 1.0f : 0.0f) == yi ? 1.0 : 0.0;
        const double p = static_cast<double>(activate(Activation::sigmoid, zr[0]));
        out[2] = -std::log(std::clamp(yi == 1.0f ? p : 1.0 - p, 1e-15, 1.0));
      } else {
        double e = 0.0;
        for (std::size_t j = 0; j < t; ++j) {
          const double dv = static_cast<double>(zr[j]) - y[i * t + j];
          e += dv * dv;
          out[3 + j] = y[i * t + j];
        }
        out[1] = e;
      }
    }
  }
}

/// Fills the rows of `d` into `table` at global offset `first`, on `workers` threads (blocks of
/// rows handed out as threads free up; each row's values do not depend on who computes them).
inline void score_rows_parallel(const Model& m, const data::Dataset& d, std::size_t first, double* table,
                                std::size_t workers) {
  const std::size_t rows = d.rows();
  constexpr std::size_t block = 1024;
  const std::size_t blocks = (rows + block - 1) / block;
  workers = std::max<std::size_t>(1, std::min(workers, blocks));
  if (workers == 1) {
    score_rows(m, d, 0, rows, first, table);
    return;
  }
  std::atomic<std::size_t> next{0};
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  const auto work = [&] {
    tasks::detail_pool::TaskThreads one(1);  // each thread's kernels and BLAS on its own core
    for (std::size_t b; !failed.load() && (b = next.fetch_add(1)) < blocks;) {
      try {
        score_rows(m, d, b * block, std::min(rows, (b + 1) * block), first, table);
      } catch (...) {
        if (!failed.exchange(true)) error = std::current_exception();
      }
    }
  };
  std::vector<std::thread> team;
  try {
    for (std::size_t i = 1; i < workers; ++i) team.emplace_back(work);
  } catch (const std::system_error&) {  // fewer threads than asked: the ones there share the blocks
  }
  work();
  for (auto& th : team) th.join();
  if (error) std::rethrow_exception(error);
}

/// The evaluation of `total` rows from their per-row table, added up in row order.
inline Evaluation evaluation_from_table(const Model& m, const std::vector<double>& table, std::size_t total) {
  const std::size_t w = scored_width(m), t = m.architecture().target_dim();
  Evaluation e;
  e.rows = total;
  double loss = 0.0, second = 0.0, third = 0.0;
  for (std::size_t r = 0; r < total; ++r) {
    loss += table[r * w];
    second += table[r * w + 1];
    third += table[r * w + 2];
  }
  e.loss = loss / loss_normaliser(m.loss(), total, m.output_dim()) + m.weight_penalty();
  if (is_classification(m.loss())) {
    e.accuracy = second / static_cast<double>(total);
    e.log_loss = third / static_cast<double>(total);
  } else {
    const double values = static_cast<double>(total) * static_cast<double>(t);
    e.mse = second / values;
    double mean = 0.0;
    for (std::size_t r = 0; r < total; ++r)
      for (std::size_t j = 0; j < t; ++j) mean += table[r * w + 3 + j];
    mean /= values;
    double tot = 0.0;
    for (std::size_t r = 0; r < total; ++r)
      for (std::size_t j = 0; j < t; ++j) tot += (table[r * w + 3 + j] - mean) * (table[r * w + 3 + j] - mean);
    e.r2 = tot > 0.0 ? 1.0 - second / tot : (second == 0.0 ? 1.0 : 0.0);
  }
  return e;
}

/// Evaluates `m` on the rows of `d` on `workers` threads. For a shard of a data set split over
/// processes (d.sharded()), `sum_over_processes(table, n)` adds the processes' per-row tables,
/// after which every process holds the evaluation of all the data set's rows; without it, or for
/// a data set every process holds whole, the rows held here are evaluated.
inline Evaluation evaluate_exactly(const Model& m, const data::Dataset& d, std::size_t workers,
                                   const std::function<void(double*, std::size_t)>& sum_over_processes = {}) {
  const bool spread = d.sharded() && sum_over_processes;
  const std::size_t total = spread ? d.total_rows() : d.rows();
  const std::size_t first = spread ? d.shard.first_row : 0;
  require(!spread || (first <= total && d.rows() <= total - first), ErrorKind::invalid_argument,
          "Trainer::evaluate: shard " + std::to_string(d.shard.index) + " holds rows [" + std::to_string(first) + ", +" +
              std::to_string(d.rows()) + ") of a data set of " + std::to_string(total) + " rows");
  const std::size_t w = scored_width(m);
  std::size_t cells = 0;
  require(!mul_overflows(total, w, cells), ErrorKind::resource,
          "Trainer::evaluate: " + std::to_string(total) + " rows x " + std::to_string(w) + " values overflow");
  std::vector<double> table(cells, 0.0);
  score_rows_parallel(m, d, first, table.data(), workers);
  if (spread) sum_over_processes(table.data(), table.size());
  return evaluation_from_table(m, table, total);
}

}  // namespace detail
}  // namespace tessera
