// tessera/tessera.hpp - the umbrella header: everything that needs only a C++20 compiler, Thrust,
// OpenMP and CBLAS. MPI, CUDA and NCCL come through their own headers.
#pragma once

#include "tessera/core/error.hpp"
#include "tessera/core/matrix.hpp"
#include "tessera/core/rng.hpp"
#include "tessera/data/binary.hpp"
#include "tessera/data/csv.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/data/folds.hpp"
#include "tessera/data/split.hpp"
#include "tessera/data/standardize.hpp"
#include "tessera/device/cpu.hpp"
#include "tessera/model/gradcheck.hpp"
#include "tessera/model/models.hpp"
#include "tessera/eval/metrics.hpp"
#include "tessera/optim/optimizer.hpp"
#include "tessera/optim/schedule.hpp"
#include "tessera/policies.hpp"
#include "tessera/trainer.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/select/search.hpp"
#include "tessera/tasks/pool.hpp"
