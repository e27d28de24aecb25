// train_lm/usage_error.hpp — bad command-line values, caught before any work starts.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace train_lm {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Upper bounds of the command line's counts (stated in --help).
inline constexpr std::int64_t kMaxSteps = 1'000'000'000;      // --steps
inline constexpr std::int64_t kMaxSampleTokens = 1'000'000;   // sample --tokens
inline constexpr int kMaxThreads = 256;                       // --threads
// Every other count (model sizes, batch, intervals): what a checkpoint's metadata
// can hold (GPTConfig::from_metadata reads at most 9 digits).
inline constexpr std::int64_t kMaxCount = 999'999'999;

// UsageError("--steps must be positive, got 0") unless value > 0.
template <class N>
void require_positive(const std::string& option, N value) {
  if (!(value > 0)) throw UsageError(option + " must be positive, got " + std::to_string(value));
}

// UsageError("--threads must be at most 256, got 1000") unless value <= max.
template <class N, class M>
void require_at_most(const std::string& option, N value, M max) {
  if (std::cmp_greater(value, max)) throw UsageError(option + " must be at most " + std::to_string(max) + ", got " + std::to_string(value));
}

// Both of the above.
template <class N, class M>
void require_count(const std::string& option, N value, M max) {
  require_positive(option, value);
  require_at_most(option, value, max);
}

}  // namespace train_lm
