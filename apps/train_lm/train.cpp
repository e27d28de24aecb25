// train_lm/train.cpp — the training loop: plan (check everything), then run.
#include "train.hpp"

#include "evaluate.hpp"
#include "number_text.hpp"
#include "output_dir.hpp"
#include "presets.hpp"
#include "report.hpp"
#include "run_checkpoint.hpp"
#include "sample.hpp"
#include "usage_error.hpp"

#include <tapegrad/nn/train_step.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <memory>
#include <ostream>
#include <string>
#include <type_traits>
#include <vector>

namespace train_lm {

namespace {

using tapegrad::nn::OptimizerKind;
using Clock = std::chrono::steady_clock;

std::atomic<bool> stop_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free, "request_stop must be async-signal-safe");

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// The recipe's optimiser over the model's parameters. Muon leaves the embedding tables
// (looked up by id, and wte is also the tied output head) to its AdamW, as its authors do.
std::unique_ptr<tapegrad::nn::Optimizer<float>> make_optimizer(const LanguageModel<float>& model,
                                                              const tapegrad::nn::Recipe& recipe) {
  const auto params = model.named_parameters();
  if (recipe.optimizer == OptimizerKind::muon) {
    std::vector<std::string> tables;
    for (const auto& [name, p] : params)
      if (name == "wte" || name == "wpe") tables.push_back(name);
    return std::make_unique<tapegrad::nn::Muon<float>>(params, recipe.muon_options(), tables);
  }
  return std::make_unique<tapegrad::nn::AdamW<float>>(params, recipe.adamw);
}

// Everything a run needs, resolved from the options and checked before any work.
struct Plan {
  RunSettings settings;
  tapegrad::nn::Recipe recipe;  // the preset's, with --lr
  std::int64_t eval_every = 0, save_every = 0, print_every = 0;
  std::optional<std::int64_t> stop_after;
  bool final_sample = true;
  bool detect_anomaly = false;
  bool checkpoint_activations = false;
  Corpus corpus;
  CheckpointDir dir;
  std::optional<DirectoryLock> lock;       // rank 0's, on dir, for the run's life
  std::optional<SavedState> resume_from;  // rank 0's only
  std::string pair_note;                  // rank 0's: how model.safetensors differs from the state, if it does
  RowRange rows;                          // this rank's rows of each global batch
  std::size_t micro_steps = 1;            // --grad-accum: rows.count / micro_steps rows per backward
  bool shard_optimizer = false;
  bool resume = false;
};

std::size_t count_option(const std::string& name, const std::optional<std::int64_t>& given, std::size_t preset_value,
                         std::int64_t max = kMaxCount) {
  if (!given) return preset_value;
  require_count(name, *given, max);
  return std::size_t(*given);
}

// A loss or gradient norm that is NaN or infinite ends the run before the optimiser
// step and before any save, so a checkpoint never holds a diverged model.
void require_finite(const std::string& what, double value, std::int64_t step) {
  if (!std::isfinite(value))
    throw std::runtime_error(what + " became " + readable_number(value) + " at step " + std::to_string(step) +
                             "; stopping without saving (try a smaller --lr)");
}

const TrainPreset& preset_named(const std::string& name) {
  try {
    return find_train_preset(name);
  } catch (tapegrad::ConfigError& e) {
    e.about("--preset");
    throw;
  }
}

RunSettings settings_from(const TrainOptions& o, const TrainPreset& preset) {
  RunSettings s;
  s.model.n_layer = count_option("--layers", o.layers, preset.n_layer);
  s.model.n_head = count_option("--heads", o.heads, preset.n_head);
  s.model.d_model = count_option("--dim", o.dim, preset.d_model);
  s.model.block_size = count_option("--block", o.block, preset.block_size);
  s.batch = count_option("--batch", o.batch, preset.batch);
  s.steps = std::int64_t(count_option("--steps", o.steps, std::size_t(preset.steps), kMaxSteps));
  s.lr = o.lr.value_or(preset.recipe.adamw.lr);
  s.seed = o.seed;
  s.threads = o.threads;
  s.optimizer = o.optimizer.value_or(preset.recipe.optimizer);
  if (s.optimizer == OptimizerKind::muon) s.muon_lr = o.muon_lr.value_or(preset.recipe.muon_lr);
  if (!(s.lr > 0) || !std::isfinite(s.lr)) throw UsageError("--lr must be a positive number, got " + std::to_string(s.lr));
  if (o.muon_lr && s.optimizer != OptimizerKind::muon) throw UsageError("--muon-lr needs --optimizer muon");
  if (s.optimizer == OptimizerKind::muon && (!(s.muon_lr > 0) || !std::isfinite(s.muon_lr)))
    throw UsageError("--muon-lr must be a positive number, got " + std::to_string(s.muon_lr));
  if (s.model.d_model % s.model.n_head != 0)
    throw UsageError("--dim " + std::to_string(s.model.d_model) + " must be a multiple of --heads " +
                     std::to_string(s.model.n_head));
  s.family = family_named(preset.family);
  if (s.family == Family::llama && (s.model.d_model / s.model.n_head) % 2 != 0)
    throw UsageError("--dim " + std::to_string(s.model.d_model) + " / --heads " + std::to_string(s.model.n_head) +
                     " must be even for a Llama (rope turns pairs of a head's dims)");
  return s;
}

// A fresh run never writes over a checkpoint.
void refuse_a_checkpoint(const CheckpointDir& dir, bool resume) {
  if (!resume && dir.holds_checkpoint())
    throw UsageError("--out " + dir.dir.string() + " already holds a checkpoint; continue it with --resume, or choose another --out");
}

// Rank 0, after every check (a run that fails them leaves no directory behind): create
// --out, lock a new one for the run's life and judge it again (another run may have
// started in it meanwhile), and remove the temporary files dead writers left.
// Returns the directories it created.
std::vector<std::filesystem::path> take_out_dir(Plan& plan, bool resume) {
  auto created = plan.dir.prepare_for_writing();
  if (!plan.lock) {
    plan.lock.emplace(plan.dir.lock());
    refuse_a_checkpoint(plan.dir, resume);
  }
  plan.dir.remove_stale_temporary_files();
  return created;
}

// Every rank reads the data and checks the options; rank 0 alone checks and prepares
// the output directory and reads the state to resume.
Plan make_plan(const TrainOptions& o, const Replicas& replicas) {
  Plan plan;
  const TrainPreset& preset = preset_named(o.preset);
  plan.settings = settings_from(o, preset);
  plan.recipe = preset.recipe;
  plan.recipe.adamw.lr = plan.settings.lr;
  plan.recipe.optimizer = plan.settings.optimizer;
  plan.recipe.muon_lr = plan.settings.muon_lr;
  plan.rows = batch_slice(plan.settings.batch, replicas.rank(), replicas.size());
  require_positive("--grad-accum", o.grad_accum);
  plan.micro_steps = std::size_t(o.grad_accum);
  if (plan.rows.count % plan.micro_steps != 0)
    throw UsageError("--grad-accum " + std::to_string(o.grad_accum) + " must divide the " +
                     std::to_string(plan.rows.count) + " rows each process computes per step (--batch " +
                     std::to_string(plan.settings.batch) + " over " + std::to_string(replicas.size()) + " process" +
                     (replicas.size() > 1 ? "es)" : ")"));
  plan.shard_optimizer = o.shard_optimizer;
  plan.resume = o.resume;
  if (o.shard_optimizer && plan.settings.optimizer == OptimizerKind::muon)
    throw UsageError(
        "--shard-optimizer shards AdamW's moments and does not support --optimizer muon (Muon "
        "orthogonalises whole matrices, which a shard does not hold)");
  const std::int64_t steps = plan.settings.steps;
  if (o.eval_every) require_positive("--eval-every", *o.eval_every);
  require_positive("--save-every", o.save_every);
  require_positive("--print-every", o.print_every);
  if (o.stop_after && (*o.stop_after < 1 || *o.stop_after > steps))
    throw UsageError("--stop-after must be between 1 and --steps " + std::to_string(steps) + ", got " +
                     std::to_string(*o.stop_after));
  plan.eval_every = o.eval_every.value_or(preset.eval_every);
  plan.save_every = o.save_every;
  plan.print_every = o.print_every;
  plan.stop_after = o.stop_after;
  plan.final_sample = !o.no_sample;
  plan.detect_anomaly = o.detect_anomaly;
  plan.checkpoint_activations = o.checkpoint_activations;

  plan.dir = CheckpointDir{o.out};
  // Rank 0 owns --out. An existing directory is locked before what it holds is judged
  // or read; a new one once it is created, after every check (take_out_dir).
  if (replicas.is_root()) {
    std::error_code ec;
    if (std::filesystem::is_directory(plan.dir.dir, ec)) plan.lock.emplace(plan.dir.lock());
    refuse_a_checkpoint(plan.dir, o.resume);
    if (o.resume) {
      if (!std::filesystem::exists(plan.dir.state(), ec))
        throw UsageError("--resume: " + plan.dir.state().string() + " does not exist: nothing to resume");
      plan.resume_from = read_state_file(plan.dir);
      plan.pair_note = checkpoint_pair_note(plan.dir, plan.resume_from->state.step);
    }
  }
  if (!o.data.empty())
    for (const auto& written : {plan.dir.model(), plan.dir.state(), plan.dir.log(), plan.dir.loss_svg()})
      refuse_same_file(written, "--out's " + written.filename().string(), o.data, "--data");

  const Text text = o.data.empty() ? read_default_corpus() : read_text_file(o.data);
  plan.corpus = make_corpus(text, plan.settings.model.block_size);
  plan.settings.model.vocab_size = plan.corpus.vocab.size();
  plan.settings.data_fingerprint = fingerprint(text.bytes);
  plan.settings.data_source = text.source;
  require_memory({.config = plan.settings.model,
                  .batch = plan.rows.count / plan.micro_steps,  // one backward's rows on this process
                  .window = plan.settings.model.block_size,
                  .training = true,
                  .swiglu_hidden = plan.settings.family == Family::llama
                                       ? tapegrad::models::swiglu_hidden_size(plan.settings.model.d_model)
                                       : 0,
                  .optimizer_shards = plan.shard_optimizer ? std::size_t(replicas.size()) : 1},
                 "--preset " + o.preset + " with the options given");

  if (plan.resume_from) {
    const RunSettings& saved = plan.resume_from->state.settings;
    if (const auto conflict = settings_conflict(saved, plan.settings); !conflict.empty())
      throw UsageError("--resume: " + conflict + "; resume with the options of the original run");
    if (plan.resume_from->state.step > steps)
      throw UsageError("--resume: the checkpoint is at step " + std::to_string(plan.resume_from->state.step) +
                       ", past --steps " + std::to_string(steps));
  }
  return plan;
}

// Every setting that shapes the run, as text: all ranks of a job must agree on each
// (Replicas::require_same_settings) before step 1. --threads, --print-every and --out
// are left out: results do not depend on them, and rank 0 alone writes.
std::vector<Replicas::Setting> run_shape(const TrainOptions& o, const Plan& plan) {
  const RunSettings& s = plan.settings;
  const tapegrad::nn::Recipe& r = plan.recipe;
  const auto& a = r.adamw;
  auto text = [](const auto& x) {
    if constexpr (std::is_floating_point_v<std::decay_t<decltype(x)>>)
      return exact_text(double(x));
    else
      return std::to_string(x);
  };
  return {{"--preset", o.preset},
          {"--layers", text(s.model.n_layer)},
          {"--heads", text(s.model.n_head)},
          {"--dim", text(s.model.d_model)},
          {"--block", text(s.model.block_size)},
          {"vocabulary size", text(s.model.vocab_size)},
          {"the training text's fingerprint", text(s.data_fingerprint)},
          {"--batch", text(s.batch)},
          {"--steps", text(s.steps)},
          {"--lr", text(s.lr)},
          {"the recipe's betas", text(a.beta1) + ", " + text(a.beta2)},
          {"the recipe's eps", text(a.eps)},
          {"the recipe's weight decay", text(a.weight_decay)},
          {"the recipe's clip norm", text(r.clip_norm)},
          {"the recipe's warm-up steps", text(r.warmup_steps)},
          {"the recipe's minimum lr fraction", text(r.min_lr_fraction)},
          {"--seed", text(s.seed)},
          {"--eval-every", text(plan.eval_every)},
          {"--save-every", text(plan.save_every)},
          {"--stop-after", plan.stop_after ? text(*plan.stop_after) : "none"},
          {"--resume", o.resume ? "yes" : "no"},
          {"--detect-anomaly", plan.detect_anomaly ? "yes" : "no"},
          {"--grad-accum", text(plan.micro_steps)},
          {"--shard-optimizer", plan.shard_optimizer ? "yes" : "no"}};
}

// One training session: from a fresh model or a resumed state to --steps (or a stop).
class Session {
 public:
  Session(Plan plan, std::ostream& out, std::ostream& progress, bool terminal, Replicas& replicas,
          std::optional<TrainOptions::InjectedFailure> test_failure)
      : replicas_(replicas),
        test_failure_(test_failure),
        plan_(std::move(plan)),
        out_(out),
        model_(plan_.settings.family, plan_.settings.model, stream_seed(plan_.settings.seed, Stream::init)),
        optimizer_(plan_.shard_optimizer ? replicas_.sharded_adamw(model_, plan_.recipe.adamw)
                                         : make_optimizer(model_, plan_.recipe)),
        progress_(progress, terminal, plan_.settings.steps, plan_.print_every),
        log_(restore_then_open_log()) {
    state_.settings = plan_.settings;
    context_ = use_threads(plan_.settings.threads);
    model_.set_checkpoint_blocks(plan_.checkpoint_activations);
    if (plan_.resume_from) {
      const TrainState& saved = plan_.resume_from->state;
      state_.step = saved.step;
      state_.sampler = saved.sampler;
      state_.elapsed_s = saved.elapsed_s;
      describe_resume(saved.settings);
      plan_.resume_from.reset();  // the saved tensors are no longer needed
    } else {
      state_.sampler.seed(stream_seed(plan_.settings.seed, Stream::sampler));
    }
    replicas_.share_start(model_, *optimizer_, state_);
    describe_optimizer_state();
  }

