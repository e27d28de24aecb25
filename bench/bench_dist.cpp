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
// The overlapped step is timed a third time with a collective deadline of 30 s (the
// waits poll MPI_Test against the clock instead of MPI_Wait: communicator.hpp):
// `deadline_ms_per_step` beside `median_ms_per_step`, and the process CPU time per step of
// both (`cpu_ms_per_step`, `deadline_cpu_ms_per_step`), which a loaded machine barely moves.
//
// The worker (what bench/bench_two_hosts.sh runs under its own mpirun) takes two more options:
//   bench_dist --worker PRESET THREADS STEPS WARMUP [--shard-optimizer] [--grad-accum K] [--polling]
// --shard-optimizer: AdamW sharded over the ranks (dist::ShardedAdamW): the gradients
// reduce-scattered in backward's hooks, the weights all-gathered after the update; the
// communication is then both (`allreduce_ms` is their blocking time, `exposed_ms` the
// reduce-scatter's wait plus the whole all-gather, which nothing hides). --grad-accum K:
// each rank's rows in K micro-batches, reduced in the last one's backward only (less of
// the step's backward is left to hide the reduction behind). `optimizer_state_bytes`
// is what one rank's optimiser holds. --polling: every timing with the 30 s deadline (the waits poll MPI_Test, as
// train_lm's do with its default --collective-timeout; without a deadline they are MPI_Wait, which on a loaded or
// oversubscribed machine can sleep far past the message's arrival), and no third timing (the deadline_* fields are 0).
// mpirun runs as root only with OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1.
#include <tapegrad/dist/sharded_adamw.hpp>
#include <tapegrad/tapegrad.hpp>

#include "bench_args.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
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
  double step_ms = 0, sync_ms = 0, cpu_ms = 0;  // medians per step
};

double process_cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return 1e3 * double(t.tv_sec) + 1e-6 * double(t.tv_nsec);
}

struct Mode {
  bool shard = false;
  std::size_t micro_steps = 1;
  bool polling = false;
};

// warmup + steps training steps; the median step time and time waiting for communication
// (synchronize(), and sharded the all-gather).
Timing time_steps(const models::Preset& preset, models::GPT<float>& model, const Context& context, bool overlap,
                  Mode mode, int steps, int warmup, std::size_t* state_bytes = nullptr) {
  const auto pool = std::make_shared<BufferPool>();  // the buffers the steps recycle
  dist::Communicator& comm = dist::Communicator::world();
  dist::DataParallel<float> parallel(comm, model.named_parameters(), {.overlap = overlap, .shard = mode.shard});
  std::unique_ptr<nn::Optimizer<float>> optimizer;
  if (mode.shard)
    optimizer = std::make_unique<dist::ShardedAdamW<float>>(parallel, comm);
  else
    optimizer = std::make_unique<nn::AdamW<float>>(model.named_parameters());
  if (state_bytes) *state_bytes = optimizer->state_bytes();
  const std::size_t rows = preset.batch / std::size_t(comm.size()) / mode.micro_steps;
  std::mt19937_64 rng(2 + std::uint64_t(comm.rank()));
  std::uniform_int_distribution<std::int64_t> token(0, kVocab - 1);
  Ids inputs = Ids::from_shape({rows, preset.block_size}), targets = inputs;
  std::vector<double> step_ms, sync_ms, cpu_ms;
  for (int step = 0; step < warmup + steps; ++step) {
    comm.sum(0);  // start together
    const double waited_before = parallel.sync_seconds() + parallel.gather_seconds();
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = process_cpu_ms();
    optimizer->zero_grad();
    for (std::size_t k = 0; k < mode.micro_steps; ++k) {
      for (auto& v : inputs) v = token(rng);
      for (auto& v : targets) v = token(rng);
      Tape tape(context, pool);
      parallel.set_accumulating(k + 1 < mode.micro_steps);
      const Tensor<float> loss = model.loss(tape, inputs, targets);
      Array<float> seed = Array<float>::from_shape(loss.value().shape());
      std::fill_n(seed.data(), seed.size(), 1.0f / float(mode.micro_steps));
      tape.backward(loss, seed);
    }
    parallel.synchronize();
    optimizer->clip_gradients(float(nn::Recipe{}.clip_norm), context);
    optimizer->step(context);
    const auto stop = std::chrono::steady_clock::now();
    const double cpu = process_cpu_ms() - cpu_start;
    if (step < warmup) continue;
    cpu_ms.push_back(cpu);
    step_ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
    sync_ms.push_back(1000 * (parallel.sync_seconds() + parallel.gather_seconds() - waited_before));
  }
  return {bench::median(step_ms), bench::median(sync_ms), bench::median(cpu_ms)};
}

