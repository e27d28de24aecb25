// train_lm — train, evaluate and sample a character-level GPT (docs/contracts.md, section 3).
//
//   train_lm train  [--data FILE] [--preset NAME] [overrides] [--out DIR] [--resume]
//   train_lm eval   --checkpoint MODEL --data FILE [--block T]
//   train_lm sample --checkpoint MODEL [--prompt TEXT] [--tokens N] [--temperature X] [--top-k K] [--seed S]
//   train_lm grad   --checkpoint W --batch BATCH --out G
//   train_lm graph  [--preset NAME] [--layers N] [--out FILE]   one training step's tape for Graphviz
//   train_lm presets [--json]      the preset table (nn/presets.hpp); --json for other programs
//
// This file only maps the command line onto the library (train.hpp, evaluate.hpp,
// sample.hpp, grad.hpp); every error reaches main as one line on stderr and exit 1.
#include "evaluate.hpp"
#include "grad.hpp"
#include "graph.hpp"
#if TRAIN_LM_WITH_MPI
#include "replicas_mpi.hpp"
#endif
#include "number_text.hpp"
#include "presets.hpp"
#include "sample.hpp"
#include "train.hpp"
#include "usage_error.hpp"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <tapegrad/core/error.hpp>

#include <csignal>
#include <signal.h>
#include <cstdio>
#include <iostream>
#include <limits>
#include <unistd.h>

using namespace train_lm;

namespace {

// The recipe in words.
std::string describe(const tapegrad::nn::Recipe& r) {
  const auto& a = r.adamw;
  return "AdamW (lr " + readable_number(a.lr) + ", betas " + readable_number(a.beta1) + ", " + readable_number(a.beta2) +
         ", eps " + readable_number(a.eps) + ", weight decay " + readable_number(a.weight_decay) +
         " on matrices), linear warm-up over " + std::to_string(r.warmup_steps) + " steps then cosine decay to lr * " +
         readable_number(r.min_lr_fraction) + ", gradient norm clipped to " + readable_number(r.clip_norm);
}

// One line per preset; the SPEC's four share one recipe, stated once after them.
std::string preset_list() {
  std::string text;
  for (std::size_t i = 0; i < kTrainPresets.size(); ++i) {
    const auto& p = kTrainPresets[i];
    text += "\n  " + std::string(p.name) + ": " + (std::string(p.family) == "gpt" ? "" : std::string(p.family) + ", ") +
            std::to_string(p.n_layer) + " layers, " + std::to_string(p.n_head) + " heads, d_model " + std::to_string(p.d_model) + ", block " + std::to_string(p.block_size) + ", batch " +
            std::to_string(p.batch) + ", " + std::to_string(p.steps) + " steps, eval every " +
            std::to_string(p.eval_every) + " (" + p.purpose + ")";
    if (i >= kLibraryPresets) text += "; " + describe(p.recipe);
  }
  return text + "\nThe recipe of the SPEC's four: " + describe(kTrainPresets.front().recipe) + ".";
}

// The preset table for other programs (scripts/reference_torch.py): one JSON object
// per preset, keyed by name.
std::string presets_json() {
  nlohmann::ordered_json all = nlohmann::ordered_json::object();
  for (const auto& p : kTrainPresets) {
    const auto& r = p.recipe;
    all[p.name] = {{"n_layer", p.n_layer}, {"n_head", p.n_head}, {"d_model", p.d_model}, {"block_size", p.block_size},
                   {"batch", p.batch}, {"steps", p.steps}, {"lr", r.adamw.lr}, {"beta1", r.adamw.beta1},
                   {"beta2", r.adamw.beta2}, {"eps", r.adamw.eps}, {"weight_decay", r.adamw.weight_decay},
                   {"clip_norm", r.clip_norm}, {"warmup_steps", r.warmup_steps},
                   {"min_lr_fraction", r.min_lr_fraction}, {"init_stddev", tapegrad::nn::kInitStddev},
                   {"eval_every", p.eval_every}, {"purpose", p.purpose}, {"family", p.family}};
  }
  return all.dump(2);
}

// A whole number from `min` to `max`, checked on the text before CLI11 converts it
// (CLI11 would wrap "-1" into a huge unsigned number and saturate "99999999999999999999").
// `range` describes [min, max] in --help and in the error.
template <class N>
CLI::Validator whole_number(N min, N max, std::string range = "") {
  if (range.empty()) range = std::to_string(min) + " to " + std::to_string(max);
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        const auto value = parse_number<N>(text);
        if (value && *value >= min && *value <= max) return "";
        return "must be a whole number from " + range + ", got '" + text + "'";
      },
      range);
}

