// bench/bench_train — times full training steps (forward, backward, clip, AdamW) of
// the GPT for each preset and thread count, after warm-up, and prints one JSON line
// per run. It measures; it asserts nothing. Each run is a child process, so its
// peak RSS is its own.
//
// Each line also has the step's GFLOP/s and its fraction of the machine's float FMA peak:
// a loop of independent multiply-adds at the widest vector width the CPU has
// (vec::fma_peak_gflops_per_core, timed by thread CPU time) times the thread count, so
// the fraction does not depend on how good the GEMM library is. For comparison it also
// gives a 1024^3 float GEMM's rate through blas::gemm with the run's Context, and names
// the CPU, the ISA of tapegrad's own kernels and the GEMM backend with its kernels.
// FLOPs per step are the usual model count,
// 3 x forward: 6 B T (12 L d^2 + d V) for the linear maps and the head, plus
// 12 L B T^2 d for attention's two T x T GEMMs (the full square, as PyTorch and
// llm.c count it; the fused op computes about half of it).
//
//   bench_train [--presets tiny,small,medium,long] [--threads 1,2] [--steps 10] [--warmup 2] [--detect-anomaly]
//               [--checkpoint-activations]
//
// --detect-anomaly runs the steps in the tape's anomaly mode (every op's output and
// gradient checked for NaN/Inf), to measure what it costs. --checkpoint-activations runs
// each preset twice, without and with the GPT's blocks checkpointed (core/checkpoint.hpp),
// and adds a line with the two ratios: peak RSS without / with, and time per step with /
// without (wall and CPU). cpu_ms_per_step is the process's CPU time (user + system) per
// timed step, which a loaded machine moves less than the wall time. pool_mib is what the
// steps' BufferPool keeps after the last step, when every activation and gradient buffer
// is back in it: the step's share of the peak RSS (the rest is the parameters, their
// gradients, the optimiser's moments and the libraries).
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
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace tapegrad;

