// bench/bench_dist — data-parallel training steps (dist/DataParallel) against one process:
// for each preset, 1 process x 1 thread, 1 process x 2 threads and 2 processes x 1 thread
// (under mpirun), side by side, one JSON line per configuration and round. It measures;
// it asserts nothing.
//
//   bench_dist [--presets medium,long] [--steps 5] [--warmup 1] [--rounds 2]
//
// A step is forward, backward, the gradient all-reduce, clip and AdamW on the preset's
// global batch (each of N processes computes B/N rows). With 2 processes every step is
// timed twice over: with the all-reduce overlapping backward (what train_lm does), and
// with the buckets reduced by blocking MPI_Allreduce after backward, which gives the
// all-reduce's own time per step. `exposed_ms` is the time the overlapped step still
// spends waiting in synchronize(); `hidden` = 1 - exposed / allreduce, the share of the
// all-reduce that backward hid. (Both waits include any imbalance between the ranks.)
// mpirun runs as root only with OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1.
#include <tapegrad/dist/data_parallel.hpp>
#include <tapegrad/tapegrad.hpp>

#include "bench_args.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace tapegrad;

namespace {

constexpr std::size_t kVocab = 65;  // tinyshakespeare's character count

struct Timing {
  double step_ms = 0, sync_ms = 0;  // medians per step
};

// warmup + steps training steps; the median step time and time in synchronize().
Timing time_steps(const models::Preset& preset, models::GPT<float>& model, nn::AdamW<float>& optimizer,
                  const Context& context, bool overlap, int steps, int warmup) {
  const auto pool = std::make_shared<BufferPool>();  // the buffers the steps recycle
  dist::Communicator& comm = dist::Communicator::world();
  dist::DataParallel<float> parallel(comm, model.named_parameters(), {.overlap = overlap});
  const std::size_t rows = preset.batch / std::size_t(comm.size());
  std::mt19937_64 rng(2 + std::uint64_t(comm.rank()));
  std::uniform_int_distribution<std::int64_t> token(0, kVocab - 1);
  Ids inputs = Ids::from_shape({rows, preset.block_size}), targets = inputs;
  std::vector<double> step_ms, sync_ms;
  for (int step = 0; step < warmup + steps; ++step) {
    for (auto& v : inputs) v = token(rng);
    for (auto& v : targets) v = token(rng);
    comm.sum(0);  // start together
    const double synced_before = parallel.sync_seconds();
    const auto start = std::chrono::steady_clock::now();
    Tape tape(context, pool);
    optimizer.zero_grad();
    tape.backward(model.loss(tape, inputs, targets));
    parallel.synchronize();
    nn::clip_grad_norm(optimizer.parameters(), float(nn::Recipe{}.clip_norm), context);
    optimizer.step(context);
    const auto stop = std::chrono::steady_clock::now();
    if (step < warmup) continue;
    step_ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
    sync_ms.push_back(1000 * (parallel.sync_seconds() - synced_before));
  }
  return {bench::median(step_ms), bench::median(sync_ms)};
}

int worker(const std::string& preset_name, int threads, int steps, int warmup) {
  const Context context{threads};
  dist::Communicator& comm = dist::Communicator::world();
  const models::Preset& preset = models::find_preset(preset_name);
  models::GPT<float> model({kVocab, preset.block_size, preset.n_layer, preset.n_head, preset.d_model}, 1);
  nn::AdamW<float> optimizer(model.named_parameters());
  const Timing overlapped = time_steps(preset, model, optimizer, context, true, steps, warmup);
  const double tokens_per_s = double(preset.batch * preset.block_size) / (overlapped.step_ms / 1000);
  if (comm.size() == 1) {
    std::printf("{\"preset\": \"%s\", \"processes\": 1, \"threads\": %d, \"median_ms_per_step\": %.1f, \"tokens_per_s\": %.0f}\n",
                preset.name, threads, overlapped.step_ms, tokens_per_s);
    return 0;
  }
  const Timing blocking = time_steps(preset, model, optimizer, context, false, steps, warmup);
  if (comm.is_root())
    std::printf("{\"preset\": \"%s\", \"processes\": %d, \"threads\": %d, \"median_ms_per_step\": %.1f, \"tokens_per_s\": %.0f, "
                "\"allreduce_ms\": %.1f, \"allreduce_share_of_blocking_step\": %.3f, \"blocking_ms_per_step\": %.1f, "
                "\"exposed_ms\": %.1f, \"hidden\": %.2f, \"bytes_per_rank_per_step\": %.0f}\n",
                preset.name, comm.size(), threads, overlapped.step_ms, tokens_per_s, blocking.sync_ms,
                blocking.sync_ms / blocking.step_ms, blocking.step_ms, overlapped.sync_ms,
                1 - overlapped.sync_ms / blocking.sync_ms,
                double(model.parameter_count()) * 4 * 2 * (comm.size() - 1) / comm.size());
  std::fflush(stdout);
  return 0;
}

// Runs `argv` as a child and waits; false if it failed.
bool run_child(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  const pid_t child = fork();
  if (child == 0) {
    execvp(argv[0], argv.data());
    std::_Exit(127);
  }
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 6 && std::string(argv[1]) == "--worker")
    return worker(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5]));
  int rounds = 2;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--rounds" && i + 1 < argc) rounds = bench::positive_int("bench_dist", "--rounds", argv[++i]);
    else rest.push_back(argv[i]);
  }
  const auto opt = bench::parse_options("bench_dist", "--presets", "--steps", {{"medium", "long"}, {1, 2}, 5, 1},
                                        int(rest.size()), rest.data());
  const std::string self = "/proc/self/exe";
  char path[4096] = {};
  if (readlink(self.c_str(), path, sizeof path - 1) <= 0) return 1;
  for (int round = 1; round <= rounds; ++round)
    for (const auto& name : opt.names) {
      const std::string steps = std::to_string(opt.runs), warmup = std::to_string(opt.warmup);
      const std::vector<std::vector<std::string>> configs{
          {path, "--worker", name, "1", steps, warmup},
          {path, "--worker", name, "2", steps, warmup},
          {"mpirun", "--oversubscribe", "-np", "2", path, "--worker", name, "1", steps, warmup}};
      for (const auto& config : configs)
        if (!run_child(config)) {
          std::fprintf(stderr, "bench_dist: %s failed (%s)\n", name.c_str(), config.front().c_str());
          return 1;
        }
    }
  return 0;
}
