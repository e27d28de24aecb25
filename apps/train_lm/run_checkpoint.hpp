// train_lm/run_checkpoint.hpp — the checkpoint directory of a training run.
//
//   DIR/state.safetensors   everything --resume needs, self-contained: the weights
//                           ("param.<name>"), the optimiser's buffers (AdamW's moments
//                           "m.<name>", "v.<name>"; with Muon also "momentum.<name>"),
//                           and in __metadata__ the step, the sampler's RNG state,
//                           the elapsed time and the run's settings
//   DIR/model.safetensors   the latest model (docs/contracts.md, section 2), for eval / sample / grad
//   DIR/log.csv, loss.svg   the report (report.hpp)
//
// Crash safety (docs/files.md). Each file is replaced atomically
// (io::write_file_atomically), model first, then state; both record the step. Any
// prefix of a save therefore leaves each file either the old or the new complete
// one, and model.safetensors is never older than state.safetensors: after a crash
// between the two, the model is one save ahead, and matches log.csv. --resume reads
// the state (it holds its own weights, so it never depends on the model), compares
// the two steps and notes a difference (checkpoint_pair_note); the steps from the
// state's on are trained again, bit-identically, and the next save rewrites the pair.
// Leftover ".<name>.tmp-*" files of a killed run are removed when the next run starts.
// A run holds an exclusive flock on DIR for its whole life, so two runs never share
// a directory.
#pragma once

#include "model_file.hpp"

#include <tapegrad/nn/train_step.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace train_lm {

// An exclusive flock on a directory, released when destroyed (or when the process ends).
class DirectoryLock {
 public:
  // std::runtime_error naming `what` when another process holds the lock.
  DirectoryLock(const std::filesystem::path& dir, const std::string& what);
  DirectoryLock(DirectoryLock&& other) noexcept;
  DirectoryLock& operator=(DirectoryLock&&) = delete;
  ~DirectoryLock();

 private:
  int fd_ = -1;
};

struct CheckpointDir {
  std::filesystem::path dir;

  std::filesystem::path model() const { return dir / "model.safetensors"; }
  std::filesystem::path state() const { return dir / "state.safetensors"; }
  std::filesystem::path log() const { return dir / "log.csv"; }
  std::filesystem::path loss_svg() const { return dir / "loss.svg"; }

  // True when a model or state file is there (a fresh run must not overwrite it).
  bool holds_checkpoint() const;
  // Creates the directory if needed and checks a file can be created in it;
  // std::runtime_error naming the directory otherwise. Returns the directories it
  // created, outermost first.
  std::vector<std::filesystem::path> prepare_for_writing() const;
  // After a failed run: removes what prepare_for_writing created (given) as far as
  // the directories are empty, so a run that wrote nothing leaves nothing behind.
  void remove_if_empty(const std::vector<std::filesystem::path>& created) const;
  // The run's lock on the directory (which must exist).
  DirectoryLock lock() const;
  // Removes the temporary files killed runs left beside the run's files; returns how many.
  std::size_t remove_stale_temporary_files() const;
};

// What defines a run: --resume must agree on all of it (settings_conflict).
struct RunSettings {
  Family family = Family::gpt;  // recorded as "family" for a Llama; a GPT's state is as before, without it
  GPTConfig model;
  std::size_t batch = 0;
  double lr = 0;
  std::uint64_t seed = 0;
  std::uint64_t data_fingerprint = 0;
  std::string data_source;
  tapegrad::nn::OptimizerKind optimizer = tapegrad::nn::OptimizerKind::adamw;
  double muon_lr = 0;  // with Muon: the matrices' peak lr
  // Recorded too, but allowed to change on resume (steps extends or shortens the
  // schedule; the thread count does not change the results).
  std::int64_t steps = 0;
  int threads = 1;

  io::Metadata to_metadata() const;
  static RunSettings from_metadata(const io::Safetensors& file);
};

// The first disagreement between a saved run and the options given now, as a
// message ("--batch 8 differs from the checkpoint's 12"), or "" when they agree.
std::string settings_conflict(const RunSettings& saved, const RunSettings& now);

// The training state at the end of step `step`.
struct TrainState {
  std::int64_t step = 0;
  std::mt19937_64 sampler;  // draws the training windows
  double elapsed_s = 0;     // training time so far, over all sessions
  RunSettings settings;
};

// Writes model then state, each atomically (see the top of this file).
void save_checkpoint(const CheckpointDir& dir, const LanguageModel<float>& model,
                     const tapegrad::nn::Optimizer<float>& optimizer, const TrainState& state, const Vocabulary& vocab);

// Reads DIR/state.safetensors: the settings, step, RNG state and elapsed time.
// The weights and moments go into `model` and `optimizer` by load_training_tensors,
// after the caller has checked the settings.
struct SavedState {
  io::Safetensors file;
  TrainState state;
};
SavedState read_state_file(const CheckpointDir& dir);
// "" when DIR/model.safetensors records the state's step; otherwise a note saying how
// the pair differs (missing, unreadable, another step) and what --resume does about it.
std::string checkpoint_pair_note(const CheckpointDir& dir, std::int64_t state_step);
void load_training_tensors(const SavedState& saved, const LanguageModel<float>& model,
                           tapegrad::nn::Optimizer<float>& optimizer);

}  // namespace train_lm
