// models/gpt/sampling.hpp: the KV-cached forward against GPT::forward, generate's window policy
// against decoding by full forwards over the cropped window, and its errors.
#include <tapegrad/models/gpt/sampling.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <vector>

using namespace tapegrad;
using namespace tapegrad::nn;
using namespace tapegrad::models;

namespace {

GPTConfig config() { return {.vocab_size = 11, .block_size = 8, .n_layer = 2, .n_head = 2, .d_model = 16}; }

// A GPT whose every parameter (LayerNorm weights and biases included, which start at 1 and 0)
// is moved by N(0, 0.3): each one changes the logits, and the logits spread over several units.
template <class T>
void perturb(GPT<T>& model, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 0.3);
  for (auto [name, p] : model.named_parameters())
    for (T& x : p.value()) x += T(normal(rng));
}

std::vector<std::int64_t> random_ids(std::size_t n, std::size_t vocab, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int64_t> u(0, std::int64_t(vocab) - 1);
  std::vector<std::int64_t> ids(n);
  for (auto& id : ids) id = u(rng);
  return ids;
}

// GPT::forward's logits (T, V) for one sequence (batch 1).
template <class T>
std::vector<std::vector<T>> full_logits(const GPT<T>& model, std::span<const std::int64_t> ids) {
  Ids idx = Ids::from_shape({1, ids.size()});
  std::copy(ids.begin(), ids.end(), idx.begin());
  Tape tape;
  NoGradGuard no_grad(tape);
  const Tensor<T> logits = model.forward(tape, idx);
  const std::size_t V = model.config.vocab_size;
  std::vector<std::vector<T>> rows;
  for (std::size_t t = 0; t < ids.size(); ++t) rows.emplace_back(logits.data() + t * V, logits.data() + (t + 1) * V);
  return rows;
}

// max |a - b| / max(1, max |b|)
template <class T>
double relative_difference(const std::vector<T>& a, const std::vector<T>& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0, scale = 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return diff / scale;
}

template <class T>
double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

// The sampler generate() replaces: before each token, one full forward over the context's last
// `window` tokens, where the window restarts from the last keep + 1 tokens whenever it would pass
// block_size (keep = block_size - 1: the last block_size tokens, always).
template <class T>
std::vector<std::int64_t> decode_by_full_forwards(const GPT<T>& model, std::vector<std::int64_t> context, std::size_t n,
                                                  const GenerateOptions& options, std::mt19937_64& rng) {
  const std::size_t block = model.config.block_size, keep = options.keep.value_or(block / 2);
  std::size_t start = context.size() > block ? context.size() - block : 0;
  std::vector<std::int64_t> out;
  for (std::size_t i = 0; i < n; ++i) {
    if (context.size() - start > block) start = context.size() - (keep + 1);
    const auto logits = full_logits(model, std::span(context).subspan(start)).back();
    const std::int64_t id = draw_token(std::vector<double>(logits.begin(), logits.end()), options, rng);
    context.push_back(id);
    out.push_back(id);
  }
  return out;
}

template <class T>
std::vector<std::int64_t> generated(const GPT<T>& model, const std::vector<std::int64_t>& prompt, std::size_t n,
                                    const GenerateOptions& options, std::mt19937_64& rng) {
  std::vector<std::int64_t> out;
  generate(model, prompt, n, options, rng, [&](std::int64_t id) { out.push_back(id); });
  return out;
}

}  // namespace

TEST_CASE_TEMPLATE("generate: the cached logits equal GPT::forward's at every position", T, float, double) {
  GPT<T> model(config(), 3);
  perturb(model, 4);
  const auto ids = random_ids(config().block_size, config().vocab_size, 5);
  const auto expected = full_logits(model, ids);
  double spread = 0;  // the logits must not be flat, or agreeing would say little
  for (const auto& row : expected) spread = std::max(spread, double(*std::ranges::max_element(row) - *std::ranges::min_element(row)));
  CHECK(spread > 1.0);

  SUBCASE("one token at a time") {
    auto cache = model.make_kv_cache();
    for (std::size_t t = 0; t < ids.size(); ++t) {
      CAPTURE(t);
      CHECK(relative_difference(forward_next(model, cache, ids[t]), expected[t]) < tolerance<T>());
      CHECK(cache.length() == t + 1);
    }
    CHECK(cache.full());
  }
  SUBCASE("a multi-row prefill, then one at a time") {
    auto cache = model.make_kv_cache();
    CHECK(relative_difference(forward_cached(model, cache, std::span(ids).first(5), Context{2}), expected[4]) < tolerance<T>());
    for (std::size_t t = 5; t < ids.size(); ++t) CHECK(relative_difference(forward_next(model, cache, ids[t]), expected[t]) < tolerance<T>());
  }
  SUBCASE("a refill after clear() holds the new window at positions 0..") {
    auto cache = model.make_kv_cache();
    for (std::size_t t = 0; t < ids.size(); ++t) forward_next(model, cache, ids[t]);
    cache.clear();
    const auto tail = std::span(ids).last(3);
    CHECK(relative_difference(forward_cached(model, cache, tail), full_logits(model, tail).back()) < tolerance<T>());
  }
}

