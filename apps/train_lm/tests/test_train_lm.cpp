// train_lm (apps/train_lm): text and vocabulary, an end-to-end run on text
// the test writes itself, `grad` against the tape, bit-identical resume, crash
// safety of checkpoints, and the errors for bad input.
#include "evaluate.hpp"
#include "grad.hpp"
#include "presets.hpp"
#include "report.hpp"
#include "run_checkpoint.hpp"
#include "sample.hpp"
#include "train.hpp"
#include "usage_error.hpp"

#include <doctest/doctest.h>

#include "test_files.hpp"

#include <sys/resource.h>
#include <sys/stat.h>

#include <cfloat>
#include <cmath>
#include <csignal>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <unistd.h>

using namespace train_lm;
using namespace tapegrad::testing;
namespace fs = std::filesystem;

namespace {

// ~6 KB of simple English-like sentences: easy enough that a few dozen steps learn something.
std::string small_text() {
  const std::vector<std::string> words = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "big", "red", "sun"};
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<std::size_t> pick(0, words.size() - 1);
  std::string text;
  while (text.size() < 6000) {
    for (int w = 0; w < 6; ++w) text += (w ? " " : "") + words[pick(rng)];
    text += ".\n";
  }
  return text;
}

TrainOptions tiny_run(const fs::path& data, const fs::path& out, std::int64_t steps) {
  TrainOptions o;
  o.data = data;
  o.out = out;
  o.preset = "tiny";
  o.steps = steps;
  o.eval_every = 10;
  o.save_every = 15;
  o.no_sample = true;
  return o;
}

TrainSummary run_quietly(const TrainOptions& options) {
  std::ostringstream out, progress;
  return train(options, out, progress, false);
}

// The training run's progress output (notes, eval lines).
std::string run_progress(const TrainOptions& options) {
  std::ostringstream out, progress;
  train(options, out, progress, false);
  return progress.str();
}

// The message of what `f` throws, or "no error".
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

// A float safetensors file read into memory, to change and write back.
struct EditableFile {
  std::vector<std::pair<std::string, tapegrad::Array<float>>> tensors;  // in file order
  io::Metadata metadata;

  static EditableFile read(const fs::path& path) {
    const auto file = io::Safetensors::read(path);
    EditableFile e{{}, file.metadata()};
    for (const auto& t : file.tensors()) e.tensors.emplace_back(t.name, file.get<float>(t.name));
    return e;
  }
  tapegrad::Array<float>& operator[](const std::string& name) {
    for (auto& [n, values] : tensors)
      if (n == name) return values;
    throw std::invalid_argument("no tensor " + name);
  }
  void write(const fs::path& path) const {
    std::vector<io::TensorView> views;
    for (const auto& [name, values] : tensors) views.emplace_back(name, values);
    io::write_safetensors(path, views, metadata);
  }
};


// The columns of log.csv that must be reproducible: kind, step, loss, perplexity, lr.
std::vector<std::string> reproducible_log(const fs::path& path) {
  std::vector<std::string> rows;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) {
    std::size_t cut = 0;
    for (int comma = 0; comma < 5; ++comma) cut = line.find(',', cut) + 1;
    rows.push_back(line.substr(0, cut));
  }
  return rows;
}

}  // namespace

TEST_CASE("train_lm: UTF-8 characters, the sorted vocabulary and teacher-forcing windows") {
  const auto chars = split_utf8("bé a€b", "text");
  CHECK(chars == std::vector<std::string>{"b", "é", " ", "a", "€", "b"});
  const Vocabulary vocab = Vocabulary::of(chars);
  CHECK(vocab.tokens() == std::vector<std::string>{" ", "a", "b", "é", "€"});  // code point order
  CHECK(vocab.decode(vocab.encode(chars, "text")) == "bé a€b");
  CHECK(Vocabulary::from_json(vocab.to_json(), "m").tokens() == vocab.tokens());

  CHECK_THROWS_WITH_AS(split_utf8("ok\xC3(", "f.txt"), doctest::Contains("f.txt: invalid UTF-8 at byte offset 2"), DataError);
  CHECK_THROWS_WITH_AS(split_utf8("\xED\xA0\x80", "f"), doctest::Contains("byte offset 0"), DataError);  // a surrogate
  CHECK_THROWS_WITH_AS(vocab.encode({"a", "z"}, "e.txt"), doctest::Contains("character 'z' at position 1"), DataError);

  std::vector<std::int64_t> tokens(50);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = std::int64_t(i);
  std::mt19937_64 rng(1);
  const Batch b = random_batch(tokens, 3, 8, rng);
  for (std::size_t r = 0; r < 3; ++r)
    for (std::size_t t = 0; t < 8; ++t) CHECK(b.targets(r, t) == b.inputs(r, t) + 1);
}

TEST_CASE("train_lm: data-parallel ranks' batch slices are the one-process batch, and the sampler moves alike") {
  std::vector<std::int64_t> tokens(200);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = std::int64_t(i);
  std::mt19937_64 one(9);
  const Batch whole = random_batch(tokens, 6, 5, one);
  for (int size : {2, 3}) {
    std::size_t row = 0;
    for (int rank = 0; rank < size; ++rank) {
      std::mt19937_64 mine(9);
      const RowRange rows = batch_slice(6, rank, size);
      const Batch slice = random_batch(tokens, 6, 5, mine, rows);
      CHECK(rows.first == row);
      REQUIRE(slice.inputs.shape()[0] == rows.count);
      for (std::size_t r = 0; r < rows.count; ++r, ++row)
        for (std::size_t t = 0; t < 5; ++t) CHECK(slice.inputs(r, t) == whole.inputs(row, t));
      CHECK(mine == one);  // the next global batch is drawn from the same state on every rank
    }
    CHECK(row == 6);
  }
  CHECK_THROWS_WITH_AS(batch_slice(5, 0, 2), doctest::Contains("--batch 5 (the global batch) must be divisible by the number of processes 2"),
                       UsageError);
}

