// train_lm/replicas_mpi.hpp — the Replicas of an MPI job (built where CMake finds MPI).
#pragma once

#include "replicas.hpp"

namespace train_lm {

// This process's place in the job mpirun started; a job of one process when run
// without mpirun (tapegrad/dist/communicator.hpp). The first call initialises MPI and,
// in a job of several processes, makes SIGTERM / SIGINT end this process at once, rank 0
// printing the last checkpoint's step (mpirun sends SIGTERM to every rank when one fails).
// A collective that has not completed `collective_timeout_s` seconds after this rank
// entered it (0: no limit) ends the job: rank 0, or the lowest rank still there, names
// the rank and host that did not arrive and the last checkpoint.
Replicas& mpi_replicas(double collective_timeout_s);

}  // namespace train_lm