int worker(const std::string& preset_name, int threads, int steps, int warmup, Mode mode) {
  const Context context{threads};
  dist::Communicator& comm = dist::Communicator::world();
  const models::Preset& preset = models::find_preset(preset_name);
  if (preset.batch % (std::size_t(comm.size()) * mode.micro_steps) != 0) {
    std::fprintf(stderr, "bench_dist: %s's batch %zu is not divisible by %d processes x %zu micro-batches\n",
                 preset.name, preset.batch, comm.size(), mode.micro_steps);
    return 1;
  }
  models::GPT<float> model({kVocab, preset.block_size, preset.n_layer, preset.n_head, preset.d_model}, 1);
  std::size_t state_bytes = 0;
  if (mode.polling) comm.set_deadline(30);
  const Timing overlapped = time_steps(preset, model, context, true, mode, steps, warmup, &state_bytes);
  const double tokens_per_s = double(preset.batch * preset.block_size) / (overlapped.step_ms / 1000);
  char mode_text[200];
  std::snprintf(mode_text, sizeof mode_text,
                "\"optimizer\": \"%s\", \"grad_accum\": %zu, \"optimizer_state_bytes\": %zu, \"waits\": \"%s\"",
                mode.shard ? "sharded" : "replicated", mode.micro_steps, state_bytes,
                mode.polling ? "polling" : "MPI_Wait");
  if (comm.size() == 1) {
    std::printf(
        "{\"preset\": \"%s\", \"processes\": 1, \"threads\": %d, %s, \"median_ms_per_step\": %.1f, "
        "\"tokens_per_s\": %.0f}\n",
        preset.name, threads, mode_text, overlapped.step_ms, tokens_per_s);
    return 0;
  }
  const Timing blocking = time_steps(preset, model, context, false, mode, steps, warmup);
  Timing deadline;
  if (!mode.polling) {
    comm.set_deadline(30);
    deadline = time_steps(preset, model, context, true, mode, steps, warmup);
    comm.set_deadline(0);
  }
  if (comm.is_root())
    std::printf(
        "{\"preset\": \"%s\", \"processes\": %d, \"threads\": %d, %s, \"median_ms_per_step\": %.1f, \"tokens_per_s\": "
        "%.0f, "
        "\"allreduce_ms\": %.1f, \"allreduce_share_of_blocking_step\": %.3f, \"blocking_ms_per_step\": %.1f, "
        "\"exposed_ms\": %.1f, \"hidden\": %.2f, \"bytes_per_rank_per_step\": %.0f, \"cpu_ms_per_step\": %.1f, "
        "\"deadline_ms_per_step\": %.1f, \"deadline_cpu_ms_per_step\": %.1f}\n",
        preset.name, comm.size(), threads, mode_text, overlapped.step_ms, tokens_per_s, blocking.sync_ms,
        blocking.sync_ms / blocking.step_ms, blocking.step_ms, overlapped.sync_ms,
        1 - overlapped.sync_ms / blocking.sync_ms,
        double(model.parameter_count()) * 4 * 2 * (comm.size() - 1) / comm.size(), overlapped.cpu_ms, deadline.step_ms,
        deadline.cpu_ms);
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
  if (argc >= 6 && std::string(argv[1]) == "--worker") {
    Mode mode;
    for (int i = 6; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--shard-optimizer")
        mode.shard = true;
      else if (arg == "--polling")
        mode.polling = true;
      else if (arg == "--grad-accum" && i + 1 < argc)
        mode.micro_steps = std::size_t(bench::positive_int("bench_dist", "--grad-accum", argv[++i]));
      else {
        std::fprintf(stderr, "bench_dist --worker: unknown option '%s'\n", arg.c_str());
        return 2;
      }
    }
    return worker(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5]), mode);
  }
  int rounds = 2;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--rounds" && i + 1 < argc)
      rounds = bench::positive_int("bench_dist", "--rounds", argv[++i]);
    else
      rest.push_back(argv[i]);
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