TEST_CASE("train_lm: end to end on a small text: loss falls, the checkpoint reloads, eval and sample run") {
  TempDir dir;
  write_file(dir / "text.txt", small_text());
  const TrainOptions options = tiny_run(dir / "text.txt", dir / "run", 60);
  const TrainSummary summary = run_quietly(options);
  CHECK(summary.last_step == 60);
  CHECK_FALSE(summary.stopped_early);

  // log.csv: a val row at step 0, one train row per step, a val row every 10 steps.
  const auto log = reproducible_log(dir / "run/log.csv");
  REQUIRE(log.size() == 1 + 1 + 60 + 6);
  const TrainLog reread = TrainLog::resume(dir / "run/log.csv", 60);
  std::vector<double> val;
  for (const auto& row : reread.rows())
    if (row.kind == "val") val.push_back(row.loss);
  REQUIRE(val.size() == 7);
  const std::size_t V = Vocabulary::of(split_utf8(small_text(), "text")).size();
  CHECK(val.front() == doctest::Approx(std::log(double(V))).epsilon(0.05));  // about uniform at initialisation
  CHECK(val.back() < val.front() - 0.5);
  CHECK(summary.final_val_loss == val.back());

  const std::string svg = read_file(dir / "run/loss.svg");
  CHECK(svg.starts_with("<?xml"));
  CHECK(svg.find("<polyline") != std::string::npos);
  CHECK(svg.find(">step</text>") != std::string::npos);
  CHECK(svg.find("validation") != std::string::npos);

  const ModelFile model = read_model_file(dir / "run/model.safetensors");
  CHECK(model.dtype == io::DType::F32);
  CHECK(model.config.n_layer == 2);
  CHECK(model.config.block_size == 32);
  REQUIRE(model.vocab);
  CHECK(model.vocab->size() == V);
  CHECK(model.file.metadata().at("format") == "tapegrad-gpt");

  const TextLoss eval = run_eval({.checkpoint = dir / "run/model.safetensors", .data = dir / "text.txt"});
  CHECK(eval.predicted == small_text().size() - 1);
  CHECK(eval.loss < val.front() - 0.5);
  const TextLoss short_windows =
      run_eval({.checkpoint = dir / "run/model.safetensors", .data = dir / "text.txt", .block = 8});
  CHECK(short_windows.loss > eval.loss);  // less context, worse prediction

  std::ostringstream sampled;
  run_sample({.checkpoint = dir / "run/model.safetensors", .prompt = "the ", .sampling = {.tokens = 40, .top_k = 5}},
             sampled);
  CHECK(sampled.str().starts_with("the "));
  CHECK(split_utf8(sampled.str(), "sample").size() == 4 + 40 + 1);  // prompt, tokens, newline
}

TEST_CASE("train_lm: grad on an F64 checkpoint matches the tape's gradients") {
  TempDir dir;
  const GPTConfig config{.vocab_size = 11, .block_size = 8, .n_layer = 2, .n_head = 2, .d_model = 16};
  GPT<double> model(config, 5);
  save_model(dir / "w.safetensors", model);  // no vocab: valid for grad

  xt::xarray<std::int32_t> inputs = xt::xarray<std::int32_t>::from_shape({3, 7}), targets = inputs;
  std::mt19937 rng(3);
  for (auto& v : inputs) v = std::int32_t(rng() % 11);
  for (auto& v : targets) v = std::int32_t(rng() % 11);
  io::write_safetensors(dir / "batch.safetensors", {{"inputs", inputs}, {"targets", targets}});

  const double loss = run_grad({.checkpoint = dir / "w.safetensors", .batch = dir / "batch.safetensors",
                                .out = dir / "g.safetensors"});

  tapegrad::Tape tape;
  const auto direct = model.loss(tape, tapegrad::Ids(inputs), tapegrad::Ids(targets));
  tape.backward(direct);
  CHECK(loss == doctest::Approx(direct.item()).epsilon(1e-12));

  const auto g = io::Safetensors::read(dir / "g.safetensors");
  CHECK(g.tensor("loss").dtype == io::DType::F64);
  CHECK(g.tensor("loss").numel() == 1);
  const auto params = model.named_parameters();
  CHECK(g.tensors().size() == params.size() + 1);
  for (const auto& entry : params) {
    const std::string& name = entry.first;  // not a structured binding: clang 14 cannot capture one (INFO)
    const auto& p = entry.second;
    INFO(name);
    const auto grad = g.get<double>("grad." + name);
    REQUIRE(tapegrad::shape_of(grad) == p.shape());
    double worst = 0;
    for (std::size_t i = 0; i < grad.size(); ++i) worst = std::max(worst, std::abs(grad.data()[i] - p.grad().data()[i]));
    CHECK(worst <= 1e-12);
  }

  // An F32 checkpoint runs in float and writes F32 gradients.
  GPT<float> model32(config, 5);
  save_model(dir / "w32.safetensors", model32);
  run_grad({.checkpoint = dir / "w32.safetensors", .batch = dir / "batch.safetensors", .out = dir / "g32.safetensors"});
  CHECK(io::Safetensors::read(dir / "g32.safetensors").tensor("grad.wte").dtype == io::DType::F32);
}

TEST_CASE("train_lm: a resumed run is bit-identical to an uninterrupted one") {
  TempDir dir;
  write_file(dir / "text.txt", small_text());
  run_quietly(tiny_run(dir / "text.txt", dir / "straight", 40));

  TrainOptions first_half = tiny_run(dir / "text.txt", dir / "resumed", 40);
  first_half.stop_after = 20;
  const TrainSummary stopped = run_quietly(first_half);
  CHECK(stopped.stopped_early);
  CHECK(stopped.last_step == 20);
  TrainOptions second_half = tiny_run(dir / "text.txt", dir / "resumed", 40);
  second_half.resume = true;
  const TrainSummary resumed = run_quietly(second_half);
  CHECK(resumed.first_step == 20);
  CHECK(resumed.last_step == 40);

  CHECK(read_file(dir / "straight/model.safetensors") == read_file(dir / "resumed/model.safetensors"));
  CHECK(reproducible_log(dir / "straight/log.csv") == reproducible_log(dir / "resumed/log.csv"));
  const auto a = io::Safetensors::read(dir / "straight/state.safetensors");
  const auto b = io::Safetensors::read(dir / "resumed/state.safetensors");
  REQUIRE(a.tensors().size() == b.tensors().size());
  for (const auto& t : a.tensors()) {
    INFO(t.name);
    const auto x = a.get<float>(t.name), y = b.get<float>(t.name);
    CHECK(std::equal(x.begin(), x.end(), y.begin()));  // the moments too
  }
  CHECK(a.metadata().at("rng") == b.metadata().at("rng"));
}

