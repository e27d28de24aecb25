// train_lm/blas_threads.hpp — the --threads option every subcommand has.
//
// Results are bit-reproducible for a given thread count (OpenBLAS splits a GEMM
// the same way each time); a different count may change the last bits.
#pragma once

#include "usage_error.hpp"

#include <tapegrad/core/blas.hpp>

#include <algorithm>
#include <thread>

namespace train_lm {

// The machine's cores, at most 8.
inline int default_threads() { return int(std::clamp(std::thread::hardware_concurrency(), 1u, 8u)); }

// Checks --threads (1 to kMaxThreads) and hands it to BLAS.
inline void use_threads(int threads) {
  require_count("--threads", threads, kMaxThreads);
  tapegrad::blas::set_threads(threads);
}

}  // namespace train_lm
