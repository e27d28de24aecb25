// train_lm/threads.hpp — the --threads option every subcommand has.
//
// The count becomes the tapegrad::Context the subcommand's tapes and optimiser run
// with (core/parallel.hpp). Results do not depend on it: every kernel splits its work
// in blocks fixed by the shapes and adds partial sums in a fixed order.
#pragma once

#include "usage_error.hpp"

#include <tapegrad/core/parallel.hpp>

#include <algorithm>
#include <thread>

namespace train_lm {

// The machine's cores, at most 8.
inline int default_threads() { return int(std::clamp(std::thread::hardware_concurrency(), 1u, 8u)); }

// Checks --threads (1 to kMaxThreads) and returns the context to run with.
inline tapegrad::Context use_threads(int threads) {
  require_count("--threads", threads, kMaxThreads);
  return tapegrad::Context{threads};
}

}  // namespace train_lm
