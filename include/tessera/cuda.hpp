// tessera/cuda.hpp - tessera on NVIDIA GPUs: Device<Cuda> (Thrust's CUDA system on a stream,
// cuBLAS) and the GPU training engine behind Trainer<..., Device<Cuda>>. Needs the CMake component
// `cuda` (find_package(tessera CONFIG COMPONENTS cuda), target tessera::cuda) and a translation
// unit compiled by nvcc (a .cu file, or LANGUAGE CUDA); the default headers never include CUDA.
//
// Trainer<Device<Cuda>> trains on one GPU (the calling thread's current device);
// Trainer<Reduce<NcclAllreduce>, Device<Cuda>> trains on several (tessera/nccl.hpp).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tessera/train/cuda_engine.hpp"  // first: its self-containment is checked through this header
#include "tessera/device/cuda/device.hpp"
#include "tessera/trainer.hpp"

namespace tessera::detail {

/// Which GPUs a Reduce choice trains on with Device<Cuda>: ThreadAllreduce, one; tessera/nccl.hpp
/// specialises this for NcclAllreduce.
template <class R>
struct GpuReduce {
  static constexpr bool available = false;
};
template <>
struct GpuReduce<ThreadAllreduce> {
  static constexpr bool available = true;
  static std::unique_ptr<GpuGroup> group(const TrainerOptions& o) {
    detail::require(o.workers <= 1, ErrorKind::invalid_argument,
                    "Trainer: Device<Cuda> with Reduce<ThreadAllreduce> trains on one GPU, so workers must be 0 or 1, "
                    "got " + std::to_string(o.workers) + "; use Reduce<NcclAllreduce> (tessera/nccl.hpp) for several GPUs");
    return std::make_unique<OneGpu>();
  }
};

/// Trainer<..., Device<Cuda>>: the same epochs, callbacks, validation and history as on the CPU,
/// trained by CudaEngine.
template <>
struct DeviceBackend<Cuda> {
  static constexpr bool available = true;

  template <class T, class... Callbacks>
  static History fit(const T& trainer, Model& model, const data::Dataset& train, const data::Dataset* validation,
                     Callbacks&... cbs) {
    using policies = typename T::policies;
    using reduce = typename policies::reduce;
    static_assert(std::same_as<reduce, ThreadAllreduce> || std::same_as<reduce, NcclAllreduce>,
                  "tessera::Trainer: Device<Cuda> trains with Reduce<ThreadAllreduce> (one GPU) or "
                  "Reduce<NcclAllreduce> (several); Reduce<MpiAllreduce> is CPU-only");
    static_assert(GpuReduce<reduce>::available,
                  "tessera::Trainer: Reduce<NcclAllreduce> needs #include <tessera/nccl.hpp> (CMake component nccl)");
    static_assert(std::same_as<typename policies::sync, EveryStep>,
                  "tessera::Trainer: Device<Cuda> trains with Sync<EveryStep> in this version; Sync<Periodic<K>> and "
                  "Sync<Sharded> are CPU-only");
    static_assert(std::same_as<typename policies::partition, Replicate>,
                  "tessera::Trainer: Device<Cuda> trains with Partition<Replicate> in this version; Partition<Layerwise> "
                  "and Partition<Columnwise> are CPU-only");
    const TrainerOptions& opt = trainer.options();
    detail::require(!opt.deterministic, ErrorKind::invalid_argument,
                    "Trainer: deterministic mode is CPU-only in this version; Device<Cuda> gives the same parameters run "
                    "after run on the same GPUs, but not the same bits as another number of GPUs");
    detail::require(!train.sharded(), ErrorKind::invalid_argument,
                    "Trainer::fit: Device<Cuda> trains on the whole data set in every process; the data set is shard " +
                        std::to_string(train.shard.index) + " of " + std::to_string(train.shard.count));

    const std::unique_ptr<GpuGroup> group = GpuReduce<reduce>::group(opt);
    try {
      return fit_on(*group, trainer, model, train, validation, cbs...);
    } catch (const CollectiveError&) {
      throw;  // raised by every GPU at the same point: nothing pending
    } catch (const std::exception& e) {
      // A lane's failure was aborted by the engine already (before it freed its lanes; abort is
      // idempotent); this covers the rest: a callback or the validation that threw on one process.
      group->abort(e.what());
      throw;
    } catch (...) {
      group->abort("an exception that is not a std::exception");
      throw;
    }
  }

 private:
  template <class Trainer, class... Callbacks>
  static History fit_on(GpuGroup& group, const Trainer& trainer, Model& model, const data::Dataset& train,
                        const data::Dataset* validation, Callbacks&... cbs) {
    using policies = typename Trainer::policies;
    const TrainerOptions& opt = trainer.options();
    CudaPlan plan;
    warn_batch_larger_than_data(opt.batch_size, group.world(), "GPU(s)", train.rows());
    plan.batch = fitted_batch(opt.batch_size, train.rows(), group.world(), opt.micro_batches);
    plan.micro_batches = opt.micro_batches;
    plan.prefetch = std::same_as<typename policies::load, Prefetch>;
    plan.overlap = opt.overlap;
    plan.bucket_floats = opt.bucket_bytes / sizeof(float);
    const Architecture& arch = model.architecture();
    const std::string signature =
        arch.describe() + " | " + std::to_string(model.parameter_count()) + " parameters | weight_decay " +
        std::to_string(model.weight_decay()) + " | data " + shape_string(train.rows(), train.cols()) + " | batch " +
        std::to_string(opt.batch_size) + " per GPU | epochs " + std::to_string(opt.epochs) + " | seed " +
        std::to_string(opt.seed) + " | " + policies::split::name + ", " + policies::load::name + " | " +
        trainer.optimizer().describe() + " | micro-batches " + std::to_string(plan.micro_batches);
    CudaEngine engine(arch, model.weight_decay(), trainer.optimizer(), model.parameters(), plan, opt.epochs, group,
                      train.cols(), train.target_dim, signature);

    const std::size_t n = train.rows();
    ProgressLine progress(group.global_lane(0) == 0 ? opt.progress : Progress::never, opt.epochs,
                          engine.steps_per_epoch(n));
    History h;
    h.samples = n;
    h.workers = group.world();
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    for (std::size_t epoch = 0; epoch < opt.epochs; ++epoch) {
      const auto e0 = clock::now();
      const auto order = detail::epoch_order<typename policies::split>(train, opt.seed, static_cast<std::uint32_t>(epoch));
      const EpochResult r = engine.epoch(train, order, epoch, progress);
      EpochRecord rec = epoch_record(r, epoch, n, arch, std::chrono::duration<double>(clock::now() - e0).count());
      const auto eval = [&](const Model& m, const data::Dataset& v) { return trainer.evaluate(m, v); };
      // every GPU holds the same parameters
      if (!close_epoch(rec, model, validation, eval, [&] { return engine.parameters(); }, progress, h, true, cbs...)) break;
    }
    h.total_seconds = std::chrono::duration<double>(clock::now() - t0).count();
    const std::vector<float> p = engine.parameters();
    std::copy(p.begin(), p.end(), model.parameters().begin());
    return h;
  }
};

}  // namespace tessera::detail