  TrainSummary run() {
    TrainSummary summary;
    summary.first_step = state_.step;
    const std::int64_t steps = plan_.settings.steps;
    progress_.message("train_lm: " + describe_model() + "; step " + std::to_string(state_.step) + " of " +
                      std::to_string(steps) +
                      (replicas_.size() > 1 ? "; data parallel over " + std::to_string(replicas_.size()) + " processes" : ""));
    progress_.message("train_lm: " + tapegrad::blas::machine_summary());
    if (const std::string slow = tapegrad::blas::generic_kernel_warning(); !slow.empty())
      progress_.message("train_lm: warning: " + slow);
    if (state_.step == 0) evaluate();
    const auto session_start = Clock::now();
    double step_seconds = 0;
    std::int64_t last_saved = -1;
    while (state_.step < steps) {
      const auto step_start = Clock::now();
      summary.final_train_loss = run_training_step();
      step_seconds += seconds_since(step_start);
      const std::int64_t done_here = state_.step - summary.first_step;
      const double tokens_per_s = double(done_here * tokens_per_step()) / step_seconds;
      const double wall = seconds_since(session_start);
      log_.append({"train", state_.step, summary.final_train_loss, current_lr_, tokens_per_s, state_.elapsed_s + wall});
      progress_.update(state_.step, summary.final_train_loss, current_lr_, tokens_per_s,
                       wall / double(done_here) * double(steps - state_.step));
      if (state_.step % plan_.eval_every == 0 || state_.step == steps) summary.final_val_loss = evaluate(tokens_per_s, wall);
      const bool stop = stop_requested.load() || (plan_.stop_after && state_.step == *plan_.stop_after);
      if (state_.step % plan_.save_every == 0 || state_.step == steps || stop) {
        save(state_.elapsed_s + seconds_since(session_start));
        last_saved = state_.step;
      }
      if (stop) {
        summary.stopped_early = state_.step < steps;
        break;
      }
    }
    progress_.finish();
    summary.last_step = state_.step;
    summary.seconds = step_seconds;
    summary.tokens_per_s = step_seconds > 0 ? double((state_.step - summary.first_step) * tokens_per_step()) / step_seconds : 0;
    if (last_saved < 0) save(state_.elapsed_s);  // resumed a finished run: refresh the report
    write_loss_svg();
    replicas_.finish_together();
    finish(summary);
    return summary;
  }