// A count: 1 to max (kMaxCount when not given).
CLI::Validator positive_count(std::int64_t max = kMaxCount) { return whole_number<std::int64_t>(1, max); }

const CLI::Validator kSeed = whole_number<std::uint64_t>(0, std::numeric_limits<std::uint64_t>::max(), "0 to 2^64-1");

CLI::Option* add_threads(CLI::App& cmd, int& threads) {
  return cmd.add_option("--threads", threads, "threads for every kernel (results do not depend on it)")
      ->check(whole_number(1, kMaxThreads))
      ->capture_default_str();
}

void add_train(CLI::App& app, TrainOptions& o) {
  CLI::App* cmd = app.add_subcommand("train", "train a character-level GPT or Llama (the preset says which) on a text file");
  cmd->footer("Presets:" + preset_list() +
              "\nDIR receives model.safetensors, state.safetensors (for --resume), log.csv and loss.svg.");
  cmd->add_option("--data", o.data, "UTF-8 text file (default: the fortune files in " + kDefaultCorpusDir.string() + ")")
      ->type_name("FILE");
  std::string names;
  for (const auto& p : kTrainPresets) names += (names.empty() ? "" : ", ") + std::string(p.name);
  cmd->add_option("--preset", o.preset, names + " (train_lm presets lists them)")->capture_default_str();
  cmd->add_option("--steps", o.steps, "total optimisation steps (default: the preset's)")
      ->check(positive_count(kMaxSteps));
  cmd->add_option("--batch", o.batch, "sequences per step (default: the preset's)")->check(positive_count());
  cmd->add_option("--block", o.block, "context length T (default: the preset's)")->check(positive_count());
  cmd->add_option("--layers", o.layers, "transformer blocks (default: the preset's)")->check(positive_count());
  cmd->add_option("--heads", o.heads, "attention heads (default: the preset's)")->check(positive_count());
  cmd->add_option("--dim", o.dim, "d_model (default: the preset's)")->check(positive_count());
  cmd->add_option("--lr", o.lr, "peak learning rate (default: the preset's); with Muon, of the embeddings, gains and biases");
  cmd->add_option_function<std::string>(
         "--optimizer",
         [&o](const std::string& name) {
           o.optimizer = name == "muon" ? tapegrad::nn::OptimizerKind::muon : tapegrad::nn::OptimizerKind::adamw;
         },
         "adamw (default) or muon: Muon for the weight matrices, AdamW for the rest")
      ->check(CLI::IsMember({"adamw", "muon"}));
  cmd->add_option("--muon-lr", o.muon_lr, "with --optimizer muon: the weight matrices' peak learning rate (default: the "
                                          "preset's, 0.02 unless it says otherwise)");
  cmd->add_flag("--checkpoint-activations", o.checkpoint_activations,
                "keep only the input of each block but the last for backward and run its forward again there: less memory, the same "
                "results, 1.2x to 1.4x the time per step (docs/checkpointing.md)");
  cmd->add_option("--seed", o.seed, "seed for initialisation, batches and the final sample")
      ->check(kSeed)
      ->capture_default_str();
  add_threads(*cmd, o.threads);
  cmd->add_option("--eval-every", o.eval_every, "validation loss every N steps and at the end (default: the preset's)")
      ->check(positive_count());
  cmd->add_option("--save-every", o.save_every, "checkpoint every N steps (and at the end)")
      ->check(positive_count())
      ->capture_default_str();
  cmd->add_option("--print-every", o.print_every, "progress line every N steps when stderr is not a terminal")
      ->check(positive_count())
      ->capture_default_str();
  cmd->add_option("--stop-after", o.stop_after, "stop after step N with a checkpoint, as if interrupted (then --resume)")
      ->check(positive_count(kMaxSteps));
  cmd->add_option("--out", o.out, "checkpoint directory")->type_name("DIR")->capture_default_str();
  cmd->add_flag("--resume", o.resume, "continue the run in DIR to --steps in total (same options as before)");
  cmd->add_flag("--no-sample", o.no_sample, "skip the sample printed at the end");
  // Test only, hidden from --help: RANK:STEP:exit (the process ends without a word,
  // as a crashed one), RANK:STEP:throw (an error) or RANK:STEP:stop (SIGSTOP, as a hung
  // one), at the start of step STEP.
  cmd->add_option_function<std::string>("--test-fail", [&o](const std::string& text) {
       TrainOptions::InjectedFailure f;
       char how[8] = {};
       long long step = 0;
       if (std::sscanf(text.c_str(), "%d:%lld:%7s", &f.rank, &step, how) != 3 || f.rank < 0 || step < 1 ||
           (std::string(how) != "exit" && std::string(how) != "throw" && std::string(how) != "stop"))
         throw CLI::ValidationError("--test-fail", "expected RANK:STEP:exit, RANK:STEP:throw or RANK:STEP:stop, got '" +
                                                       text + "'");
       f.step = step;
       using How = TrainOptions::InjectedFailure::How;
       f.how = std::string(how) == "exit" ? How::exit : std::string(how) == "throw" ? How::throw_error : How::stop;
       o.test_failure = f;
     })->group("");
  cmd->add_option("--grad-accum", o.grad_accum,
                  "micro-batches per step: each process computes its rows of the batch in N backward passes, "
                  "accumulating the gradient (the same update in less memory; under mpirun one all-reduce per step)")
      ->type_name("N")
      ->check(positive_count())
      ->capture_default_str();
  cmd->add_flag("--shard-optimizer", o.shard_optimizer,
                "under mpirun: each process keeps AdamW's moments for 1/N of the parameters (gradients "
                "reduce-scattered, weights all-gathered: the same results and bytes per step, 1/N of the optimiser "
                "memory); AdamW only");
  cmd->add_option("--collective-timeout", o.collective_timeout_s,
                  "under mpirun: a rank that has not reached a collective (the gradient all-reduce, a loss sum) this "
                  "many seconds after another ends the job, naming it (0: wait forever)")
      ->type_name("SECONDS")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  cmd->add_flag("--detect-anomaly", o.detect_anomaly,
                "check every op's output and gradient for NaN/Inf; the first one ends the run with an error naming the "
                "op, its module and the index (slower)");
}

