// tests/dist/rank_checks.hpp — the checks of a test program run under mpirun: each rank
// counts and prints its failures, and the job passes only if every rank passed.
#pragma once

#include <tapegrad/dist/communicator.hpp>

#include <cstdio>
#include <span>
#include <string>

namespace rank_checks {

inline int failures = 0;

inline void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL (rank %d): %s\n", tapegrad::dist::Communicator::world().rank(), what.c_str());
    ++failures;
  }
}

// Collective: 0 if every rank passed, else 1; rank 0 prints "<program>: passed" or "FAILED".
inline int finish(const char* program) {
  const auto& comm = tapegrad::dist::Communicator::world();
  int any = failures;
  comm.all_reduce_max(std::span<int>(&any, 1));
  if (comm.is_root()) std::printf("%s: %s\n", program, any ? "FAILED" : "passed");
  return any ? 1 : 0;
}

}  // namespace rank_checks