 private:
  // A resumed run's weights and moments are loaded (and so validated) before the
  // log is cut back to the saved step: a bad state file leaves log.csv untouched.
  TrainLog restore_then_open_log() {
    if (!replicas_.is_root()) {
      if (plan_.resume && plan_.shard_optimizer) optimizer_->load_state({}, 0);  // rank 0's moments, scattered
      return TrainLog::unwritten();
    }
    if (!plan_.resume_from) return TrainLog::create(plan_.dir.log());
    load_training_tensors(*plan_.resume_from, model_, *optimizer_);
    return TrainLog::resume(plan_.dir.log(), plan_.resume_from->state.step);
  }

  std::int64_t tokens_per_step() const { return std::int64_t(plan_.settings.batch * plan_.settings.model.block_size); }

  // nn::train_step on this rank's rows of a random batch; returns the batch loss. Data
  // parallel (replicas.hpp): the loss is the mean over the ranks, checked on every rank
  // alike before any backward, and backward returns with the ranks' mean gradients
  // (dist::DataParallel completes the reduction in its last gradient-final hook), so the
  // clip and the update are the same on every rank.
  double run_training_step() {
    inject_test_failure();
    const Batch batch = random_batch(plan_.corpus.train, plan_.settings.batch, plan_.settings.model.block_size,
                                     state_.sampler, plan_.rows);
    current_lr_ = plan_.recipe.lr_at(state_.step, plan_.settings.steps);
    const std::size_t micro_steps = plan_.micro_steps, rows = plan_.rows.count / micro_steps;
    double loss = 0;  // the mean of the micro-batches' global losses
    const auto result = tapegrad::nn::train_step(
        *optimizer_, plan_.recipe.optimizer_lr(current_lr_), plan_.recipe.clip_norm, micro_steps,
        [&](tapegrad::Tape& tape, std::size_t k) {
      tape.set_detect_anomaly(plan_.detect_anomaly);
      const auto local = micro_steps == 1
                             ? model_.loss(tape, batch.inputs, batch.targets)
                             : model_.loss(tape, micro_rows(batch.inputs, k, rows), micro_rows(batch.targets, k, rows));
      loss += replicas_.sum(local.item()) / replicas_.size() / double(micro_steps);
      require_finite("the training loss", loss, state_.step + 1);
      return local;
        },
        [&](std::size_t k) { replicas_.set_accumulating(k + 1 < micro_steps); }, context_, pool_);
    replicas_.require_gradients_averaged();
    require_finite("the gradient norm", result.grad_norm, state_.step + 1);
    ++state_.step;
    return loss;
  }

