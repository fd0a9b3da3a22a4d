// tessera/engine/feed.hpp - where a lane's rows of a step come from (the data-parallel engine).
//
// On the CPU the rows are read in place when the epoch keeps the data's order, gathered into the
// lane's buffer otherwise, or - with Load<Prefetch> - taken from the batches a background
// producer gathered for the next steps (load/prefetch.hpp) while the lanes trained on this one.
// A device whose memory is not the host's gives its own feed (device/cuda/feed.hpp: pinned host
// buffers and copies on a stream of their own); the engine calls the same five functions.
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "tessera/core/range.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/load/prefetch.hpp"

namespace tessera::detail {

/// One step's rows of this process, gathered in the epoch's order.
struct HostBatch {
  std::vector<float> x, y;
};

/// Copies positions [lo, hi) of the epoch order (empty: the data's own order) into x and y.
inline void gather_rows(const data::Dataset& d, const std::vector<std::size_t>& order, std::size_t lo, std::size_t hi,
                        std::vector<float>& x, std::vector<float>& y) {
  const std::size_t c = d.cols(), t = d.target_dim;
  x.resize((hi - lo) * c);
  y.resize((hi - lo) * t);
  for (std::size_t r = lo; r < hi; ++r) {
    const std::size_t i = order.empty() ? r : order[r];
    std::copy(d.features.row(i), d.features.row(i) + c, x.data() + (r - lo) * c);
    std::copy(d.targets.data() + i * t, d.targets.data() + (i + 1) * t, y.data() + (r - lo) * t);
  }
}

/// The feed of a device whose memory is the host's.
template <class Dev>
class Feed {
 public:
  /// `max_rows`: the most rows a lane trains on in a step.
  Feed(std::size_t lanes, std::size_t max_rows) : x_(lanes), y_(lanes), batch_(lanes, nullptr), first_(lanes, 0) {
    (void)max_rows;
  }

  /// Before steps [steps.lo, steps.hi) of an epoch over `d` in `order`; `mine(s)` is this
  /// process's range of the order in step s, `lane(w, s)` lane w's.
  void begin(const data::Dataset& d, const std::vector<std::size_t>& order, Range steps, bool prefetch,
             std::function<Range(std::size_t)> mine, std::function<Range(std::size_t, std::size_t)> lane) {
    (void)lane;
    d_ = &d;
    order_ = &order;
    mine_ = std::move(mine);
    if (prefetch && steps.hi > steps.lo)
      prefetcher_ = std::make_unique<Prefetcher<HostBatch>>(steps.lo, steps.hi, x_.size(), [this](std::size_t s, HostBatch& b) {
        const Range r = mine_(s);
        gather_rows(*d_, *order_, r.lo, r.hi, b.x, b.y);
      });
  }
  /// Wakes every lane waiting for a batch (a lane failed).
  void abort() {
    if (prefetcher_) prefetcher_->abort();
  }
  /// After the epoch (also after a failure): stops the producer.
  void end() { prefetcher_.reset(); }

  /// Lane w starts step s.
  void prepare(std::size_t w, std::size_t s) {
    if (!prefetcher_) return;
    batch_[w] = &prefetcher_->acquire(s);
    first_[w] = mine_(s).lo;
  }
  /// Features and targets of positions [lo, hi) of the order (within this process's part of step
  /// s), valid until the lane's next call.
  std::pair<const float*, const float*> rows(std::size_t w, std::size_t lo, std::size_t hi) {
    const std::size_t c = d_->cols(), t = d_->target_dim;
    if (batch_[w]) return {batch_[w]->x.data() + (lo - first_[w]) * c, batch_[w]->y.data() + (lo - first_[w]) * t};
    if (order_->empty()) return {d_->features.row(lo), d_->targets.data() + lo * t};
    gather_rows(*d_, *order_, lo, hi, x_[w], y_[w]);
    return {x_[w].data(), y_[w].data()};
  }
  /// Lane w's gradient of step s is enqueued (its rows are no longer read).
  void after_gradient(std::size_t w, std::size_t s) {
    if (!prefetcher_) return;
    batch_[w] = nullptr;
    prefetcher_->release(s);
  }
  /// Lane w's update of step s is enqueued.
  void after_update(std::size_t, std::size_t) {}

 private:
  const data::Dataset* d_ = nullptr;
  const std::vector<std::size_t>* order_ = nullptr;
  std::function<Range(std::size_t)> mine_;
  std::unique_ptr<Prefetcher<HostBatch>> prefetcher_;
  std::vector<std::vector<float>> x_, y_;
  std::vector<const HostBatch*> batch_;
  std::vector<std::size_t> first_;
};

}  // namespace tessera::detail
