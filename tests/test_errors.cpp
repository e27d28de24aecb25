// errors: every public entry point given a bad argument throws a tapegrad::Error of the
// kind core/error.hpp assigns to what went wrong, with a one-line message.
#include <tapegrad/io/atomic_file.hpp>
#include <tapegrad/models/gpt/sampling.hpp>
#include <tapegrad/tapegrad.hpp>

#include <doctest/doctest.h>

#include <cstddef>
#include <filesystem>
#include <random>
#include <string>
#include <typeinfo>
#include <vector>

using namespace tapegrad;

namespace {

// f() must throw an Expected, which must be a tapegrad::Error whose message is one non-empty line.
template <class Expected, class F>
void check_throws(const char* entry_point, F&& f) {
  const std::string name = entry_point;
  CAPTURE(name);
  try {
    f();
    FAIL("no exception");
  } catch (const std::exception& e) {
    INFO("thrown: " << typeid(e).name() << ": " << e.what());
    CHECK(dynamic_cast<const Error*>(&e) != nullptr);
    CHECK(dynamic_cast<const Expected*>(&e) != nullptr);
    const std::string message = e.what();
    CHECK(!message.empty());
    CHECK(message.find('\n') == std::string::npos);
  }
}

models::GPTConfig tiny() { return {.vocab_size = 5, .block_size = 4, .n_layer = 1, .n_head = 2, .d_model = 8}; }

}  // namespace

TEST_CASE("errors: the core's entry points throw tapegrad::Error kinds") {
  check_throws<ConfigError>("Context(0)", [] { Context{0}; });
  check_throws<ShapeError>("Tensor::from", [] { Tensor<float>::from({2, 2}, {1, 2, 3}); });
  check_throws<ShapeError>("Tensor::item", [] { Tensor<float>::zeros({2}).item(); });
  check_throws<StateError>("Tensor::grad", [] { Tensor<float>::zeros({2}, true).grad(); });
  check_throws<StateError>("set_requires_grad on a non-leaf", [] {
    Tape tape;
    Tensor<float> a = Tensor<float>::zeros({2}, true);
    ops::add(tape, a, a).set_requires_grad(false);
  });
  check_throws<ShapeError>("Tape::backward of a non-scalar", [] {
    Tape tape;
    tape.backward(ops::add(tape, Tensor<float>::zeros({2}, true), Tensor<float>::zeros({2})));
  });
  check_throws<StateError>("Tape::backward of a leaf", [] {
    Tape tape;
    tape.backward(Tensor<float>::zeros({}, false));
  });
}

TEST_CASE("errors: the ops' entry points throw tapegrad::Error kinds") {
  Tape tape;
  const auto a = Tensor<float>::zeros({2, 3}), b = Tensor<float>::zeros({2, 3});
  check_throws<ShapeError>("ops::matmul", [&] { ops::matmul(tape, a, b); });
  check_throws<ShapeError>("ops::add", [&] { ops::add(tape, a, Tensor<float>::zeros({4})); });
  check_throws<ShapeError>("ops::softmax", [&] { ops::softmax(tape, Tensor<float>::zeros({})); });
  check_throws<ShapeError>("ops::layernorm",
                           [&] { ops::layernorm(tape, a, Tensor<float>::zeros({2}), Tensor<float>::zeros({3})); });
  check_throws<ShapeError>("ops::split_heads", [&] { ops::split_heads(tape, Tensor<float>::zeros({1, 2, 3}), 2); });
  check_throws<ShapeError>("ops::causal_attention", [&] {
    ops::causal_attention(tape, a, a, Tensor<float>::zeros({3, 2}));
  });
  check_throws<ShapeError>("ops::cross_entropy", [&] { ops::cross_entropy(tape, a, Ids{0, 3}); });
  check_throws<ShapeError>("ops::embedding", [&] { ops::embedding(tape, a, Ids{2}); });
}

TEST_CASE("errors: the optimisers, the schedule and the train step throw tapegrad::Error kinds") {
  const NamedTensors<float> params{{"w", Tensor<float>::zeros({2, 2}, true)}};
  check_throws<ConfigError>("AdamW options", [&] { nn::AdamW<float>(params, {.beta1 = 1.0}); });
  check_throws<ConfigError>("SGD options", [&] { nn::SGD<float>(params, {.momentum = -1}); });
  check_throws<ConfigError>("Optimizer::set_lr", [&] { nn::AdamW<float>(params).set_lr(-1); });
  check_throws<FormatError>("Optimizer::load_state", [&] { nn::AdamW<float>(params).load_state({}, 0); });
  check_throws<ConfigError>("clip_grad_norm", [&] { nn::clip_grad_norm(params, 0.0f); });
  check_throws<ConfigError>("warmup_cosine_lr", [] { nn::warmup_cosine_lr(-1, 1e-3, 0, 10, 1e-4); });
  check_throws<ShapeError>("train_step with a non-scalar loss", [&] {
    nn::AdamW<float> opt(params);
    nn::train_step(opt, 1e-3, 1.0, [&](Tape& tape) { return ops::add(tape, params[0].second, params[0].second); });
  });
}

TEST_CASE("errors: the GPT, its presets and the sampler throw tapegrad::Error kinds") {
  check_throws<ConfigError>("GPT config", [] {
    models::GPT<float>({.vocab_size = 5, .block_size = 4, .n_layer = 1, .n_head = 3, .d_model = 8}, 1);
  });
  check_throws<ConfigError>("find_preset", [] { models::find_preset("huge"); });
  const models::GPT<float> model(tiny(), 1);
  check_throws<ShapeError>("GPT::forward past block_size", [&] {
    Tape tape;
    model.forward(tape, Ids::from_shape({1, 5}));
  });
  check_throws<ConfigError>("KVCache of no layers", [] { nn::KVCache<float>({.layers = 0}); });
  check_throws<StateError>("GPT::forward with a cache on a recording tape", [&] {
    auto cache = model.make_kv_cache();
    Tape tape;
    Ids one = Ids::from_shape({1, 1});
    one(0, 0) = 1;
    model.forward(tape, one, &cache);
  });
  std::mt19937_64 rng(1);
  check_throws<ShapeError>("generate with an empty prompt",
                           [&] { models::generate(model, {}, 1, {}, rng, [](std::int64_t) {}); });
  check_throws<ConfigError>("generate with a negative temperature", [&] {
    models::generate(model, std::vector<std::int64_t>{1}, 1, {.temperature = -1}, rng, [](std::int64_t) {});
  });
}

TEST_CASE("errors: the file functions throw tapegrad::Error kinds") {
  const std::filesystem::path missing =
      std::filesystem::temp_directory_path() / "tapegrad-no-such-dir" / "x.safetensors";
  const models::GPT<float> model(tiny(), 1);
  check_throws<FormatError>("io::load_parameters of a missing file",
                            [&] { io::load_parameters(missing, model.named_parameters()); });
  check_throws<SystemError>("io::write_file_atomically into a missing directory",
                            [&] { io::write_file_atomically(missing, "x"); });
  const std::vector<std::byte> garbage(12, std::byte{0xff});
  check_throws<FormatError>("io::Safetensors::from_bytes of garbage", [&] { io::Safetensors::from_bytes(garbage); });
  check_throws<FormatError>("gpt_config_from_metadata", [] {
    models::gpt_config_from_metadata({{"format", "other"}}, "m.safetensors");
  });
}