TEST_CASE("train_lm: a Llama preset trains, its files record the family, and eval, sample, grad and --resume read it") {
  TempDir dir;
  write_file(dir / "text.txt", small_text());
  const auto llama_run = [&](const fs::path& out) {
    TrainOptions o = tiny_run(dir / "text.txt", out, 30);
    o.preset = "llama-small";
    o.layers = 2, o.dim = 32, o.heads = 4, o.block = 16, o.batch = 4, o.lr = 1e-2;
    return o;
  };
  const TrainSummary straight = run_quietly(llama_run(dir / "straight"));
  const ModelFile model = read_model_file(dir / "straight/model.safetensors");
  CHECK(model.family == Family::llama);
  CHECK(model.file.metadata().at("format") == "tapegrad-llama");
  CHECK(model.file.metadata().at("d_hidden") == std::to_string(tapegrad::models::swiglu_hidden_size(32)));
  CHECK(model.file.contains("h.1.mlp.w_gate"));
  CHECK_FALSE(model.file.contains("wpe"));
  CHECK(io::Safetensors::read(dir / "straight/state.safetensors").metadata().at("family") == "llama");

  const TextLoss eval = run_eval({.checkpoint = dir / "straight/model.safetensors", .data = dir / "text.txt"});
  CHECK(eval.loss < std::log(double(model.config.vocab_size)) - 0.5);  // it learned
  std::ostringstream sampled;
  run_sample({.checkpoint = dir / "straight/model.safetensors", .prompt = "the ", .sampling = {.tokens = 20}}, sampled);
  CHECK(split_utf8(sampled.str(), "sample").size() == 4 + 20 + 1);

  TrainOptions first_half = llama_run(dir / "resumed");
  first_half.stop_after = 12;
  run_quietly(first_half);
  TrainOptions other_family = tiny_run(dir / "text.txt", dir / "resumed", 30);
  other_family.resume = true;
  CHECK(error_of([&] { run_quietly(other_family); }).find("--preset builds a gpt, the checkpoint holds a llama") !=
        std::string::npos);
  TrainOptions second_half = llama_run(dir / "resumed");
  second_half.resume = true;
  CHECK(run_quietly(second_half).last_step == straight.last_step);
  CHECK(read_file(dir / "straight/model.safetensors") == read_file(dir / "resumed/model.safetensors"));

  xt::xarray<std::int64_t> ids = xt::xarray<std::int64_t>::from_shape({2, 5});
  for (std::size_t i = 0; i < ids.size(); ++i) ids.data()[i] = std::int64_t(i % model.config.vocab_size);
  io::write_safetensors(dir / "batch.safetensors", {{"inputs", ids}, {"targets", ids}});
  const double loss = run_grad({.checkpoint = dir / "straight/model.safetensors",
                                .batch = dir / "batch.safetensors",
                                .out = dir / "g.safetensors"});
  CHECK(std::isfinite(loss));
  CHECK(io::Safetensors::read(dir / "g.safetensors").contains("grad.h.0.attn.w_q"));
}

// A 40-step run straight through into dir/straight, and the same run stopped after
// step 20 in dir/run; returns the options that resume dir/run to step 40.
TrainOptions straight_and_stopped_runs(const TempDir& dir) {
  write_file(dir / "text.txt", small_text());
  run_quietly(tiny_run(dir / "text.txt", dir / "straight", 40));
  TrainOptions options = tiny_run(dir / "text.txt", dir / "run", 40);
  options.stop_after = 20;
  run_quietly(options);
  options.stop_after.reset();
  options.resume = true;
  return options;
}

TEST_CASE("train_lm: an interrupted checkpoint write leaves the previous checkpoint loadable") {
  TempDir dir;
  TrainOptions options = straight_and_stopped_runs(dir);

  // A crash part-way through the next save: half-written temporaries beside the checkpoint.
  const std::string state = read_file(dir / "run/state.safetensors");
  const std::string model = read_file(dir / "run/model.safetensors");
  write_file(dir / "run/.state.safetensors.tmp-99999-0", state.substr(0, state.size() / 2));
  write_file(dir / "run/.model.safetensors.tmp-99999-0", model.substr(0, 100));

  // The checkpoint still loads, and the run resumes from it as if nothing happened.
  CHECK(read_model_file(dir / "run/model.safetensors").config.n_layer == 2);
  CHECK(run_quietly(options).last_step == 40);
  CHECK(read_file(dir / "straight/model.safetensors") == read_file(dir / "run/model.safetensors"));

  // A state file cut short (as a non-atomic writer would leave it) is refused, naming the
  // file, and nothing is overwritten.
  const std::string good_model = read_file(dir / "run/model.safetensors");
  const std::string full_state = read_file(dir / "run/state.safetensors");
  write_file(dir / "run/state.safetensors", full_state.substr(0, full_state.size() - 10));
  options.steps = 60;
  CHECK_THROWS_WITH(run_quietly(options), doctest::Contains("state.safetensors"));
  CHECK(read_file(dir / "run/model.safetensors") == good_model);
}

// Moments, weights and the sampler state of a state file are checked
// before a resumed run starts; a corrupt one changes nothing on disk.
TEST_CASE("train_lm: a state file with bad values is refused on resume and nothing is written") {
  TempDir dir;
  TrainOptions options = straight_and_stopped_runs(dir);
  const std::string model = read_file(dir / "run/model.safetensors"), state = read_file(dir / "run/state.safetensors");
  const std::string log = read_file(dir / "run/log.csv");
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const auto refused = [&](const std::function<void(EditableFile&)>& corrupt, const std::string& reason) {
    EditableFile file = EditableFile::read(dir / "run/state.safetensors");
    corrupt(file);
    file.write(dir / "run/state.safetensors");
    const std::string corrupt_state = read_file(dir / "run/state.safetensors");
    CHECK_THROWS_WITH(run_quietly(options), doctest::Contains(reason.c_str()));
    CHECK(read_file(dir / "run/model.safetensors") == model);
    CHECK(read_file(dir / "run/state.safetensors") == corrupt_state);
    CHECK(read_file(dir / "run/log.csv") == log);
    write_file(dir / "run/state.safetensors", state);
  };
  for (const float bad : {-1.0f, nan, inf}) {
    INFO("v.wte all ", bad);
    refused([&](EditableFile& f) { f["v.wte"].fill(bad); }, "state 'v.wte' holds");
  }
  refused([&](EditableFile& f) { f["m.h.1.mlp.b_1"](3) = -inf; }, "state 'm.h.1.mlp.b_1' holds -inf at flat index 3");
  refused([&](EditableFile& f) { f["param.wpe"](0, 0) = nan; }, "tensor 'param.wpe' holds a non-finite value");
  refused([&](EditableFile& f) { f.metadata["rng"] += " 5"; }, "'rng' is not a std::mt19937_64 state");
  refused(
      [&](EditableFile& f) {
        std::string zeros;
        for (std::size_t i = 0; i < std::mt19937_64::state_size; ++i) zeros += "0 ";
        f.metadata["rng"] = zeros + "312";
      },
      "'rng' is an all-zero std::mt19937_64 state");
  CHECK(run_quietly(options).last_step == 40);  // the good state still resumes
}