void add_eval(CLI::App& app, EvalOptions& o) {
  CLI::App* cmd = app.add_subcommand("eval", "loss and perplexity of a checkpoint on a text file");
  cmd->add_option("--checkpoint", o.checkpoint, "model.safetensors of a train run")->type_name("FILE")->required();
  cmd->add_option("--data", o.data, "UTF-8 text file")->type_name("FILE")->required();
  cmd->add_option("--block", o.block, "window length (default: the checkpoint's block size)")->check(positive_count());
  cmd->add_option("--batch", o.batch, "windows per forward pass")->check(positive_count())->capture_default_str();
  add_threads(*cmd, o.threads);
}

void add_sample(CLI::App& app, SampleOptions& o) {
  CLI::App* cmd = app.add_subcommand("sample", "generate text from a checkpoint");
  cmd->add_option("--checkpoint", o.checkpoint, "model.safetensors of a train run")->type_name("FILE")->required();
  cmd->add_option("--prompt", o.prompt, "text to continue (its last block_size characters are used)");
  cmd->add_option("--tokens", o.sampling.tokens, "characters to generate")
      ->check(positive_count(kMaxSampleTokens))
      ->capture_default_str();
  cmd->add_option("--temperature", o.sampling.temperature, "softmax temperature (0 = greedy)")->capture_default_str();
  cmd->add_option("--top-k", o.sampling.top_k, "sample among the k most likely characters (0 = all)")
      ->check(whole_number<std::int64_t>(0, kMaxCount))
      ->capture_default_str();
  cmd->add_option("--seed", o.sampling.seed, "random seed")->check(kSeed)->capture_default_str();
  add_threads(*cmd, o.threads);
}

void add_grad(CLI::App& app, GradOptions& o) {
  CLI::App* cmd = app.add_subcommand("grad", "one forward and backward pass: loss and parameter gradients");
  cmd->footer("BATCH holds integer tensors 'inputs' and 'targets' [B, T] (I64 or I32). An F64 checkpoint runs in double "
              "precision. G receives 'loss' and 'grad.<name>' for every parameter.");
  cmd->add_option("--checkpoint", o.checkpoint, "model weights (F32 or F64)")->type_name("W.safetensors")->required();
  cmd->add_option("--batch", o.batch, "inputs and targets")->type_name("BATCH.safetensors")->required();
  cmd->add_option("--out", o.out, "where to write loss and gradients")->type_name("G.safetensors")->required();
  add_threads(*cmd, o.threads);
}