namespace {

constexpr std::size_t kVocab = 65;  // tinyshakespeare's character count

double sgemm_gflops(const Context& context) {
  const std::size_t n = 1024;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  double best = 1e30;
  for (int r = 0; r < 6; ++r) {
    const auto start = std::chrono::steady_clock::now();
    blas::gemm(context, false, false, n, n, n, 1.0f, a.data(), b.data(), 0.0f, c.data());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (r > 0) best = std::min(best, s);  // the first warms up
  }
  return 2.0 * double(n * n * n) / best / 1e9;
}

double flops_per_step(const models::Preset& p) {
  const double B = double(p.batch), T = double(p.block_size), L = double(p.n_layer), d = double(p.d_model);
  return 6 * B * T * (12 * L * d * d + d * double(kVocab)) + 12 * L * B * T * T * d;
}

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + 1e-6 * double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

void run(const models::Preset& preset, int threads, int steps, int warmup, bool detect_anomaly, bool checkpointed) {
  const Context context{threads};
  models::GPT<float> model(preset.config(kVocab), 1);
  model.checkpoint_blocks = checkpointed;
  const auto params = model.named_parameters();
  const nn::Recipe& recipe = preset.recipe;
  nn::AdamW<float> optimizer(params, recipe.adamw);
  const auto pool = std::make_shared<BufferPool>();  // the buffers the steps recycle
  std::mt19937_64 rng(2);
  std::uniform_int_distribution<std::int64_t> token(0, kVocab - 1);
  Ids inputs = Ids::from_shape({preset.batch, preset.block_size}), targets = inputs;
  std::vector<double> ms;
  const auto loss = [&](Tape& tape) {
    tape.set_detect_anomaly(detect_anomaly);
    return model.loss(tape, inputs, targets);
  };
  double cpu_start = 0;
  for (int step = 0; step < warmup + steps; ++step) {
    if (step == warmup) cpu_start = cpu_seconds();
    for (auto& v : inputs) v = token(rng);
    for (auto& v : targets) v = token(rng);
    const auto start = std::chrono::steady_clock::now();
    nn::train_step(optimizer, recipe.lr_at(step, warmup + steps), recipe.clip_norm, loss, context, pool);
    const auto stop = std::chrono::steady_clock::now();
    if (step >= warmup) ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
  }
  const double cpu_ms = 1000 * (cpu_seconds() - cpu_start) / steps;
  const double median = bench::median(ms);
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double gflops = flops_per_step(preset) / (median / 1000) / 1e9;
  const double peak = vec::fma_peak_gflops_per_core() * threads, sgemm = sgemm_gflops(context);
  std::printf(
      "{\"preset\": \"%s\", \"threads\": %d, \"detect_anomaly\": %s, \"checkpoint_activations\": %s, "
      "\"steps\": %d, \"median_ms_per_step\": %.2f, \"min_ms_per_step\": %.2f, \"cpu_ms_per_step\": %.2f, "
      "\"tokens_per_s\": %.0f, \"peak_rss_mib\": %.1f, \"pool_mib\": %.1f, \"parameters\": %zu, \"gflops\": %.1f, "
      "\"fma_peak_gflops\": %.1f, \"fraction_of_peak\": %.2f, \"sgemm_1024_gflops\": %.1f, "
      "\"cpu\": \"%s\", \"kernel_isa\": \"%s\", \"gemm\": \"%s\"}\n",
      preset.name, threads, detect_anomaly ? "true" : "false", checkpointed ? "true" : "false", steps, median,
      *std::min_element(ms.begin(), ms.end()), cpu_ms, double(preset.batch * preset.block_size) / (median / 1000),
      double(usage.ru_maxrss) / 1024, double(pool->cached_bytes()) / (1024 * 1024), model.parameter_count(), gflops,
      peak, gflops / peak, sgemm, cpu::model_name().c_str(), vec::isa_name(vec::active_kernels().isa),
      blas::gemm_backend().c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  const auto anomaly_flag =
      std::find_if(args.begin(), args.end(), [](const char* a) { return std::strcmp(a, "--detect-anomaly") == 0; });
  const bool detect_anomaly = anomaly_flag != args.end();
  if (detect_anomaly) args.erase(anomaly_flag);
  const auto checkpoint_flag = std::find_if(args.begin(), args.end(),
                                            [](const char* a) { return std::strcmp(a, "--checkpoint-activations") == 0; });
  const bool compare_checkpointing = checkpoint_flag != args.end();
  if (compare_checkpointing) args.erase(checkpoint_flag);
  std::vector<std::string> every_preset;
  for (const auto& p : models::kPresets) every_preset.emplace_back(p.name);
  const auto opt = bench::parse_options("bench_train", "--presets", "--steps", {every_preset, {1, 2}, 10, 2},
                                        int(args.size()), args.data());
  const std::vector<std::string>& presets = opt.names;
  for (const auto& name : presets) {
    try {
      models::find_preset(name);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_train: %s\n", e.what());
      return 2;
    }
  }
  // One run in a child process (its peak RSS its own); returns its JSON line, also printed.
  auto run_child = [&](const std::string& name, int t, bool checkpointed) -> std::optional<std::string> {
    int out[2];
    if (pipe(out) != 0) return std::nullopt;
    const pid_t child = fork();
    if (child == 0) {
      close(out[0]);
      dup2(out[1], STDOUT_FILENO);
      run(models::find_preset(name), t, opt.runs, opt.warmup, detect_anomaly, checkpointed);
      std::_Exit(0);
    }
    close(out[1]);
    std::string line;
    char buffer[4096];
    for (ssize_t n; (n = read(out[0], buffer, sizeof buffer)) > 0;) line.append(buffer, std::size_t(n));
    close(out[0]);
    int status = 0;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "bench_train: the %s run with %d thread(s) failed\n", name.c_str(), t);
      return std::nullopt;
    }
    std::fputs(line.c_str(), stdout);
    std::fflush(stdout);
    return line;
  };
  auto number = [](const std::string& line, const char* key) {
    const auto at = line.find("\"" + std::string(key) + "\": ");
    return at == std::string::npos ? 0.0 : std::strtod(line.c_str() + at + std::strlen(key) + 4, nullptr);
  };
  for (const auto& name : presets)
    for (int t : opt.threads) {
      const auto plain = run_child(name, t, false);
      if (!plain) return 1;
      if (!compare_checkpointing) continue;
      const auto checkpointed = run_child(name, t, true);
      if (!checkpointed) return 1;
      std::printf("{\"preset\": \"%s\", \"threads\": %d, \"peak_rss_without_over_with_checkpointing\": %.2f, "
                  "\"time_per_step_with_over_without\": %.3f, \"cpu_time_per_step_with_over_without\": %.3f}\n",
                  name.c_str(), t, number(*plain, "peak_rss_mib") / number(*checkpointed, "peak_rss_mib"),
                  number(*checkpointed, "median_ms_per_step") / number(*plain, "median_ms_per_step"),
                  number(*checkpointed, "cpu_ms_per_step") / number(*plain, "cpu_ms_per_step"));
      std::fflush(stdout);
    }
  return 0;
}
