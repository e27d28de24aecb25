// bench/bench_sample — sampling tokens/s of a random-init GPT of each preset's size (vocabulary
// 65), 512 tokens from a 1-token prompt at temperature 1, three ways:
//   full_forward  the sampler before the KV cache (train_lm's sample.cpp until then): per token,
//                 a no-grad GPT::forward over the context's last block_size tokens
//   cached        models::generate (models/gpt/sampling.hpp), keep = block_size / 2 (train_lm's default):
//                 one row per token, a refill of block_size / 2 + 1 rows when the cache is full
//   cached_exact  models::generate with keep = block_size - 1: the full_forward sampler's text token for
//                 token, one refill of block_size rows per token past the window
// The paths alternate round by round in one process, after a warm-up round, so a noisy machine
// slows all alike; one JSON line per (preset, threads, path) with the median and min seconds,
// tokens/s, the cache's size, and whether the path drew the same tokens as full_forward (same
// seed: true for cached_exact; cached differs once the window first fills).
// It measures; it asserts nothing.
//
//   bench_sample [--presets small,medium] [--threads 1] [--rounds 3] [--warmup 1]
//                [--paths full_forward,cached,cached_exact]
// --paths runs only the paths named (their lines still compare with full_forward's tokens
// when it runs, else say null): under callgrind, `--paths cached --rounds 1 --warmup 0`
// counts the instructions of one 512-token generate() alone (docs/performance.md).
#include <tapegrad/models/gpt/sampling.hpp>
#include <tapegrad/tapegrad.hpp>

#include "bench_args.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

using namespace tapegrad;

namespace {

constexpr std::size_t kVocab = 65;  // tinyshakespeare's character count
constexpr std::size_t kTokens = 512;

// The sampler before the KV cache: each token, a full forward over the last block_size tokens.
std::vector<std::int64_t> sample_by_full_forwards(const models::GPT<float>& model, std::vector<std::int64_t> context,
                                                  std::size_t n_tokens, const models::GenerateOptions& options,
                                                  std::mt19937_64& rng) {
  std::vector<std::int64_t> out;
  for (std::size_t i = 0; i < n_tokens; ++i) {
    const std::size_t T_len = std::min(context.size(), model.config.block_size);
    Ids idx = Ids::from_shape({1, T_len});
    std::copy(context.end() - std::ptrdiff_t(T_len), context.end(), idx.begin());
    Tape tape(options.context);
    NoGradGuard no_grad(tape);
    const Tensor<float> logits = model.forward(tape, idx);  // (1, T, V)
    const float* last = logits.data() + (T_len - 1) * kVocab;
    const std::int64_t id = models::draw_token(std::vector<double>(last, last + kVocab), options, rng);
    context.push_back(id);
    out.push_back(id);
  }
  return out;
}

void run(const models::Preset& preset, int threads, int rounds, int warmup, const std::vector<std::string>& paths) {
  const models::GPT<float> model(preset.config(kVocab), 1);
  const std::vector<std::int64_t> prompt{0};
  const std::size_t block = model.config.block_size;
  const std::array<const char*, 3> names{"full_forward", "cached", "cached_exact"};
  const std::array<models::GenerateOptions, 3> options{
      models::GenerateOptions{.context = Context{threads}},
      models::GenerateOptions{.keep = block / 2, .context = Context{threads}},
      models::GenerateOptions{.keep = block - 1, .context = Context{threads}}};
  std::array<std::vector<double>, 3> seconds;
  std::array<std::vector<std::int64_t>, 3> tokens;
  const auto wanted = [&](std::size_t path) { return std::find(paths.begin(), paths.end(), names[path]) != paths.end(); };
  for (int r = 0; r < warmup + rounds; ++r)
    for (std::size_t path = 0; path < names.size(); ++path) {
      if (!wanted(path)) continue;
      std::mt19937_64 rng(42);
      const auto start = std::chrono::steady_clock::now();
      if (path == 0) {
        tokens[path] = sample_by_full_forwards(model, prompt, kTokens, options[path], rng);
      } else {
        tokens[path].clear();
        models::generate(model, prompt, kTokens, options[path], rng, [&](std::int64_t id) { tokens[path].push_back(id); });
      }
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (r >= warmup) seconds[path].push_back(s);
    }
  for (std::size_t path = 0; path < names.size(); ++path) {
    if (!wanted(path)) continue;
    const double median = bench::median(seconds[path]);
    std::printf(
        "{\"preset\": \"%s\", \"threads\": %d, \"path\": \"%s\", \"tokens\": %zu, \"rounds\": %d, \"median_s\": %.3f, "
        "\"min_s\": %.3f, \"tokens_per_s\": %.0f, \"kv_cache_mib\": %.2f, \"same_tokens_as_full_forward\": %s}\n",
        preset.name, threads, names[path], kTokens, rounds, median, seconds[path].front(), double(kTokens) / median,
        path == 0 ? 0.0 : 2.0 * double(preset.n_layer * block * preset.d_model * sizeof(float)) / (1 << 20),
        !wanted(0) ? "null" : tokens[path] == tokens[0] ? "true" : "false");
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> paths{"full_forward", "cached", "cached_exact"};
  std::vector<char*> args;  // argv without --paths, for parse_options
  for (int i = 0; i < argc; ++i) {
    if (std::string(argv[i]) != "--paths") {
      args.push_back(argv[i]);
      continue;
    }
    if (i + 1 == argc) {
      std::fprintf(stderr, "bench_sample: --paths needs a value\n");
      return 2;
    }
    paths = bench::split_list(argv[++i]);
    for (const auto& p : paths)
      if (p != "full_forward" && p != "cached" && p != "cached_exact") {
        std::fprintf(stderr, "bench_sample: unknown path '%s' (known: full_forward, cached, cached_exact)\n", p.c_str());
        return 2;
      }
  }
  const auto opt =
      bench::parse_options("bench_sample", "--presets", "--rounds", {{"small", "medium"}, {1}, 3, 1}, int(args.size()), args.data());
  for (const auto& name : opt.names) {
    try {
      models::find_preset(name);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_sample: %s\n", e.what());
      return 2;
    }
  }
  for (const auto& name : opt.names)
    for (int t : opt.threads) run(models::find_preset(name), t, opt.runs, opt.warmup, paths);
  return 0;
}