// A save not on an eval step once wrote whatever the weights held.
TEST_CASE("train_lm: save_checkpoint refuses what eval would refuse or a non-finite moment, keeping the last save") {
  TempDir dir;
  const CheckpointDir checkpoint{dir.path() / "run"};
  checkpoint.prepare_for_writing();
  LanguageModel<float> model(Family::gpt,
                             GPTConfig{.vocab_size = 3, .block_size = 4, .n_layer = 1, .n_head = 1, .d_model = 4}, 1);
  tapegrad::nn::AdamW<float> optimizer(model.named_parameters());
  TrainState state;
  state.step = 7;
  const Vocabulary vocab = Vocabulary::from_tokens({"a", "b", "c"});
  save_checkpoint(checkpoint, model, optimizer, state, vocab);
  const std::string model_bytes = read_file(checkpoint.model()), state_bytes = read_file(checkpoint.state());
  state.step = 8;

  model.named_parameters()[3].second.data()[1] = std::numeric_limits<float>::infinity();
  const std::string expected = "checkpoint not saved, the previous one is kept: tensor '" +
                               model.named_parameters()[3].first + "' holds a non-finite value (inf) at flat index 1";
  CHECK_THROWS_WITH(save_checkpoint(checkpoint, model, optimizer, state, vocab), doctest::Contains(expected.c_str()));
  CHECK(read_file(checkpoint.model()) == model_bytes);
  CHECK(read_file(checkpoint.state()) == state_bytes);
  CHECK(fs::directory_iterator(checkpoint.dir) != fs::directory_iterator());
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(checkpoint.dir)) ++files;
  CHECK(files == 2);  // no temporary file either

  // Finite weights eval would refuse (one step at --lr 1e30 leaves about 5e28) are refused alike.
  model.named_parameters()[3].second.data()[1] = 5e28f;
  const std::string diverged = "checkpoint not saved, the previous one is kept: tensor '" +
                               model.named_parameters()[3].first + "' holds 5e+28 at flat index 1, beyond the +-10000";
  CHECK_THROWS_WITH(save_checkpoint(checkpoint, model, optimizer, state, vocab), doctest::Contains(diverged.c_str()));
  CHECK(read_file(checkpoint.model()) == model_bytes);
  CHECK(read_file(checkpoint.state()) == state_bytes);
}

// The text was once one std::string per character (30 MiB peaked at 1.27 GiB).
TEST_CASE("train_lm: make_corpus holds the text as bytes and 8-byte token ids") {
  const std::size_t size = 16u << 20;
  Text text{std::string(size, 'a'), "16 MiB"};
  for (std::size_t i = 0; i < size; i += 7) text.bytes[i] = char('a' + i % 26);
  Corpus corpus;
  const std::int64_t growth = peak_memory_growth([&] { corpus = make_corpus(text, 64); });
  CHECK(corpus.train.size() + corpus.val.size() == size);
  CHECK(corpus.vocab.size() == 26);
  CHECK(growth < std::int64_t(12 * size));  // ids 8 bytes a character, 10% of them copied for the split
}

// A 1 MB model file with block_size 60000 made eval allocate a 14 GB
// attention matrix; the estimate now refuses such a file first, with the value and the
// estimate (block_size 200000 here: 160 GB, past any test machine's memory).
TEST_CASE("train_lm: eval refuses a model whose forward would not fit in memory, naming the values") {
  TempDir dir;
  GPT<float> forged(GPTConfig{.vocab_size = 3, .block_size = 200000, .n_layer = 1, .n_head = 1, .d_model = 2}, 1);
  save_model(dir / "forged.safetensors", forged, {{"vocab", Vocabulary::from_tokens({"a", "b", "c"}).to_json()}});
  std::string text;
  while (text.size() < 210000) text += "abcab";
  write_file(dir / "text.txt", text);
  const std::string error = error_of([&] { run_eval({.checkpoint = dir / "forged.safetensors", .data = dir / "text.txt"}); });
  CHECK(error.starts_with((dir / "forged.safetensors").string() + ": "));
  CHECK(error.find("block_size 200000 with windows of batch 1 x 200000 need an estimated ") != std::string::npos);
  CHECK(error.find(" GiB of memory, more than the ") != std::string::npos);
  // The same model on a text shorter than a window is evaluated in one short window.
  write_file(dir / "short.txt", text.substr(0, 2000));
  CHECK(run_eval({.checkpoint = dir / "forged.safetensors", .data = dir / "short.txt"}).predicted == 1999);
}

TEST_CASE("train_lm: bad input gives one clear error before any work, and overwrites nothing") {
  TempDir dir;
  write_file(dir / "text.txt", small_text());
  write_file(dir / "empty.txt", "");
  write_file(dir / "short.txt", "just a few characters\n");
  write_file(dir / "latin1.txt", "caf\xE9 au lait");
  const auto fresh = [&](auto&& change) {
    TrainOptions o = tiny_run(dir / "text.txt", dir / "new", 5);
    change(o);
    return o;
  };
  const auto train_error = [&](const TrainOptions& o) {
    try {
      run_quietly(o);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };

  CHECK(train_error(fresh([&](auto& o) { o.data = dir / "missing.txt"; })).find("missing.txt: no such file") != std::string::npos);
  CHECK(train_error(fresh([&](auto& o) { o.data = dir / "empty.txt"; })).find("empty.txt: the file is empty") != std::string::npos);
  CHECK(train_error(fresh([&](auto& o) { o.data = dir / "short.txt"; })).find("too short for block size 32") != std::string::npos);
  CHECK(train_error(fresh([&](auto& o) { o.data = dir / "latin1.txt"; })).find("invalid UTF-8 at byte offset 3") != std::string::npos);
  CHECK(train_error(fresh([](auto& o) { o.preset = "huge"; })).find("unknown preset 'huge'") != std::string::npos);
  CHECK(train_error(fresh([](auto& o) { o.steps = 0; })).find("--steps must be positive, got 0") != std::string::npos);
  CHECK(train_error(fresh([](auto& o) { o.batch = -2; })).find("--batch must be positive, got -2") != std::string::npos);
  CHECK(train_error(fresh([](auto& o) { o.dim = 30; })).find("--dim 30 must be a multiple of --heads 4") != std::string::npos);
  CHECK(train_error(fresh([](auto& o) { o.resume = true; })).find("nothing to resume") != std::string::npos);
  CHECK(train_error(fresh([&](auto& o) { o.out = dir / "text.txt" / "sub"; })).find("--out") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "new"));  // no check left a directory behind

  TempDir empty_corpus;
  CHECK_THROWS_WITH_AS(read_default_corpus(empty_corpus.path()), doctest::Contains("no plain-text fortune files"), DataError);

  // An existing checkpoint: a fresh run into it is refused, a resume must agree with it.
  run_quietly(tiny_run(dir / "text.txt", dir / "run", 5));
  const std::string model = read_file(dir / "run/model.safetensors");
  CHECK(train_error(tiny_run(dir / "text.txt", dir / "run", 5)).find("already holds a checkpoint") != std::string::npos);
  TrainOptions other = tiny_run(dir / "text.txt", dir / "run", 10);
  other.resume = true;
  other.lr = 2e-3;
  CHECK(train_error(other).find("--lr 0.002 differs from the checkpoint's 0.001") != std::string::npos);
  other.lr = 1e-3;
  other.block = 16;
  CHECK(train_error(other).find("--block 16 differs from the checkpoint's 32") != std::string::npos);
  other.block.reset();
  write_file(dir / "other.txt", small_text() + "more");
  other.data = dir / "other.txt";
  CHECK(train_error(other).find("is not the one the checkpoint was trained on") != std::string::npos);
  CHECK(read_file(dir / "run/model.safetensors") == model);

  // eval, sample, grad.
  const fs::path ckpt = dir / "run/model.safetensors";
  CHECK_THROWS_WITH_AS(run_eval({.checkpoint = ckpt, .data = dir / "text.txt", .block = 33}),
                       doctest::Contains("--block 33 is above the checkpoint's block size 32"), UsageError);
  CHECK_THROWS_WITH_AS(run_eval({.checkpoint = ckpt, .data = dir / "latin1.txt"}), doctest::Contains("invalid UTF-8"), DataError);
  write_file(dir / "accent.txt", "the cat\xC3\xA9");
  CHECK_THROWS_WITH_AS(run_eval({.checkpoint = ckpt, .data = dir / "accent.txt"}),
                       doctest::Contains("character '\xC3\xA9' (U+00E9) at position 7 is not in the model's vocabulary"),
                       DataError);
  std::ostringstream ignored;
  CHECK_THROWS_WITH_AS(run_sample({.checkpoint = ckpt, .prompt = "the Q"}, ignored),
                       doctest::Contains("--prompt: character 'Q' at position 4"), DataError);
  CHECK(ignored.str().empty());
  CHECK_THROWS_WITH_AS(run_sample({.checkpoint = ckpt, .sampling = {.tokens = 0}}, ignored),
                       doctest::Contains("--tokens must be positive"), UsageError);
  write_file(dir / "truncated.safetensors", model.substr(0, model.size() / 2));
  CHECK_THROWS_WITH_AS(run_sample({.checkpoint = dir / "truncated.safetensors"}, ignored),
                       doctest::Contains("truncated.safetensors:"), io::FormatError);
  CHECK_THROWS_WITH_AS(run_eval({.checkpoint = dir / "run/state.safetensors", .data = dir / "text.txt"}),
                       doctest::Contains("'format' is not tapegrad-gpt"), io::FormatError);

  const std::size_t V = read_model_file(ckpt).config.vocab_size;
  xt::xarray<std::int64_t> ids = xt::xarray<std::int64_t>::from_shape({1, 4});
  ids.fill(std::int64_t(V));  // one past the vocabulary
  io::write_safetensors(dir / "batch.safetensors", {{"inputs", ids}, {"targets", ids}});
  CHECK_THROWS_WITH_AS(run_grad({.checkpoint = ckpt, .batch = dir / "batch.safetensors", .out = dir / "g.safetensors"}),
                       doctest::Contains(("token id " + std::to_string(V) + " is outside the vocabulary").c_str()), io::FormatError);
  CHECK_THROWS_WITH(run_grad({.checkpoint = ckpt, .batch = dir / "batch.safetensors", .out = dir / "nodir/g.safetensors"}),
                    doctest::Contains("--out"));
  CHECK_FALSE(fs::exists(dir / "g.safetensors"));
}

