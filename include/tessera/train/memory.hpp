// tessera/train/memory.hpp - the memory a fit will need, estimated before its engine is built from
// what each engine allocates (engine/replicate.hpp, engine/layerwise.hpp, engine/columnwise.hpp,
// the activation sets of model/network.hpp, the row buffers of engine/feed.hpp and the slots of
// load/prefetch.hpp), and the check that refuses, before the first step, a fit that cannot fit in
// what this process has (train/host_memory.hpp), with the numbers and what to lower.
//
// The estimate follows the engines' allocations buffer by buffer and is meant to be within a
// factor 2 of what they hold (tests/test_memory.cpp compares it with their memory() reports). It
// leaves out what exists before the fit (the data set, the model) and small fixed costs.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/core/checked.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/range.hpp"
#include "tessera/engine/common.hpp"
#include "tessera/model/architecture.hpp"
#include "tessera/optim/optimizer.hpp"
#include "tessera/partition/plan.hpp"
#include "tessera/policies.hpp"
#include "tessera/sync/concepts.hpp"
#include "tessera/train/host_memory.hpp"

namespace tessera {

/// Bytes of a fit, by what they hold.
struct MemoryParts {
  std::uint64_t parameters = 0;       ///< replicas and shares of the model's parameters
  std::uint64_t gradients = 0;        ///< gradient and gradient-sum buffers
  std::uint64_t optimizer_state = 0;  ///< momentum, Adam moments
  std::uint64_t activations = 0;      ///< activation sets and backward scratch
  std::uint64_t batches = 0;          ///< gathered rows, prefetched batches, the epoch's order
  /// Sum of the parts (saturating).
  [[nodiscard]] std::uint64_t total() const noexcept {
    std::uint64_t t = 0;
    for (std::uint64_t v : {parameters, gradients, optimizer_state, activations, batches}) t = detail::saturating_add(t, v);
    return t;
  }
  /// Adds `o`, part by part (saturating).
  MemoryParts& operator+=(const MemoryParts& o) noexcept {
    parameters = detail::saturating_add(parameters, o.parameters);
    gradients = detail::saturating_add(gradients, o.gradients);
    optimizer_state = detail::saturating_add(optimizer_state, o.optimizer_state);
    activations = detail::saturating_add(activations, o.activations);
    batches = detail::saturating_add(batches, o.batches);
    return *this;
  }
  /// "parameters 1.2 GiB, gradients 1.2 GiB, optimizer state 2.4 GiB, activations 3.0 GiB,
  /// batches 20.0 MiB", parts of 0 bytes left out.
  [[nodiscard]] std::string describe() const {
    std::string s;
    const std::pair<const char*, std::uint64_t> parts[] = {{"parameters", parameters}, {"gradients", gradients},
                                                           {"optimizer state", optimizer_state},
                                                           {"activations", activations}, {"batches", batches}};
    for (const auto& [name, bytes] : parts)
      if (bytes) s += (s.empty() ? "" : ", ") + std::string(name) + " " + detail::format_bytes(bytes);
    return s.empty() ? "nothing" : s;
  }
};

/// The memory of a fit in one process: each of its workers (with its share of what they share)
/// and what the process holds besides.
struct FitMemory {
  std::vector<MemoryParts> workers;  ///< this process's workers
  MemoryParts process_only;          ///< buffers of the process, not of one worker
  bool device = false;               ///< the buffers are in device memory (Device<Cuda>), not the host's
  /// The worker that holds the most.
  [[nodiscard]] MemoryParts largest_worker() const {
    MemoryParts m;
    for (const MemoryParts& w : workers)
      if (w.total() > m.total()) m = w;
    return m;
  }
  /// Everything this process holds.
  [[nodiscard]] MemoryParts process() const {
    MemoryParts m = process_only;
    for (const MemoryParts& w : workers) m += w;
    return m;
  }
  /// Bytes of this process, process().total().
  [[nodiscard]] std::uint64_t bytes() const { return process().total(); }
};

namespace detail {

enum class FitPartition { replicate, layerwise, columnwise };

/// What the estimate needs to know of a fit: the engine, its grid and its step.
struct FitLayout {
  FitPartition partition = FitPartition::replicate;
  std::size_t batch = 32;          ///< rows per data-parallel replica per step (as the fit uses it)
  std::size_t micro_batches = 1;
  std::size_t lanes = 1;           ///< workers of this process
  std::size_t processes = 1;
  std::size_t process = 0;         ///< this process
  std::size_t stages = 1, replicas = 1;  ///< Partition<Layerwise>
  Schedule schedule = Schedule::one_f_one_b;
  Balance balance = Balance::cost;
  StateScope scope = StateScope::local_slice;  ///< of the Sync choice
  bool shared_memory = true;       ///< the lanes of a process share one replica (threads on the host)
  std::size_t shards = 0;          ///< deterministic mode's logical shards (0: off)
  bool prefetch = false;           ///< Load<Prefetch>
  std::size_t state_buffers = 0;   ///< optimizer state per parameter (momentum 1, Adam 2)
  std::size_t rows = 0;            ///< training rows of this process (the epoch's order)
  bool device = false;             ///< buffers in device memory
};

inline std::uint64_t floats(std::uint64_t n) noexcept { return saturating_mul(n, sizeof(float)); }
inline std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) noexcept { return b ? a / b + (a % b != 0) : a; }

/// One layer as a worker holds it.
struct HeldLayer {
  std::size_t in = 0, out = 0;
  std::size_t saved_per_row = 0;  ///< what a layer kind keeps per row for its backward pass
};

/// Bytes of a Network's workspace (model/network.hpp) for `rows` rows and `slots` activation sets
/// over `layers`: the outputs of every layer per set, two backward deltas of the widest layer, a
/// row of ones and the per-row losses; the fused least-squares path keeps block partials instead.
inline std::uint64_t network_bytes(const std::vector<HeldLayer>& layers, std::size_t rows, std::size_t slots, bool fused) {
  std::uint64_t outs = 0, widest = 0;
  for (const HeldLayer& L : layers) {
    outs = saturating_add(saturating_add(outs, L.out), L.saved_per_row);
    widest = std::max<std::uint64_t>({widest, L.in, L.out});
  }
  std::uint64_t n = saturating_mul(saturating_mul(outs, rows), std::max<std::size_t>(slots, 1));
  if (fused && !layers.empty())
    n = saturating_add(n, saturating_mul(ceil_div(rows, 2048) + 1, layers.front().in + 2));
  else
    n = saturating_add(n, saturating_add(saturating_mul(2 * widest, rows), 2 * static_cast<std::uint64_t>(rows)));
  return floats(n);
}

inline std::vector<HeldLayer> held_layers(const Architecture& a, std::size_t first, std::size_t end) {
  std::vector<HeldLayer> v;
  for (std::size_t l = first; l < end; ++l)
    v.push_back({a.layers[l].in, a.layers[l].out, a.layers[l].op ? a.layers[l].op->saved_per_row(a.layers[l].in) : 0});
  return v;
}

/// Partition<Replicate>: every worker a whole replica's work; what it owns depends on the Sync
/// choice's scope and on whether the lanes share memory (engine/replicate.hpp).
inline FitMemory replicate_memory(const Architecture& a, const FitLayout& f) {
  const std::uint64_t p = a.parameter_count(), sb = f.state_buffers;
  const std::size_t workers = std::max<std::size_t>(f.lanes * f.processes, 1), lanes = std::max<std::size_t>(f.lanes, 1);
  const bool one_replica = f.shared_memory && f.scope != StateScope::replica;  // shared by the lanes
  const std::size_t shards_per_lane = f.shards ? ceil_div(f.shards, workers) : 0;
  const std::size_t rows = f.shards ? ceil_div(saturating_mul(workers, f.batch), f.shards)
                                    : ceil_div(f.batch, std::max<std::size_t>(f.micro_batches, 1));
  const std::uint64_t row_floats = a.input_dim + a.target_dim();
  FitMemory m;
  m.device = f.device;
  MemoryParts w;
  w.parameters = floats(one_replica ? ceil_div(p, lanes) : p);
  switch (f.scope) {
    case StateScope::replica: w.optimizer_state = floats(sb * p); break;
    case StateScope::local_slice: w.optimizer_state = floats(sb * (f.shared_memory ? ceil_div(p, lanes) : p)); break;
    case StateScope::global_slice: w.optimizer_state = floats(sb * ceil_div(p, workers)); break;
  }
  w.gradients = floats(f.shards ? saturating_mul(shards_per_lane, p) : p);
  w.activations = network_bytes(held_layers(a, 0, a.layers.size()), std::max<std::size_t>(rows, 1), 1,
                                a.is_linear_least_squares());
  w.batches = floats(saturating_mul(rows, row_floats));  // the rows a lane gathers
  m.workers.assign(lanes, w);
  if (one_replica) m.process_only.gradients = floats(p);  // the sum the lanes update from
  if (f.shards) m.process_only.gradients = saturating_add(m.process_only.gradients, floats(p));  // the tree's sum
  if (f.prefetch)  // two slots of this process's rows of a step
    m.process_only.batches = floats(saturating_mul(2 * row_floats, saturating_mul(lanes, f.batch)));
  return m;
}

/// Partition<Layerwise>: worker g runs stage g % S of replica g / S with the activation sets its
/// schedule keeps; lanes that share memory keep one copy of each stage (engine/layerwise.hpp).
inline FitMemory layerwise_memory(const Architecture& a, const FitLayout& f) {
  const std::size_t S = std::max<std::size_t>(f.stages, 1), R = std::max<std::size_t>(f.replicas, 1);
  const std::size_t M = std::max<std::size_t>(f.micro_batches, 1);
  const StagePlan plan = plan_stages(a, S, f.balance);
  const std::size_t rows = std::max<std::size_t>(ceil_div(f.batch, M), 1);
  const std::uint64_t sb = f.state_buffers;
  FitMemory m;
  m.device = f.device;
  const bool across = f.lanes == 1 && f.processes > 1;
  const std::size_t first = across ? f.process : 0, count = across ? 1 : f.lanes;
  for (std::size_t g = first; g < first + count; ++g) {
    const StageSpan& st = plan.stages[g % S];
    const std::uint64_t n = st.parameters();
    const std::size_t slots = f.schedule == Schedule::gpipe ? M : std::min(S - g % S, M);
    MemoryParts w;
    w.parameters = floats(f.shared_memory ? ceil_div(n, R) : n);
    w.optimizer_state = floats(sb * (f.shared_memory ? ceil_div(n, R) : n));
    w.gradients = floats(n);
    w.activations = network_bytes(held_layers(a, st.first_layer, st.end_layer), rows, slots, false);
    // per slot the input it received (or gathered from the data), and the last stage's targets
    const std::uint64_t in = a.layers[st.first_layer].in;
    w.batches = floats(saturating_add(saturating_mul(saturating_mul(slots, rows), in),
                                      st.end_layer == a.layers.size() ? saturating_mul(rows, a.target_dim()) : 0));
    m.workers.push_back(w);
  }
  if (f.shared_memory && R > 1) m.process_only.gradients = floats(a.parameter_count());  // the stages' sums
  return m;
}

/// Partition<Columnwise>: layers in pairs, the first split by output columns, the second by the
/// same input rows, a layer without a partner whole (engine/columnwise.hpp).
inline FitMemory columnwise_memory(const Architecture& a, const FitLayout& f) {
  const std::size_t T = std::max<std::size_t>(f.lanes * f.processes, 1);
  const std::size_t rows = std::max<std::size_t>(ceil_div(f.batch, std::max<std::size_t>(f.micro_batches, 1)), 1);
  const std::uint64_t sb = f.state_buffers;
  FitMemory m;
  m.device = f.device;
  const bool across = f.lanes == 1 && f.processes > 1;
  const std::size_t first = across ? f.process : 0, count = across ? 1 : f.lanes;
  const std::size_t L = a.layers.size();
  for (std::size_t w = first; w < first + count; ++w) {
    std::vector<HeldLayer> held;
    std::uint64_t n = 0;
    for (std::size_t l = 0; l < L; ++l) {
      const DenseLayer& D = a.layers[l];
      HeldLayer h{D.in, D.out};
      if (l % 2 == 0 && l + 1 < L) {
        const Range c = share(D.out, T, w);
        h.out = c.hi - c.lo;
      } else if (l % 2 == 1) {
        h.in = held.back().out;
      }
      n = saturating_add(n, saturating_add(saturating_mul(h.in, h.out), h.out));
      held.push_back(h);
    }
    MemoryParts part;
    part.parameters = floats(n);
    part.gradients = floats(n);
    part.optimizer_state = floats(saturating_mul(sb, n));
    part.activations = network_bytes(held, rows, 1, false);
    part.batches = floats(saturating_mul(rows, a.input_dim + a.target_dim()));
    m.workers.push_back(part);
  }
  return m;
}

/// The memory a fit will need in this process (bytes), before its engine is built. Besides the
/// engine's buffers: the set-up copy of the parameters and the epoch's order.
inline FitMemory estimate_fit_memory(const Architecture& a, const FitLayout& f) {
  FitMemory m = f.partition == FitPartition::replicate   ? replicate_memory(a, f)
                : f.partition == FitPartition::layerwise ? layerwise_memory(a, f)
                                                         : columnwise_memory(a, f);
  m.process_only.parameters = saturating_add(m.process_only.parameters, floats(a.parameter_count()));
  m.process_only.batches = saturating_add(m.process_only.batches, saturating_mul(f.rows, sizeof(std::size_t)));
  return m;
}

/// What to lower, for the part of the estimate that weighs most.
inline std::string memory_advice(const FitMemory& m, const FitLayout& f) {
  const MemoryParts p = m.process();
  const std::uint64_t model = saturating_add(saturating_add(p.parameters, p.gradients), p.optimizer_state);
  const std::uint64_t step = saturating_add(p.activations, p.batches);
  std::string s = "lower ";
  if (step >= model) {
    s += "batch_size (or raise micro_batches), workers, or the model's width";
  } else {
    s += f.partition == FitPartition::replicate && f.lanes > 1 ? "workers, " : "";
    s += "the model's width";
    if (f.scope == StateScope::replica && f.partition == FitPartition::replicate)
      s += ", or use Sync<EveryStep> (one replica per process, not per worker)";
    else if (f.state_buffers > 0 && f.partition == FitPartition::replicate)
      s += ", or use Sync<Sharded> (1/N of the optimizer state per worker) or a lighter optimizer";
    else if (f.partition == FitPartition::replicate)
      s += ", or split the model (Partition<Layerwise>, Partition<Columnwise>)";
  }
  return s;
}

/// Throws ErrorKind::resource when the fit needs more than `available` (unknown: no check), with
/// the estimate's breakdown and what to lower. `where` names the caller ("Trainer::fit").
inline void check_fit_memory(const FitMemory& need, const AvailableMemory& available, const std::string& where,
                             const FitLayout& f = {}) {
  if (!available.bytes || need.device) return;
  const std::uint64_t bytes = need.bytes();
  if (bytes <= *available.bytes) return;
  const std::size_t n = need.workers.size();
  const MemoryParts shared = need.process_only;
  std::string msg = where + ": the fit needs about " + format_bytes(bytes) + " of host memory (" +
                    (n == 1 ? "" : "per worker at most: ") + need.largest_worker().describe();
  if (n > 1) msg += "; x " + std::to_string(n) + " workers";
  msg += "; besides the workers: " + shared.describe() + "), " + format_bytes(*available.bytes) +
         " are available (" + available.source + "); " + memory_advice(need, f) +
         ". TESSERA_MEMORY_LIMIT=off skips this check";
  throw Error(ErrorKind::resource, msg);
}

/// The Trainer's check, right before its engine is built: the layout of the fit from its policies,
/// configuration and group, the estimate, and the check against this process's memory. A fit on
/// a device whose memory is not the host's, or with a Partition choice of the user's, is not
/// checked. Ranks that share a node share its memory: each takes its share.
/// The layout of a fit from its policies, configuration and group (null for a Partition choice
/// of the user's, whose buffers are not known here).
template <class Policies, class Group>
std::optional<FitLayout> fit_layout(const optim::Optimizer& o, const EngineConfig& cfg, Group& group, std::size_t rows) {
  using partition = typename Policies::partition;
  using device = typename Policies::device;
  using Comm = std::remove_cvref_t<decltype(group.lane(std::size_t{0}))>;
  constexpr bool host = std::same_as<device, Cpu> || requires { requires device::host_memory; };
  constexpr bool known = partition::replicates || LayerwiseChoice<partition> || std::same_as<partition, Columnwise>;
  if constexpr (!known) {
    return std::nullopt;
  } else {
    FitLayout f;
    f.device = !host;
    f.partition = partition::replicates        ? FitPartition::replicate
                  : LayerwiseChoice<partition> ? FitPartition::layerwise
                                               : FitPartition::columnwise;
    f.lanes = group.lanes();
    f.processes = group.processes();
    f.process = group.process();
    f.micro_batches = cfg.micro_batches;
    f.stages = cfg.stages;
    f.replicas = cfg.replicas;
    f.schedule = cfg.schedule;
    f.balance = cfg.balance;
    f.scope = Policies::sync::scope;
    f.shared_memory = Comm::shared_memory;
    f.shards = cfg.shards;
    f.prefetch = cfg.prefetch;
    f.state_buffers = o.state_buffers();
    f.rows = rows;
    // the batch a step uses, fitted to the data as Trainer::train_with does (fitted_batch)
    const bool sharded = !cfg.process_rows.empty();
    const std::size_t most = sharded ? *std::max_element(cfg.process_rows.begin(), cfg.process_rows.end()) : rows;
    const std::size_t spread = partition::replicates ? (sharded ? f.lanes : f.lanes * f.processes)
                               : f.partition == FitPartition::layerwise ? f.replicas
                                                                        : 1;
    const std::size_t enough = std::max<std::size_t>(ceil_div(most, std::max<std::size_t>(spread, 1)),
                                                     std::max<std::size_t>(cfg.micro_batches, 1));
    f.batch = std::min(cfg.batch, enough);
    return f;
  }
}

template <class Policies, class Group>
void check_fit_memory(const Architecture& arch, const optim::Optimizer& o, const EngineConfig& cfg, Group& group,
                      std::size_t rows, const std::string& where = "Trainer::fit") {
  using device = typename Policies::device;
  constexpr bool host = std::same_as<device, Cpu> || requires { requires device::host_memory; };
  const std::optional<FitLayout> layout = fit_layout<Policies>(o, cfg, group, rows);
  if (!host || !layout) {
    return;
  } else {
    const FitLayout& f = *layout;
    const FitMemory need = estimate_fit_memory(arch, f);
    AvailableMemory have = available_memory();
    const std::size_t neighbours = f.processes > 1 ? ranks_on_this_node() : 1;
    if (have.bytes && neighbours > 1 && !have.source.starts_with("TESSERA_MEMORY_LIMIT")) {
      *have.bytes /= neighbours;
      have.source += "; shared by " + std::to_string(neighbours) + " ranks on this node";
    }
    check_fit_memory(need, have, where, f);
  }
}

}  // namespace detail
}  // namespace tessera
