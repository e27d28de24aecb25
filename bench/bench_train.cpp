// bench/bench_train — times full training steps (forward, backward, clip, AdamW) of
// the GPT for each preset and thread count, after warm-up, and prints one JSON line
// per run. It measures; it asserts nothing. Each run is a child process, so its
// peak RSS is its own.
//
//   bench_train [--presets tiny,small,medium,long] [--threads 1,2] [--steps 10] [--warmup 2]
#include <tapegrad/tapegrad.hpp>

#include "bench_args.hpp"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace tapegrad;

namespace {

constexpr std::size_t kVocab = 65;  // tinyshakespeare's character count

void run(const nn::Preset& preset, int threads, int steps, int warmup) {
  retain_freed_memory();
  blas::set_threads(threads);
  nn::GPT<float> model(preset.model(kVocab), 1);
  const auto params = model.named_parameters();
  const nn::Recipe& recipe = preset.recipe;
  nn::AdamW<float> optimizer(params, recipe.adamw);
  std::mt19937_64 rng(2);
  std::uniform_int_distribution<std::int64_t> token(0, kVocab - 1);
  Ids inputs = Ids::from_shape({preset.batch, preset.block_size}), targets = inputs;
  std::vector<double> ms;
  for (int step = 0; step < warmup + steps; ++step) {
    for (auto& v : inputs) v = token(rng);
    for (auto& v : targets) v = token(rng);
    const auto start = std::chrono::steady_clock::now();
    nn::train_step(optimizer, recipe.lr_at(step, warmup + steps), recipe.clip_norm,
                   [&](Tape& tape) { return model.loss(tape, inputs, targets); });
    const auto stop = std::chrono::steady_clock::now();
    if (step >= warmup) ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
  }
  const double median = bench::median(ms);
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
  std::vector<std::string> every_preset;
  for (std::size_t i = 0; i < nn::kSpecPresets; ++i) every_preset.emplace_back(nn::kPresets[i].name);
  const auto opt = bench::parse_options("bench_train", "--presets", "--steps", {every_preset, {1, 2}, 10, 2}, argc, argv);
  const std::vector<std::string>& presets = opt.names;
  for (const auto& name : presets) {
    try {
      nn::find_preset(name);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_train: %s\n", e.what());
      return 2;
    }
  }
  for (const auto& name : presets)
    for (int t : opt.threads) {
      const pid_t child = fork();
      if (child == 0) {
        run(nn::find_preset(name), t, opt.runs, opt.warmup);
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