  // Rows [k * rows, (k + 1) * rows) of `ids`.
  static tapegrad::Ids micro_rows(const tapegrad::Ids& ids, std::size_t k, std::size_t rows) {
    const std::size_t width = ids.shape()[1];
    tapegrad::Ids part = tapegrad::Ids::from_shape({rows, width});
    std::copy_n(ids.data() + k * rows * width, rows * width, part.data());
    return part;
  }

  double evaluate(double tokens_per_s = 0, double wall = 0) {
    const double loss = replicas_.sum(validation_loss(
        model_, plan_.corpus.val, plan_.settings.batch, plan_.settings.model.block_size, kEvalBatches,
        stream_seed(plan_.settings.seed, Stream::validation), context_,
        {std::size_t(replicas_.rank()), std::size_t(replicas_.size())}));
    require_finite("the validation loss", loss, state_.step);  // before it is logged, and so before any save
    char line[128];
    std::snprintf(line, sizeof line, "step %lld: val loss %.4f, perplexity %.2f", (long long)state_.step, loss, std::exp(loss));
    progress_.message(line);
    log_.append({"val", state_.step, loss, current_lr_, tokens_per_s, state_.elapsed_s + wall});
    return loss;
  }

  void save(double elapsed_s) {
    if (!replicas_.is_root()) {
      if (plan_.shard_optimizer) optimizer_->state();  // the moments, gathered on rank 0
      return replicas_.checkpoint_saved(plan_.dir.dir, state_.step);
    }
    TrainState snapshot = state_;
    snapshot.elapsed_s = elapsed_s;
    save_checkpoint(plan_.dir, model_, *optimizer_, snapshot, plan_.corpus.vocab);
    write_loss_svg();
    replicas_.checkpoint_saved(plan_.dir.dir, state_.step);
  }