TEST_CASE("train_lm: a vocabulary from a checkpoint is one UTF-8 character per token, strictly increasing") {
  CHECK(Vocabulary::from_json(R"([" ", "a", "\u00e9", "\u20ac"])", "m").size() == 4);
  const auto vocab_error = [](const std::string& json) {
    return error_of([&] { Vocabulary::from_json(json, "m.safetensors"); });
  };
  CHECK(vocab_error(R"(["a", "ab"])").find("m.safetensors: metadata 'vocab'") != std::string::npos);
  CHECK(vocab_error(R"(["a", "ab"])").find("token 1 \"ab\" is not exactly one UTF-8 character") != std::string::npos);
  CHECK(vocab_error(R"(["", "a"])").find("token 0 \"\" is not exactly one UTF-8 character") != std::string::npos);
  CHECK(vocab_error(R"(["b", "a"])").find("token 1 \"a\" does not come after token 0 \"b\"") != std::string::npos);
  CHECK(vocab_error(R"(["a", "a"])").find("token 1 \"a\" does not come after token 0 \"a\"") != std::string::npos);
  CHECK(vocab_error(R"(["\u00e9", "a"])").find("token 1 \"a\" does not come after") != std::string::npos);
}

TEST_CASE("train_lm: loss.svg and a resumed log.csv skip non-finite numbers") {
  const std::vector<LogRow> rows = {{"val", 0, 3.0, 0, 0, 0},
                                    {"train", 1, 2.5, 1e-3, 100, 1},
                                    {"train", 2, INFINITY, 1e-3, 100, 2},
                                    {"val", 2, std::nan(""), 1e-3, 100, 2},
                                    {"train", 3, 2.0, 1e-3, 100, 3}};
  const std::string svg = loss_svg(rows, "t");
  CHECK(svg.find("<polyline") != std::string::npos);
  CHECK(svg.find("inf") == std::string::npos);
  CHECK(svg.find("nan") == std::string::npos);
  // Only non-finite losses, or no rows at all: still a picture.
  CHECK(loss_svg({{"train", 1, INFINITY, 0, 0, 0}}, "t").find("</svg>") != std::string::npos);
  CHECK(loss_svg({}, "t").find("</svg>") != std::string::npos);
  CHECK(loss_svg({{"train", 1, 1e30, 0, 0, 0}, {"train", 2, 1e30, 0, 0, 0}}, "t").find("</svg>") != std::string::npos);

  TempDir dir;
  write_file(dir / "log.csv", "kind,step,loss,perplexity,lr,tokens_per_s,elapsed_s\n"
                              "val,0,3,20,0,0,0\n"
                              "train,1,inf,inf,0.001,10,1\n"
                              "train,2,nan,nan,0.001,10,1\n"
                              "train,3,2.5,12,nan,10,1\n"
                              "train,4,2.5,12,0.001,10,1\n");
  const TrainLog log = TrainLog::resume(dir / "log.csv", 10);
  REQUIRE(log.rows().size() == 2);
  CHECK(log.rows()[1].step == 4);
}

TEST_CASE("train_lm: a model file whose tensors do not fit its metadata is refused before a model is built") {
  TempDir dir;
  const GPTConfig config{.vocab_size = 11, .block_size = 8, .n_layer = 2, .n_head = 2, .d_model = 16};
  save_model(dir / "good.safetensors", GPT<float>(config, 1), {{"vocab", R"(["a","b","c","d","e","f","g","h","i","j","k"])"}});
  REQUIRE(read_model_file(dir / "good.safetensors").config.n_layer == 2);
  const auto refused = [&](const std::function<void(EditableFile&)>& change) {
    EditableFile file = EditableFile::read(dir / "good.safetensors");
    change(file);
    file.write(dir / "bad.safetensors");
    // The messages below name the first tensor that does not fit the metadata: the check
    // ran on the file's own tensors, before anything was sized by the metadata.
    const std::string message = error_of([&] { read_model_file(dir / "bad.safetensors"); });
    CHECK(message.find((dir / "bad.safetensors").string() + ": ") == 0);
    CHECK(message.find('\n') == std::string::npos);
    return message;
  };
  // std::string(...), not a bare literal: assigning a literal here draws GCC 12's false
  // -Wrestrict at -O3 (GCC bug 105329).
  CHECK(refused([](auto& f) { f.metadata["block_size"] = std::string("999999999"); })
            .find("tensor 'wpe' has shape [8, 16], the metadata (vocab_size 11, block_size 999999999") != std::string::npos);
  CHECK(refused([](auto& f) { f.metadata["n_layer"] = std::string("999999999"); }).find("needs more tensors than the 28") != std::string::npos);
  CHECK(refused([](auto& f) { f.metadata["n_layer"] = std::string("3"); }).find("no tensor 'h.2.ln_1.weight'") != std::string::npos);
  CHECK(refused([](auto& f) { f.metadata["n_layer"] = std::string("1"); }).find("unexpected tensor 'h.1.ln_1.weight'") != std::string::npos);
  CHECK(refused([](auto& f) { f.metadata["d_model"] = std::string("32"); }).find("tensor 'wte' has shape [11, 16]") != std::string::npos);
  CHECK(refused([](auto& f) { f.tensors.pop_back(); }).find("no tensor 'ln_f.bias'") != std::string::npos);
  CHECK(refused([](auto& f) { f.tensors.emplace_back("extra", tapegrad::Array<float>::from_shape({2})); })
            .find("unexpected tensor 'extra'") != std::string::npos);
}

