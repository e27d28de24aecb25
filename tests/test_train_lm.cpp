// train_lm (examples/train_lm): text and vocabulary, an end-to-end run on text
// the test writes itself, `grad` against the tape, bit-identical resume, crash
// safety of checkpoints, and the errors for bad input.
#include "evaluate.hpp"
#include "grad.hpp"
#include "report.hpp"
#include "run_checkpoint.hpp"
#include "sample.hpp"
#include "train.hpp"
#include "usage_error.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <sstream>
#include <unistd.h>

using namespace train_lm;
namespace fs = std::filesystem;

namespace {

// A fresh directory, removed with everything in it at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("train_lm_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path operator/(const std::string& name) const { return path / name; }
};

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

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
  for (const auto& [name, p] : params) {
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

TEST_CASE("train_lm: an interrupted checkpoint write leaves the previous checkpoint loadable") {
  TempDir dir;
  write_file(dir / "text.txt", small_text());
  run_quietly(tiny_run(dir / "text.txt", dir / "straight", 40));
  TrainOptions options = tiny_run(dir / "text.txt", dir / "run", 40);
  options.stop_after = 20;
  run_quietly(options);

  // A crash part-way through the next save: half-written temporaries beside the checkpoint.
  const std::string state = read_file(dir / "run/state.safetensors");
  const std::string model = read_file(dir / "run/model.safetensors");
  write_file(dir / "run/.state.safetensors.tmp-99999-0", state.substr(0, state.size() / 2));
  write_file(dir / "run/.model.safetensors.tmp-99999-0", model.substr(0, 100));

  // The checkpoint still loads, and the run resumes from it as if nothing happened.
  CHECK(read_model_file(dir / "run/model.safetensors").config.n_layer == 2);
  options.stop_after.reset();
  options.resume = true;
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
  CHECK_THROWS_WITH_AS(read_default_corpus(empty_corpus.path), doctest::Contains("no plain-text fortune files"), DataError);

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