  // Under mpirun: the bytes of optimiser state rank 0 holds, and all ranks together
  // (--shard-optimizer: about 1/N, and as much as one replica's moments).
  void describe_optimizer_state() {
    if (replicas_.size() == 1) return;
    const std::size_t mine = optimizer_->state_bytes();
    const double all = replicas_.sum(double(mine));
    char line[200];
    std::snprintf(line, sizeof line,
                  "train_lm: optimiser state %zu bytes on rank 0, %.0f on the %d processes together%s", mine, all,
                  replicas_.size(), plan_.shard_optimizer ? " (sharded)" : " (replicated)");
    progress_.message(line);
  }

  void inject_test_failure() const {
    if (!test_failure_ || test_failure_->rank != replicas_.rank() || test_failure_->step != state_.step + 1) return;
    if (test_failure_->how == TrainOptions::InjectedFailure::exit) std::_Exit(3);
    if (test_failure_->how == TrainOptions::InjectedFailure::stop) {
      std::raise(SIGSTOP);  // as `kill -STOP`: the process stays, silent, until it is killed
      return;
    }
    throw std::runtime_error("injected failure (--test-fail) at step " + std::to_string(state_.step + 1));
  }

  void write_loss_svg() const {
    if (!replicas_.is_root()) return;
    io::write_file_atomically(plan_.dir.loss_svg(), loss_svg(log_.rows(), "train_lm: " + describe_model()));
  }

