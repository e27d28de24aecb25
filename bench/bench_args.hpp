// bench/bench_args.hpp — what the bench programs share: their command line
//   PROGRAM [NAMES_FLAG a,b] [--threads 1,2] [RUNS_FLAG 10] [--warmup 2]
// and the median of a run's timings.
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace bench {

inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

// `text` as an integer in [1, 1000000], else a message naming `program` and `flag`, and exit 2.
inline int positive_int(const char* program, const char* flag, const char* text) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || v <= 0 || v > 1000000) {
    std::fprintf(stderr, "%s: %s needs a positive integer, got '%s'\n", program, flag, text);
    std::exit(2);
  }
  return int(v);
}

struct Options {
  std::vector<std::string> names;  // presets or shapes
  std::vector<int> threads;
  int runs;  // timed steps or runs
  int warmup;
};

// Parses argv over `defaults`; --help prints the usage and exits 0; on a bad flag or
// value prints a message naming `program` and exits 2.
inline Options parse_options(const char* program, const char* names_flag, const char* runs_flag, Options defaults,
                             int argc, char** argv) {
  Options o = std::move(defaults);
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::printf("usage: %s [%s a,b] [--threads 1,2] [%s N] [--warmup N]\n", program, names_flag, runs_flag);
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s: %s needs a value\n", program, flag.c_str());
      std::exit(2);
    }
    const char* value = argv[++i];
    if (flag == names_flag) o.names = split_list(value);
    else if (flag == "--threads") {
      o.threads.clear();
      for (const auto& t : split_list(value)) o.threads.push_back(positive_int(program, "--threads", t.c_str()));
    } else if (flag == runs_flag) o.runs = positive_int(program, runs_flag, value);
    else if (flag == "--warmup") o.warmup = std::max(0, std::atoi(value));
    else {
      std::fprintf(stderr, "%s: unknown flag %s (known: %s --threads %s --warmup)\n", program, flag.c_str(), names_flag,
                   runs_flag);
      std::exit(2);
    }
  }
  return o;
}

// Sorts `ms` (non-empty) and returns its median.
inline double median(std::vector<double>& ms) {
  std::sort(ms.begin(), ms.end());
  return ms.size() % 2 ? ms[ms.size() / 2] : (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]) / 2;
}

}  // namespace bench
