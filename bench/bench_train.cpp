// bench/bench_train — times full training steps (forward, backward, clip, AdamW) of
// the GPT for each preset and thread count, after warm-up, and prints one JSON line
// per run. It measures; it asserts nothing. Each run is a child process, so its
// peak RSS is its own.
//
//   bench_train [--presets tiny,small,medium,long] [--threads 1,2] [--steps 10] [--warmup 2]
#include <tapegrad.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace tapegrad;

namespace {

constexpr std::size_t kVocab = 65;  // tinyshakespeare's character count

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

int positive_int(const char* flag, const char* text) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || v <= 0 || v > 1000000) {
    std::fprintf(stderr, "bench_train: %s needs a positive integer, got '%s'\n", flag, text);
    std::exit(2);
  }
  return int(v);
}

void run(const nn::Preset& preset, int threads, int steps, int warmup) {
  retain_freed_memory();
  blas::set_threads(threads);
  const nn::GPTConfig config{kVocab, preset.block_size, preset.n_layer, preset.n_head, preset.d_model};
  nn::GPT<float> model(config, 1);
  const auto params = model.named_parameters();
  nn::AdamW<float> optimizer(params);
  std::mt19937_64 rng(2);
  std::uniform_int_distribution<std::int64_t> token(0, kVocab - 1);
  Ids inputs = Ids::from_shape({preset.batch, preset.block_size}), targets = inputs;
  std::vector<double> ms;
  for (int step = 0; step < warmup + steps; ++step) {
    for (auto& v : inputs) v = token(rng);
    for (auto& v : targets) v = token(rng);
    const auto start = std::chrono::steady_clock::now();
    Tape tape;
    optimizer.zero_grad();
    const Tensor<float> loss = model.loss(tape, inputs, targets);
    tape.backward(loss);
    nn::clip_grad_norm(params, 1.0f);
    optimizer.step();
    const auto stop = std::chrono::steady_clock::now();
    if (step >= warmup) ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms.size() % 2 ? ms[ms.size() / 2] : (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]) / 2;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf(
      "{\"preset\": \"%s\", \"threads\": %d, \"steps\": %d, \"median_ms_per_step\": %.2f, \"min_ms_per_step\": %.2f, "
      "\"tokens_per_s\": %.0f, \"peak_rss_mib\": %.1f, \"parameters\": %zu}\n",
      preset.name, threads, steps, median, ms.front(), double(preset.batch * preset.block_size) / (median / 1000),
      double(usage.ru_maxrss) / 1024, model.parameter_count());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> presets{"tiny", "small", "medium", "long"};
  std::vector<int> threads{1, 2};
  int steps = 10, warmup = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "bench_train: %s needs a value\n", flag.c_str());
      return 2;
    }
    const char* value = argv[++i];
    if (flag == "--presets") presets = split_list(value);
    else if (flag == "--threads") {
      threads.clear();
      for (const auto& t : split_list(value)) threads.push_back(positive_int("--threads", t.c_str()));
    } else if (flag == "--steps") steps = positive_int("--steps", value);
    else if (flag == "--warmup") warmup = std::max(0, std::atoi(value));
    else {
      std::fprintf(stderr, "bench_train: unknown flag %s (known: --presets --threads --steps --warmup)\n", flag.c_str());
      return 2;
    }
  }
  for (const auto& name : presets) {
    try {
      nn::find_preset(name);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_train: %s\n", e.what());
      return 2;
    }
  }
  for (const auto& name : presets)
    for (int t : threads) {
      const pid_t child = fork();
      if (child == 0) {
        run(nn::find_preset(name), t, steps, warmup);
        std::_Exit(0);
      }
      int status = 0;
      waitpid(child, &status, 0);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::fprintf(stderr, "bench_train: the %s run with %d thread(s) failed\n", name.c_str(), t);
        return 1;
      }
    }
  return 0;
}
