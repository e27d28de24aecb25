// train_lm/usage_error.hpp — bad command-line values, caught before any work starts.
#pragma once

#include <stdexcept>
#include <string>

namespace train_lm {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// UsageError("--steps must be a positive integer, got 0") unless value > 0.
template <class N>
void require_positive(const std::string& option, N value) {
  if (!(value > 0)) throw UsageError(option + " must be positive, got " + std::to_string(value));
}

}  // namespace train_lm
