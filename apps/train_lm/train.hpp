// train_lm/train.hpp — `train_lm train`: a character-level GPT on a text file.
//
// One step: draw B random windows of T+1 tokens from the training split, forward,
// backward, clip the gradient norm to 1 (a non-finite loss, gradient norm or
// validation loss ends the run with an error, before the weights change or a
// checkpoint is written), AdamW with the warm-up + cosine learning
// rate (docs/contracts.md, section 4). Every --eval-every steps (and at the end) the mean loss
// of a fixed set of validation windows; every --save-every steps (and at the end)
// a checkpoint (run_checkpoint.hpp). The run is a pure function of the options,
// the text and the thread count, so --resume reproduces an uninterrupted run bit
// for bit.
#pragma once

#include "threads.hpp"
#include "replicas.hpp"

#include <tapegrad/nn/train_step.hpp>

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <limits>
#include <optional>
#include <string>

namespace train_lm {

// Defaults not given by the preset table (tapegrad/models/gpt/presets.hpp).
inline constexpr std::size_t kEvalBatches = 20;     // validation batches per eval
inline constexpr std::size_t kFinalSampleTokens = 300;

// The independent random streams of one run, all from --seed. Public so that
// tests/reference/run_inputs.cpp can re-create a run's first weights and batches.
enum class Stream : std::uint64_t { init = 0, sampler = 1, validation = 2, final_sample = 3 };
inline std::uint64_t stream_seed(std::uint64_t seed, Stream s) { return seed + std::uint64_t(s); }

struct TrainOptions {
  std::filesystem::path data;  // empty: the fortunes corpus (text_data.hpp)
  std::string preset = "small";
  // Overrides of the preset; unset = the preset's value.
  std::optional<std::int64_t> steps, batch, block, layers, heads, dim;
  std::optional<double> lr;  // unset = the preset's
  std::optional<tapegrad::nn::OptimizerKind> optimizer;  // unset = the preset's (AdamW)
  std::optional<double> muon_lr;                         // unset = the preset's
  bool checkpoint_activations = false;  // the GPT's blocks through tapegrad::checkpoint: less memory, same results
  std::uint64_t seed = 1337;
  int threads = default_threads();
  std::optional<std::int64_t> eval_every;  // unset = the preset's
  std::int64_t save_every = 500;
  std::int64_t print_every = 50;  // progress lines when stderr is not a terminal
  std::optional<std::int64_t> stop_after;  // stop (with a checkpoint) after this step, as if interrupted
  std::filesystem::path out = "train_lm_out";
  bool resume = false;
  bool no_sample = false;  // skip the sample printed at the end
  // Test only (hidden option --test-fail RANK:STEP:exit|throw|stop): at the start of
  // step STEP rank RANK ends its process without a word (exit), throws, or stops itself
  // (SIGSTOP: a hung process).
  struct InjectedFailure {
    enum How { exit, throw_error, stop };
    int rank = 0;
    std::int64_t step = 0;
    How how = exit;
  };
  std::optional<InjectedFailure> test_failure;
  bool detect_anomaly = false;  // check every op's output and gradient for NaN/Inf (tapegrad anomaly mode)
  // Micro-batches per optimiser step: each process computes its rows of the global batch
  // in this many backward passes, accumulating the gradient (same update, less memory).
  std::int64_t grad_accum = 1;
  // Under mpirun: each process keeps AdamW's moments for 1/N of the parameters (ZeRO stage 1:
  // dist/sharded_adamw.hpp); the same results, the state file as without it.
  bool shard_optimizer = false;
  // Under mpirun: a collective not complete this many seconds after a rank entered it
  // ends the job (replicas_mpi.hpp); 0 waits forever.
  double collective_timeout_s = 30;
};

struct TrainSummary {
  std::int64_t first_step = 0;  // steps already done when this session started
  std::int64_t last_step = 0;   // steps done when it ended
  double final_train_loss = 0;
  double final_val_loss = std::numeric_limits<double>::quiet_NaN();  // NaN if no eval ran
  double seconds = 0;           // this session's training time (without evals and saves)
  double tokens_per_s = 0;
  bool stopped_early = false;   // by --stop-after or a signal
};

// Runs `train`. Every option and input is checked before the first step; errors
// are thrown (UsageError, DataError, io::FormatError, std::runtime_error) with a one-line message.
// `out` receives the final sample; `progress` the progress line and eval results.
//
// Data parallel (`replicas` of several processes, replicas.hpp): --batch is the global
// batch, which the number of processes must divide; every rank draws every global batch
// from the one sampler and computes its slice of rows, so the run sees the sequences one
// process would. Rank 0 alone prints, writes the log, loss.svg and checkpoints; the
// evaluation batches are shared out and their losses summed. An error on any rank after
// the start ends the whole job (Replicas::fail).
TrainSummary train(const TrainOptions& options, std::ostream& out, std::ostream& progress, bool progress_is_terminal,
                   Replicas& replicas = single_process());

// Asks a running train() to stop after the current step and save a checkpoint
// (async-signal-safe: called from the SIGINT / SIGTERM handler).
void request_stop() noexcept;

}  // namespace train_lm