TEST_CASE("train_lm: a non-finite gradient norm or validation loss stops the run before anything is saved") {
  TempDir dir;
  // 'z' only in the last 10% of the text: in validation windows, never in training ones.
  std::string tail;
  while (tail.size() < 600) tail += "zz zz.\n";
  write_file(dir / "text.txt", small_text() + tail);
  TrainOptions options = tiny_run(dir / "text.txt", dir / "run", 40);
  options.stop_after = 20;
  run_quietly(options);
  const std::string good_state = read_file(dir / "run/state.safetensors");
  const std::string good_model = read_file(dir / "run/model.safetensors");
  options.stop_after = 21;  // would save right after the next step
  options.resume = true;

  SUBCASE("gradient") {
    // A finite forward pass whose backward pass is NaN: GELU of 1e38 is 1e38 (multiplied by
    // w_2 = 0), but its derivative there is 0 * inf.
    EditableFile state = EditableFile::read(dir / "run/state.safetensors");
    state["param.h.0.mlp.b_1"].fill(1e38f);
    state["param.h.0.mlp.w_2"].fill(0.0f);
    state.write(dir / "run/state.safetensors");
    const std::string crafted = read_file(dir / "run/state.safetensors");
    CHECK(error_of([&] { run_quietly(options); }).find("the gradient norm became NaN at step 21") != std::string::npos);
    CHECK(read_file(dir / "run/state.safetensors") == crafted);
    CHECK(read_file(dir / "run/model.safetensors") == good_model);
  }
  SUBCASE("validation loss") {
    // Position embeddings of -FLT_MAX/2 in coordinate 0 leave every training window finite
    // (the LayerNorms see an infinite variance and output their bias), but 'z', whose
    // embedding is -FLT_MAX there, overflows to -inf: NaN in every validation window with a 'z'.
    EditableFile state = EditableFile::read(dir / "run/state.safetensors");
    const std::size_t z = state["param.wte"].shape()[0] - 1;  // the last token in code point order
    auto& wte = state["param.wte"];
    for (std::size_t j = 0; j < wte.shape()[1]; ++j) wte(z, j) = j == 0 ? -FLT_MAX : 0.0f;
    auto& wpe = state["param.wpe"];
    for (std::size_t t = 0; t < wpe.shape()[0]; ++t) wpe(t, 0) = -FLT_MAX / 2;
    state["param.ln_f.bias"](0) = 0.0f;  // so the logit of 'z' is 0 * -FLT_MAX
    state.write(dir / "run/state.safetensors");
    const std::string crafted = read_file(dir / "run/state.safetensors");
    options.eval_every = 1;
    CHECK(error_of([&] { run_quietly(options); }).find("the validation loss became NaN at step 21") != std::string::npos);
    CHECK(read_file(dir / "run/state.safetensors") == crafted);
    CHECK(read_file(dir / "run/model.safetensors") == good_model);
  }
}

TEST_CASE("train_lm: eval, sample, grad and every save refuse a model by one criterion: finite weights within +-1e4") {
  TempDir dir;
  write_file(dir / "text.txt", small_text());
  const Vocabulary vocab = Vocabulary::of(split_utf8(small_text(), "text"));
  const GPTConfig config{.vocab_size = vocab.size(), .block_size = 8, .n_layer = 1, .n_head = 2, .d_model = 16};
  GPT<float> model(config, 1);
  // ln_f outputs its bias, 1e38 everywhere; each logit sums 16 such terms: inf.
  model.ln_f.weight.value().fill(0.0f);
  model.ln_f.bias.value().fill(1e38f);
  model.wte.value().fill(1.0f);
  const std::string reason =
      "tensor 'ln_f.bias' holds 1e+38 at flat index 0, beyond the +-10000 a trained "
      "model's weights stay within";
  // save_model refuses it; written by the library's saver (no such check), eval, sample and grad refuse it alike.
  CHECK(error_of([&] {
          save_model(dir / "m.safetensors", model, {{"vocab", vocab.to_json()}});
        }).find(": not saved: " + reason) != std::string::npos);
  CHECK(!fs::exists(dir / "m.safetensors"));
  io::Metadata metadata = tapegrad::models::gpt_metadata(config);
  metadata["vocab"] = vocab.to_json();
  io::save_parameters(dir / "m.safetensors", model.named_parameters(), metadata);
  const std::string refusal = (dir / "m.safetensors").string() + ": " + reason + ": the model is diverged or corrupt";
  CHECK(error_of([&] { run_eval({.checkpoint = dir / "m.safetensors", .data = dir / "text.txt"}); }) == refusal);
  std::ostringstream sampled;
  CHECK(error_of([&] { run_sample({.checkpoint = dir / "m.safetensors", .sampling = {.tokens = 3}}, sampled); }) ==
        refusal);
  Batch batch{tapegrad::Ids::from_shape({1, 4}), tapegrad::Ids::from_shape({1, 4})};
  batch.inputs.fill(0), batch.targets.fill(1);
  io::write_safetensors(dir / "batch.safetensors", {{"inputs", batch.inputs}, {"targets", batch.targets}});
  CHECK(error_of([&] {
          run_grad(
              {.checkpoint = dir / "m.safetensors", .batch = dir / "batch.safetensors", .out = dir / "g.safetensors"});
        }) == refusal);
  CHECK(!fs::exists(dir / "g.safetensors"));
  // The same weights at 1e4 pass everywhere.
  model.ln_f.bias.value().fill(1e4f);
  save_model(dir / "m.safetensors", model, {{"vocab", vocab.to_json()}});
  CHECK(std::isfinite(run_eval({.checkpoint = dir / "m.safetensors", .data = dir / "text.txt"}).loss));
}

