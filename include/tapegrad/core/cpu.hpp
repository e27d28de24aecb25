// tapegrad/core/cpu.hpp — what the CPU is and which vector instructions it has, for the
// kernels' dispatch (vecmath.hpp), the GEMM backend's checks (blas.hpp) and the figures
// bench_train and train_lm print.
#pragma once

#include <fstream>
#include <string>

namespace tapegrad::cpu {

// The CPU's model name from /proc/cpuinfo, e.g. "AMD EPYC 9R45 ..."; "unknown" elsewhere.
inline std::string model_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  return "unknown";
}

// AVX2 + FMA, and AVX-512 (F, BW, DQ, VL), as the CPU and the OS support them.
inline bool has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
inline bool has_avx512() {
  return has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}

}  // namespace tapegrad::cpu