  std::string describe_model() const {
    const auto& m = plan_.settings.model;
    return std::string(plan_.settings.family == Family::gpt ? "GPT, " : "Llama, ") +
           (plan_.settings.optimizer == OptimizerKind::muon ? "Muon, " : "") + std::to_string(m.n_layer) +
           " layers, " + std::to_string(m.n_head) + " heads, d_model " + std::to_string(m.d_model) + ", block " +
           std::to_string(m.block_size) + ", vocab " + std::to_string(m.vocab_size) + ", batch " +
           std::to_string(plan_.settings.batch) + ", " + std::to_string(model_.parameter_count()) + " parameters";
  }

  void describe_resume(const RunSettings& saved) {
    progress_.message("train_lm: resuming " + plan_.dir.dir.string() + " at step " + std::to_string(state_.step));
    if (!plan_.pair_note.empty()) progress_.message(plan_.pair_note);
    if (saved.steps != plan_.settings.steps)
      progress_.message("note: --steps " + std::to_string(plan_.settings.steps) + " differs from the original " +
                        std::to_string(saved.steps) + ": the learning-rate schedule changes from here on" +
                        (std::min(saved.steps, plan_.settings.steps) < plan_.recipe.warmup_steps
                             ? ", and so may the warm-up, which lasts min(" + std::to_string(plan_.recipe.warmup_steps) +
                                   ", --steps) steps"
                             : std::string()));
    // A different --threads needs no note: results do not depend on it (core/parallel.hpp).
  }