TEST_CASE_TEMPLATE("generate: greedy generation equals greedy decoding by full forwards, across the block_size boundary", T,
                   float, double) {
  // Greedy text from a random model often settles on one token repeated, which would make the
  // comparison weak; with these seeds no prompt below does (checked at the end of the loop).
  GPT<T> model(config(), 26);
  perturb(model, 27);
  const std::size_t block = config().block_size, n = 4 * block;  // three refills and more
  for (const std::size_t prompt_length : {std::size_t(1), std::size_t(5), block + 3}) {  // the last is cropped
    const auto prompt = random_ids(prompt_length, config().vocab_size, 8 + prompt_length);
    for (const std::optional<std::size_t> keep : {std::optional<std::size_t>{}, std::optional<std::size_t>{0},
                                                  std::optional<std::size_t>{block - 1}}) {
      CAPTURE(prompt_length);
      CAPTURE(keep.value_or(99));
      const GenerateOptions greedy{.temperature = 0, .keep = keep};
      std::mt19937_64 unused_a(1), unused_b(1);
      const auto ours = generated(model, prompt, n, greedy, unused_a);
      CHECK(ours == decode_by_full_forwards(model, prompt, n, greedy, unused_b));
      CHECK(unused_a == std::mt19937_64(1));  // greedy draws no random number
      CHECK(std::ranges::any_of(ours, [&](std::int64_t id) { return id != ours[0]; }));  // not one token over and over
    }
  }
}

TEST_CASE("generate: with keep = block_size - 1 the sampled text is the cropping sampler's, draw for draw") {
  GPT<float> model(config(), 9);
  perturb(model, 10);
  const std::size_t block = config().block_size;
  const auto prompt = random_ids(3, config().vocab_size, 11);
  for (const GenerateOptions& options : {GenerateOptions{.temperature = 1.0, .keep = block - 1},
                                        GenerateOptions{.temperature = 0.7, .top_k = 4, .keep = block - 1}}) {
    std::mt19937_64 ours_rng(12), theirs_rng(12);
    const auto ours = generated(model, prompt, 5 * block, options, ours_rng);
    CHECK(ours == decode_by_full_forwards(model, prompt, 5 * block, options, theirs_rng));
    CHECK(ours_rng == theirs_rng);  // as many draws
    CHECK(std::set<std::int64_t>(ours.begin(), ours.end()).size() > 3);
  }
}

TEST_CASE("generate: bad input is a clear error and nothing is emitted") {
  const GPT<float> model(config(), 1);
  std::mt19937_64 rng(1);
  std::size_t emitted = 0;
  const auto run = [&](std::vector<std::int64_t> prompt, GenerateOptions options = {}) {
    generate(model, prompt, 5, options, rng, [&](std::int64_t) { ++emitted; });
  };
  CHECK_THROWS_WITH_AS(run({}), "generate: the prompt is empty (it needs at least one token)", ShapeError);
  CHECK_THROWS_WITH_AS(run({1, 11}), "generate: token id 11 is out of range [0, 11)", ShapeError);
  CHECK_THROWS_WITH_AS(run({-1, 2}), "generate: token id -1 is out of range [0, 11)", ShapeError);
  std::vector<std::int64_t> long_prompt(20, 1);
  long_prompt[0] = 99;  // cropped away by the window, still refused
  CHECK_THROWS_WITH_AS(run(long_prompt), "generate: token id 99 is out of range [0, 11)", ShapeError);
  CHECK_THROWS_WITH_AS(run({1}, {.temperature = -1}), doctest::Contains("temperature must be a finite number >= 0"), ConfigError);
  CHECK_THROWS_WITH_AS(run({1}, {.temperature = NAN}), doctest::Contains("temperature must be a finite number >= 0"), ConfigError);
  CHECK_THROWS_WITH_AS(run({1}, {.keep = 8}), "generate: keep 8 must be below block_size 8", ConfigError);
  CHECK(emitted == 0);

  auto cache = model.make_kv_cache();
  const std::vector<std::int64_t> nine(9, 1);
  CHECK_THROWS_WITH_AS(forward_cached(model, cache, nine),
                       "GPT: sequence length 9 after 0 cached positions exceeds block_size 8", ShapeError);
  CHECK_THROWS_WITH_AS(forward_cached(model, cache, std::span<const std::int64_t>{}), doctest::Contains("no token to run"), ShapeError);
  CHECK_THROWS_AS(forward_next(model, cache, 11), ShapeError);
  CHECK(cache.length() == 0);  // a refused call leaves the cache as it was
  const GPT<float> one_layer(GPTConfig{.vocab_size = 11, .block_size = 8, .n_layer = 1, .n_head = 2, .d_model = 16}, 1);
  auto other = one_layer.make_kv_cache();
  CHECK_THROWS_WITH_AS(forward_next(model, other, 1), "GPT: the KV cache has 1 layers, the model 2", ShapeError);
  const GPT<float> four_heads(GPTConfig{.vocab_size = 11, .block_size = 8, .n_layer = 2, .n_head = 4, .d_model = 16},
                              1);
  auto wrong_heads = four_heads.make_kv_cache();
  CHECK_THROWS_WITH_AS(forward_next(model, wrong_heads, 1), doctest::Contains("KV cache: needs q (1, H, n, 4)"),
                       ShapeError);
  CHECK(wrong_heads.length() == 0);
}
