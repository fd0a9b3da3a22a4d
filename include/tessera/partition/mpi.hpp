// tessera/partition/mpi.hpp - Partition<Layerwise> and Partition<Columnwise> across MPI ranks
// (Reduce<MpiAllreduce>): each rank of MPI_COMM_WORLD is one worker of the same engines that run on
// threads (tessera/partition.hpp), on the MPI communicator (comm/mpi_lane.hpp).
//
// Pipelines: rank q = r * S + s runs stage s of replica r (ranks = stages x R); activations and
// gradients go between neighbouring stages as MPI messages, a stage's gradient is summed over the
// replicas of that stage. Column split: rank w holds the columns / rows worker w of the thread
// engine holds. After a fit every rank's model holds the whole trained model. A rank that throws
// tells every other (the job channel, comm/mpi_job.hpp): the job ends with a message, no hang.
#pragma once

#include "tessera/mpi.hpp"
#include "tessera/partition.hpp"