  void finish(const TrainSummary& summary) {
    const std::string where = plan_.dir.dir.string();
    if (summary.stopped_early) {
      progress_.message("stopped after step " + std::to_string(state_.step) + " of " +
                        std::to_string(plan_.settings.steps) + "; checkpoint in " + where +
                        "; continue with the same options and --resume");
      return;
    }
    char line[200];
    std::snprintf(line, sizeof line, "done: %lld steps, %.1f ms/step, %.0f tokens/s; model, log.csv and loss.svg in %s",
                  (long long)state_.step, summary.last_step > summary.first_step
                      ? 1000 * summary.seconds / double(summary.last_step - summary.first_step) : 0.0,
                  summary.tokens_per_s, where.c_str());
    progress_.message(line);
    if (!plan_.final_sample || !replicas_.is_root()) return;
    SamplingOptions sampling{.tokens = kFinalSampleTokens, .temperature = 1.0, .top_k = 0,
                             .seed = stream_seed(plan_.settings.seed, Stream::final_sample), .context = context_};
    out_ << "--- sample ---\n";
    stream_sample(model_, plan_.corpus.vocab, "", sampling, out_);
  }

  Replicas& replicas_;
  std::optional<TrainOptions::InjectedFailure> test_failure_;
  Plan plan_;
  std::ostream& out_;
  LanguageModel<float> model_;
  std::unique_ptr<tapegrad::nn::Optimizer<float>> optimizer_;
  tapegrad::Context context_;  // --threads
  // The buffers the steps recycle (core/memory.hpp): the second step allocates nothing new.
  std::shared_ptr<tapegrad::BufferPool> pool_ = std::make_shared<tapegrad::BufferPool>();
  Progress progress_;
  TrainLog log_;
  TrainState state_;
  double current_lr_ = 0;
};

}  // namespace

TrainSummary train(const TrainOptions& options, std::ostream& out, std::ostream& progress, bool progress_is_terminal,
                   Replicas& replicas) {
  stop_requested = false;
  use_threads(options.threads);  // checked before anything is read
  std::optional<Plan> plan;
  std::string failed;  // a rank's plan error: all ranks learn of it together, before any work
  try {
    plan.emplace(make_plan(options, replicas));
  } catch (const std::exception& e) {
    if (replicas.size() == 1) throw;
    failed = e.what();
  }
  replicas.require_all_ok(failed);
  const std::uint64_t data = plan->settings.data_fingerprint;
  replicas.require_all_ok(replicas.root_value(data) == data ? "" : plan->settings.data_source +
                          " is not the text rank 0 read (the contents differ): every machine needs the same data file");
  replicas.require_same_settings(run_shape(options, *plan));
  std::vector<std::filesystem::path> created;  // by this run: removed again if it fails before writing anything
  const CheckpointDir dir = plan->dir;
  try {
    if (replicas.is_root()) created = take_out_dir(*plan, options.resume);
    return Session(std::move(*plan), out, progress, progress_is_terminal, replicas, options.test_failure).run();
  } catch (const std::exception& e) {
    dir.remove_if_empty(created);  // the Session, and with it the lock, is gone
    if (replicas.size() > 1) replicas.fail(e.what());
    throw;
  }
}

Replicas& single_process() {
  static Replicas one;
  return one;
}

RowRange batch_slice(std::size_t batch, int rank, int size) {
  if (batch % std::size_t(size) != 0)
    throw UsageError("--batch " + std::to_string(batch) + " (the global batch) must be divisible by the number of processes " +
                     std::to_string(size) + ", so that each computes an equal slice");
  const std::size_t rows = batch / std::size_t(size);
  return {std::size_t(rank) * rows, rows};
}

void request_stop() noexcept { stop_requested = true; }

}  // namespace train_lm