void add_graph(CLI::App& app, GraphOptions& o) {
  CLI::App* cmd = app.add_subcommand("graph", "write one training step's tape as a Graphviz graph (dot)");
  cmd->footer("Render it with: dot -Tsvg FILE -o FILE.svg");
  cmd->add_option("--data", o.data, "UTF-8 text file (default: the fortune files in " + kDefaultCorpusDir.string() + ")")
      ->type_name("FILE");
  cmd->add_option("--preset", o.preset, "the model and batch (train_lm presets lists them)")->capture_default_str();
  cmd->add_option("--layers", o.layers, "transformer blocks (default: the preset's)")->check(positive_count());
  cmd->add_option("--block", o.block, "context length T (default: the preset's)")->check(positive_count());
  cmd->add_option("--batch", o.batch, "sequences (default: the preset's)")->check(positive_count());
  cmd->add_flag("--checkpoint-activations", o.checkpoint_activations, "each block but the last as its one checkpoint node");
  cmd->add_option("--out", o.out, "where to write the graph (default: standard output)")->type_name("FILE");
}

void add_presets(CLI::App& app, bool& json) {
  CLI::App* cmd = app.add_subcommand("presets", "print the named presets (model, batch, steps, recipe)");
  cmd->add_flag("--json", json, "as JSON, for other programs");
}

extern "C" void on_stop_signal(int) { request_stop(); }

// The first SIGINT / SIGTERM asks the run to stop after the current step with a
// checkpoint. SA_RESETHAND restores the default action as the handler is entered
// (atomically, in the kernel), so a second Ctrl-C kills a run stuck in a long eval or save.
void stop_on_first_signal(int signal) {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESETHAND;
  ::sigaction(signal, &action, nullptr);
}

// Under mpirun (built with MPI) the job's processes train together; rank 0 alone prints.
int run_train(const TrainOptions& options) {
  stop_on_first_signal(SIGINT);
  stop_on_first_signal(SIGTERM);
#if TRAIN_LM_WITH_MPI
  Replicas& replicas = mpi_replicas(options.collective_timeout_s);
#else
  Replicas& replicas = single_process();
#endif
  std::ostream silent(nullptr);
  const TrainSummary summary = replicas.is_root()
                                   ? train(options, std::cout, std::cerr, ::isatty(STDERR_FILENO) != 0, replicas)
                                   : train(options, silent, silent, false, replicas);
  return summary.stopped_early && !options.stop_after ? 130 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"train_lm: a character-level GPT on the tapegrad autodiff tape"};
  app.require_subcommand(1);
  TrainOptions train_options;
  EvalOptions eval_options;
  SampleOptions sample_options;
  GradOptions grad_options;
  GraphOptions graph_options;
  bool presets_as_json = false;
  add_train(app, train_options);
  add_eval(app, eval_options);
  add_sample(app, sample_options);
  add_grad(app, grad_options);
  add_graph(app, graph_options);
  add_presets(app, presets_as_json);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "train_lm: error: " << e.what() << " (see train_lm --help)\n";
    return 2;
  }

  const std::string command = app.get_subcommands().front()->get_name();
  try {
    if (command == "train") return run_train(train_options);
    if (command == "eval") {
      const TextLoss result = run_eval(eval_options);
      std::printf("loss %.6f perplexity %.4f (%zu tokens predicted)\n", result.loss, result.perplexity(), result.predicted);
      return 0;
    }
    if (command == "presets") {
      std::cout << (presets_as_json ? presets_json() : "Presets:" + preset_list()) << "\n";
      return 0;
    }
    if (command == "graph") {
      const std::size_t nodes = run_graph(graph_options, std::cout);
      std::fprintf(stderr, "train_lm graph: %zu nodes%s%s\n", nodes, graph_options.out.empty() ? "" : " written to ",
                   graph_options.out.c_str());
      return 0;
    }
    if (command == "sample") {
      run_sample(sample_options, std::cout);
      return 0;
    }
    const double loss = run_grad(grad_options);
    std::fprintf(stderr, "loss %.17g; gradients written to %s\n", loss, grad_options.out.c_str());
    return 0;
  } catch (const ReportedByRankZero&) {
    return 1;
  } catch (const std::exception& e) {
    std::cout.flush();
    if (::isatty(STDERR_FILENO)) std::cerr << "\r\033[K";  // over a half-drawn progress line
    std::cerr << "train_lm " << command << ": error: " << tapegrad::one_line(e.what(), 4000) << "\n";
    return 1;
  }
}