TEST_CASE("train_lm: out-of-range counts, a bad elapsed time and a bad grad --out are refused up front") {
  TempDir dir;
  write_file(dir / "text.txt", small_text());
  CHECK_THROWS_WITH_AS(use_threads(kMaxThreads + 1), "--threads must be at most 256, got 257", UsageError);
  TrainOptions o = tiny_run(dir / "text.txt", dir / "new", 5);
  o.steps = kMaxSteps + 1;
  CHECK(error_of([&] { run_quietly(o); }).find("--steps must be at most 1000000000") != std::string::npos);
  o.steps = 5;
  o.layers = kMaxCount + 1;
  CHECK(error_of([&] { run_quietly(o); }).find("--layers must be at most 999999999") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "new"));

  run_quietly(tiny_run(dir / "text.txt", dir / "run", 5));
  std::ostringstream ignored;
  CHECK_THROWS_WITH_AS(run_sample({.checkpoint = dir / "run/model.safetensors", .sampling = {.tokens = 1'000'001}}, ignored),
                       "--tokens must be at most 1000000, got 1000001", UsageError);

  // grad --out: a directory, or no file name, is refused before the other files are even read.
  const auto grad_error = [&](const fs::path& out) {
    return error_of([&] { run_grad({.checkpoint = dir / "run/model.safetensors", .batch = dir / "missing", .out = out}); });
  };
  CHECK(grad_error(dir / "run") == "--out: " + (dir / "run").string() + " is a directory");
  CHECK(grad_error(dir.path().string() + "/") == "--out: " + dir.path().string() + "/ does not name a file");
  CHECK(grad_error(dir / "missing-dir" / "g.safetensors").find("--out: ") == 0);

  // state.safetensors: elapsed_s must be a finite number >= 0.
  for (const std::string bad : {"nan", "inf", "-1"}) {
    EditableFile state = EditableFile::read(dir / "run/state.safetensors");
    state.metadata["elapsed_s"] = bad;
    state.write(dir / "run/state.safetensors");
    CHECK(error_of([&] { read_state_file(CheckpointDir{dir / "run"}); })
              .find("state.safetensors: __metadata__ 'elapsed_s' must be a finite number >= 0, got '" + bad + "'") !=
          std::string::npos);
  }
}

TEST_CASE("train_lm: resuming: no eval means a NaN final val loss, a --steps change notes the warm-up") {
  TempDir dir;
  write_file(dir / "text.txt", small_text());
  run_quietly(tiny_run(dir / "text.txt", dir / "run", 30));
  TrainOptions again = tiny_run(dir / "text.txt", dir / "run", 30);
  again.resume = true;
  const TrainSummary finished = run_quietly(again);  // nothing left to do: no step, no eval
  CHECK(finished.last_step == 30);
  CHECK(std::isnan(finished.final_val_loss));

  again.steps = 40;  // both runs shorter than the 100 warm-up steps: the warm-up changes too
  const std::string progress = run_progress(again);
  CHECK(progress.find("note: --steps 40 differs from the original 30: the learning-rate schedule changes from here on, "
                      "and so may the warm-up, which lasts min(100, --steps) steps") != std::string::npos);
}

TEST_CASE("train_lm: a save interrupted for real (the disk fills up) leaves the previous checkpoint to resume") {
  TempDir dir;
  const TrainOptions options = straight_and_stopped_runs(dir);
  const std::string state = read_file(dir / "run/state.safetensors");
  const std::string model = read_file(dir / "run/model.safetensors");

  // The next save (step 30) writes the model, then the state (weights and both moments:
  // about 3x the model): a limit between the model's size and the state's lets the log,
  // the picture and the model be written but cuts the state file part-way.
  REQUIRE(model.size() < state.size() / 2);
  {
    const FileSizeLimit limit(state.size() / 2);
    CHECK(error_of([&] { run_quietly(options); }).find("state.safetensors") != std::string::npos);
  }
  // Nothing of the interrupted save is left: the step-20 state is intact, and the model,
  // never older than the state, is the complete step-30 one.
  CHECK(read_file(dir / "run/state.safetensors") == state);
  for (const auto& entry : fs::directory_iterator(dir.path() / "run"))
    CHECK(entry.path().filename().string().find(".tmp-") == std::string::npos);
  CHECK(read_state_file(CheckpointDir{dir / "run"}).state.step == 20);
  CHECK(read_model_file(dir / "run/model.safetensors").file.metadata().at("step") == "30");
  // --resume says how the two differ, and resumes from step 20 as if the failed session never happened.
  const std::string progress = run_progress(options);
  CHECK(progress.find("model.safetensors is at step 30, state.safetensors at step 20 (a save was interrupted): "
                      "resuming from the state's step 20") != std::string::npos);
  CHECK(read_file(dir / "straight/model.safetensors") == read_file(dir / "run/model.safetensors"));
  CHECK(reproducible_log(dir / "straight/log.csv") == reproducible_log(dir / "run/log.csv"));
}

TEST_CASE("train_lm: the shortest text make_corpus accepts is the minimum its error states") {
  for (const std::size_t block : {1, 8, 32}) {
    INFO("block ", block);
    const std::string error = error_of([&] { make_corpus({"ab", "short"}, block); });
    const std::string marker = "so the text at least ";
    REQUIRE(error.find(marker) != std::string::npos);
    const std::size_t minimum = std::stoul(error.substr(error.find(marker) + marker.size()));
    std::string text;
    for (std::size_t i = 0; i < minimum; ++i) text += char('a' + i % 7);
    CHECK(make_corpus({text, "minimum"}, block).val.size() == block + 1);
    text.pop_back();
    CHECK(error_of([&] {
            make_corpus({text, "one less"}, block);
          }).find("is too short for block size") != std::string::npos);
  }
}

// RLIMIT_AS lowered to what the process maps now plus 1 GiB (under a sanitizer that is
// many terabytes of shadow memory, which the limit then sits just above) until restore()
// or the end of the scope; lowered() is false when the limit was lower already.
class LowerAddressSpace {
 public:
  LowerAddressSpace() {
    REQUIRE(::getrlimit(RLIMIT_AS, &saved_) == 0);
    std::ifstream statm("/proc/self/statm");
    double pages = 0;
    statm >> pages;
    const rlim_t lowered_to = rlim_t(pages) * rlim_t(::sysconf(_SC_PAGE_SIZE)) + (rlim_t{1} << 30);
    if (saved_.rlim_cur != RLIM_INFINITY && saved_.rlim_cur < lowered_to) return;
    const rlimit lowered{lowered_to, saved_.rlim_max};
    REQUIRE(::setrlimit(RLIMIT_AS, &lowered) == 0);
    lowered_ = true;
  }
  LowerAddressSpace(const LowerAddressSpace&) = delete;
  LowerAddressSpace& operator=(const LowerAddressSpace&) = delete;
  ~LowerAddressSpace() { restore(); }
  bool lowered() const { return lowered_; }
  void restore() {
    if (lowered_) ::setrlimit(RLIMIT_AS, &saved_);
    lowered_ = false;
  }

 private:
  rlimit saved_{};
  bool lowered_ = false;
};

