// train_lm/memory_estimate.cpp — the estimate of memory_estimate.hpp, and the limits it is compared with.
#include "memory_estimate.hpp"

#include <tapegrad/io/file.hpp>

#include <algorithm>
#include <charconv>
#include <sstream>
#include <stdexcept>

#include <sys/resource.h>
#include <unistd.h>

namespace train_lm {

namespace fs = std::filesystem;

namespace {

// A small file under /proc or /sys, or "" when it cannot be read.
std::string system_file(const fs::path& path) {
  try {
    return tapegrad::io::read_regular_file(path, {.max_bytes = 1 << 16, .pseudo_file = true});
  } catch (const tapegrad::Error&) {
    return "";
  }
}

// The number a cgroup file holds, or nothing for "max", an absent file or a value past
// 2^62 (cgroup v1 writes "no limit" as 2^63 rounded down to a page).
std::optional<double> cgroup_number(const fs::path& path) {
  const std::string text = system_file(path);
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end == text.data() || value >= (std::uint64_t{1} << 62)) return std::nullopt;
  return double(value);
}

// Field `index` (0-based) of /proc/self/statm, in bytes: 0 the virtual size, 5 data + stack.
double statm_bytes(std::size_t index) {
  std::istringstream fields(system_file("/proc/self/statm"));
  double pages = 0;
  for (std::size_t i = 0; i <= index; ++i) fields >> pages;
  return fields ? pages * double(::sysconf(_SC_PAGE_SIZE)) : 0;
}

}  // namespace

// In double: a forged config (n_layer 999999999, block_size 60000) must not overflow.
double MemoryNeed::parameter_count() const {
  const double V = double(config.vocab_size), C = double(config.block_size), L = double(config.n_layer),
               d = double(config.d_model), h = double(swiglu_hidden);
  if (swiglu_hidden > 0) return V * d + L * (4 * d * d + 3 * d * h + 2 * d) + d;
  return V * d + C * d + L * (12 * d * d + 9 * d) + 2 * d;
}

double MemoryNeed::estimate_bytes() const {
  const double V = double(config.vocab_size), L = double(config.n_layer), d = double(config.d_model),
               h = double(swiglu_hidden), B = double(batch), T = double(window);
  const double parameters = parameter_count();
  const double per_layer = swiglu_hidden > 0 ? 12 * d + 4 * h : 24 * d;
  const double kept = B * T * (per_layer * L + 3 * V), scratch = T * T;
  const double state = (2 + 2 / double(std::max<std::size_t>(1, optimizer_shards))) * parameters;
  return double(scalar_bytes) * (training ? state + 2 * (kept + scratch) : parameters + kept + scratch);
}

double physical_memory_bytes() { return double(::sysconf(_SC_PHYS_PAGES)) * double(::sysconf(_SC_PAGE_SIZE)); }

std::optional<double> cgroup_memory_limit(const fs::path& self_cgroup, const fs::path& root) {
  std::istringstream lines(system_file(self_cgroup));
  for (std::string line; std::getline(lines, line);) {
    // "0::/path" (v2) or "4:memory:/path" (v1; the controllers are a comma-separated list).
    const auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    std::string controllers = ",";  // appended: GCC 12's -Wrestrict misfires on operator+(const char*, string&&)
    controllers += line.substr(first + 1, second - first - 1);
    controllers += ",";
    const fs::path group = fs::path(line.substr(second + 1)).relative_path();
    // Inside a container the process's cgroup is often mounted as the root itself.
    const auto limit = [&](const fs::path& base, const char* file) {
      if (auto value = cgroup_number(base / group / file)) return value;
      return fs::exists(base / group / file) ? std::nullopt : cgroup_number(base / file);
    };
    if (line.substr(0, first) == "0" && controllers == ",,") {
      if (auto value = limit(root, "memory.max")) return value;
    } else if (controllers.find(",memory,") != std::string::npos) {
      if (auto value = limit(root / "memory", "memory.limit_in_bytes")) return value;
    }
  }
  return std::nullopt;
}

MemoryLimit usable_memory() {
  MemoryLimit smallest{physical_memory_bytes(), "of this machine"};
  const auto consider = [&](double bytes, const std::string& name) {
    if (bytes < smallest.bytes) smallest = {std::max(0.0, bytes), name};
  };
  const auto rlimit = [&](int resource, const char* name, double in_use) {
    struct rlimit limit {};
    if (::getrlimit(resource, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return;
    consider(double(limit.rlim_cur) - in_use, "this process may still use under its " + std::string(name) + " of " +
                                                  readable_bytes(double(limit.rlim_cur)));
  };
  rlimit(RLIMIT_AS, "address-space limit (RLIMIT_AS, ulimit -v)", statm_bytes(0));
  rlimit(RLIMIT_DATA, "data-segment limit (RLIMIT_DATA, ulimit -d)", statm_bytes(5));
  if (const auto cgroup = cgroup_memory_limit())
    consider(*cgroup, "its cgroup may use (memory.max / memory.limit_in_bytes)");
  return smallest;
}

std::string readable_bytes(double bytes) { return tapegrad::io::readable_byte_count(bytes); }

void require_memory(const MemoryNeed& need, const std::string& what) {
  const double estimate = need.estimate_bytes();
  const MemoryLimit available = usable_memory();
  if (estimate <= available.bytes) return;
  const auto& c = need.config;
  throw std::runtime_error(what + ": n_layer " + std::to_string(c.n_layer) + ", d_model " + std::to_string(c.d_model) +
                           ", n_head " + std::to_string(c.n_head) + ", vocab_size " + std::to_string(c.vocab_size) +
                           ", block_size " + std::to_string(c.block_size) + " with windows of batch " +
                           std::to_string(need.batch) + " x " + std::to_string(need.window) + " need an estimated " +
                           readable_bytes(estimate) + " of memory" + (need.training ? " to train" : "") +
                           ", more than the " + readable_bytes(available.bytes) + " " + available.name);
}

}  // namespace train_lm
