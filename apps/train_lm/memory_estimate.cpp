// train_lm/memory_estimate.cpp — the estimate of memory_estimate.hpp.
#include "memory_estimate.hpp"

#include <cstdio>
#include <stdexcept>

#include <unistd.h>

namespace train_lm {

double MemoryNeed::estimate_bytes() const {
  // In double: a forged config (n_layer 999999999, block_size 60000) must not overflow.
  const double V = double(config.vocab_size), C = double(config.block_size), L = double(config.n_layer),
               d = double(config.d_model), B = double(batch), T = double(window);
  const double parameters = V * d + C * d + L * (12 * d * d + 13 * d) + 2 * d;
  const double kept = B * T * (24 * L * d + 3 * V), scratch = T * T;
  return double(scalar_bytes) * (training ? 4 * parameters + 2 * (kept + scratch) : parameters + kept + scratch);
}

double physical_memory_bytes() { return double(::sysconf(_SC_PHYS_PAGES)) * double(::sysconf(_SC_PAGE_SIZE)); }

std::string readable_bytes(double bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  std::size_t u = 0;
  while (bytes >= 1024 && u + 1 < std::size(units)) bytes /= 1024, ++u;
  char text[64];
  std::snprintf(text, sizeof text, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return text;
}

void require_memory(const MemoryNeed& need, const std::string& what) {
  const double estimate = need.estimate_bytes(), available = physical_memory_bytes();
  if (estimate <= available) return;
  const auto& c = need.config;
  throw std::runtime_error(what + ": n_layer " + std::to_string(c.n_layer) + ", d_model " + std::to_string(c.d_model) +
                           ", n_head " + std::to_string(c.n_head) + ", vocab_size " + std::to_string(c.vocab_size) +
                           ", block_size " + std::to_string(c.block_size) + " with windows of batch " +
                           std::to_string(need.batch) + " x " + std::to_string(need.window) + " need an estimated " +
                           readable_bytes(estimate) + " of memory" + (need.training ? " to train" : "") +
                           ", more than the " + readable_bytes(available) + " of this machine");
}

}  // namespace train_lm