TEST_CASE("train_lm: the memory estimate is compared with the address-space limit too, and names it") {
  LowerAddressSpace limit;
  if (!limit.lowered()) return;  // already lower: nothing to lower
  const GPTConfig big{.vocab_size = 65, .block_size = 256, .n_layer = 8, .n_head = 8, .d_model = 512};
  const std::string error =
      error_of([&] { require_memory({.config = big, .batch = 64, .window = 256, .training = true}, "test"); });
  const std::string small = error_of([&] {
    require_memory({.config = {.vocab_size = 65, .block_size = 8, .n_layer = 1, .n_head = 1, .d_model = 8}}, "test");
  });
  limit.restore();
  INFO(error);
  CHECK(error.find("need an estimated ") != std::string::npos);
  CHECK(error.find("this process may still use under its address-space limit (RLIMIT_AS, ulimit -v) of ") !=
        std::string::npos);
  CHECK(small == "no error");
}

TEST_CASE("train_lm: the cgroup memory limit is read from v2's memory.max or v1's memory.limit_in_bytes") {
  TempDir dir;
  fs::create_directories(dir / "root/job/a");
  write_file(dir / "root/job/a/memory.max", "1073741824\n");
  write_file(dir / "v2", "0::/job/a\n");
  CHECK(cgroup_memory_limit(dir / "v2", dir / "root") == 1073741824.0);
  write_file(dir / "root/job/a/memory.max", "max\n");
  CHECK(cgroup_memory_limit(dir / "v2", dir / "root") == std::nullopt);
  // v1, the group not mounted where /proc/self/cgroup says (a container's view): the root's file.
  fs::create_directories(dir / "root/memory");
  write_file(dir / "root/memory/memory.limit_in_bytes", "536870912\n");
  write_file(dir / "v1", "5:cpu,cpuacct:/x\n4:memory:/elsewhere/job\n0::/\n");
  CHECK(cgroup_memory_limit(dir / "v1", dir / "root") == 536870912.0);
  write_file(dir / "root/memory/memory.limit_in_bytes", "9223372036854771712\n");  // v1's "no limit"
  CHECK(cgroup_memory_limit(dir / "v1", dir / "root") == std::nullopt);
  CHECK(cgroup_memory_limit(dir / "missing", dir / "root") == std::nullopt);
}

TEST_CASE("train_lm: save_checkpoint writes the model before the state, so the state never runs ahead") {
  TempDir dir;
  const CheckpointDir checkpoint{dir.path() / "run"};
  checkpoint.prepare_for_writing();
  fs::create_directory(checkpoint.state());  // the state's rename fails
  LanguageModel<float> model(Family::gpt, GPTConfig{.vocab_size = 3, .block_size = 4, .n_layer = 1, .n_head = 1, .d_model = 4}, 1);
  tapegrad::nn::AdamW<float> optimizer(model.named_parameters());
  TrainState state;
  state.step = 12;
  CHECK(error_of([&] {
          save_checkpoint(checkpoint, model, optimizer, state, Vocabulary::from_tokens({"a", "b", "c"}));
        }).find("state.safetensors") != std::string::npos);
  REQUIRE(fs::is_regular_file(checkpoint.model()));
  CHECK(read_model_file(checkpoint.model()).file.metadata().at("step") == "12");
}

TEST_CASE("train_lm: --resume reads log.csv only as a regular file in bounds, and a failure writes nothing") {
  TempDir dir;
  const TrainOptions options = straight_and_stopped_runs(dir);
  const std::string log = read_file(dir / "run/log.csv"), state = read_file(dir / "run/state.safetensors");
  fs::remove(dir / "run/log.csv");
  REQUIRE(::mkfifo((dir / "run/log.csv").c_str(), 0600) == 0);
  CHECK(error_of([&] { run_quietly(options); }) == (dir / "run/log.csv").string() + ": not a regular file (a FIFO)");
  fs::remove(dir / "run/log.csv");
  fs::create_symlink("/dev/zero", dir / "run/log.csv");
  CHECK(error_of([&] { run_quietly(options); }) ==
        (dir / "run/log.csv").string() + ": is a symbolic link, which is not followed here: put the file itself there");
  CHECK(fs::is_symlink(dir / "run/log.csv"));
  CHECK(read_file(dir / "run/state.safetensors") == state);
  fs::remove(dir / "run/log.csv");
  write_file(dir / "run/log.csv", log);
  CHECK(run_quietly(options).last_step == 40);
}

TEST_CASE("train_lm presets: each is found by its name, and the timed speedrun evaluates only at its start and end") {
  for (const auto& preset : kTrainPresets) {
    CAPTURE(preset.name);
    CHECK(&find_train_preset(preset.name) == &preset);  // names are unique
    CHECK(preset.steps >= 1);
    CHECK(preset.eval_every >= 1);
  }
  // Evaluations cost wall time inside the 12-second budget: only the one before the first
  // step and the one after the last (train.cpp evaluates at step 0 and at --steps).
  const TrainPreset& speedrun = find_train_preset("speedrun");
  CHECK(speedrun.eval_every >= speedrun.steps);
  CHECK_THROWS_AS(find_train_preset("speedrun-12s"), tapegrad::ConfigError);
}

TEST_CASE("train_lm: the memory estimate counts each family's parameters as the model has them") {
  const GPTConfig config{.vocab_size = 65, .block_size = 16, .n_layer = 2, .n_head = 2, .d_model = 48};
  const std::size_t hidden = tapegrad::models::swiglu_hidden_size(config.d_model);
  const LanguageModel<float> gpt(Family::gpt, config, 1), llama(Family::llama, config, 1, hidden);
  CHECK(MemoryNeed{.config = config}.parameter_count() == double(gpt.parameter_count()));
  CHECK(MemoryNeed{.config = config, .swiglu_hidden = hidden}.parameter_count() == double(llama.parameter_count()));
  // Training state: weights and gradients, and 1/S of AdamW's two moments.
  const MemoryNeed replicated{.config = config, .training = true},
      sharded{.config = config, .training = true, .optimizer_shards = 4};
  CHECK(replicated.estimate_bytes() - sharded.estimate_bytes() == 4 * 1.5 * double(gpt.parameter_count()));
}

TEST_CASE("train_lm: train's memory check is for one backward's rows: the batch over --grad-accum") {
  // A model that does not fit under the lowered limit even in micro-batches, so the
  // message says which windows it estimated.
  TempDir dir;
  TrainOptions o;
  o.preset = "tiny";
  o.out = dir / "run";
  o.layers = 8, o.dim = 512, o.heads = 8, o.block = 256, o.batch = 256, o.grad_accum = 4;
  LowerAddressSpace limit;
  if (!limit.lowered()) return;  // already lower: nothing to lower
  const std::string error = error_of([&] { run_quietly(o); });
  limit.restore();
  INFO(error);
  CHECK(error.find("with windows of batch 64 x 256 need an estimated ") != std::string::npos);
  CHECK(!fs::exists(dir / "run"));
}
