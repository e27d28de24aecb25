// tapegrad/nn/gpt.hpp — the GPT of ../shared/SPEC.md section 1, and the named presets.
//
//   x      = wte[idx] + wpe[0:T]             (B, T, d)
//   x      = block_i(x), i = 0..L-1          (B, T, d)   pre-LN, causal
//   logits = ln_f(x) wte^T                   (B, T, V)   weight tying
//   loss   = mean -log softmax(logits)[target]
#pragma once

#include "../ops/cross_entropy.hpp"
#include "transformer.hpp"

#include <array>
#include <filesystem>
#include <map>
#include <string>

namespace tapegrad::nn {

struct GPTConfig {
  std::size_t vocab_size = 0, block_size = 0, n_layer = 0, n_head = 0, d_model = 0;

  // What is wrong with the config ("n_layer must be positive"), or "" when nothing is.
  std::string problem() const {
    if (vocab_size == 0) return "vocab_size must be positive";
    if (block_size == 0) return "block_size must be positive";
    if (n_layer == 0) return "n_layer must be positive";
    if (n_head == 0) return "n_head must be positive";
    if (d_model == 0 || d_model % n_head != 0)
      return "d_model " + std::to_string(d_model) + " must be a positive multiple of n_head " + std::to_string(n_head);
    return "";
  }
  void validate() const {
    if (const std::string p = problem(); !p.empty()) throw ConfigError("GPT config: " + p);
  }

  // The checkpoint's __metadata__ entries that describe the model (SPEC section 2).
  std::map<std::string, std::string> metadata() const {
    return {{"format", "tapegrad-gpt"},
            {"version", "1"},
            {"vocab_size", std::to_string(vocab_size)},
            {"block_size", std::to_string(block_size)},
            {"n_layer", std::to_string(n_layer)},
            {"n_head", std::to_string(n_head)},
            {"d_model", std::to_string(d_model)}};
  }

  // FormatError naming `source` (the file) when an entry is missing or wrong.
  static GPTConfig from_metadata(const std::map<std::string, std::string>& meta, const std::filesystem::path& source) {
    auto fail = [&](const std::string& reason) { throw FormatError(source, reason); };
    auto get = [&](const std::string& key) -> std::string {
      auto it = meta.find(key);
      if (it == meta.end()) fail("checkpoint metadata has no '" + key + "'");
      return it->second;
    };
    auto count = [&](const std::string& key) -> std::size_t {
      const std::string s = get(key);
      if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos)
        fail("checkpoint metadata '" + key + "' is not a positive integer: '" + s + "'");
      return std::stoul(s);
    };
    if (get("format") != "tapegrad-gpt") fail("checkpoint metadata 'format' is not tapegrad-gpt");
    if (get("version") != "1") fail("checkpoint metadata 'version' " + get("version") + " is not 1");
    GPTConfig c{count("vocab_size"), count("block_size"), count("n_layer"), count("n_head"), count("d_model")};
    if (const std::string p = c.problem(); !p.empty()) fail("GPT config: " + p);
    return c;
  }
};

// SPEC section 4.
struct Preset {
  const char* name;
  std::size_t n_layer, n_head, d_model, block_size, batch;
  const char* purpose;
};
inline constexpr std::array<Preset, 4> kPresets{{
    {"tiny", 2, 4, 32, 32, 4, "tests and smoke runs"},
    {"small", 4, 4, 128, 64, 12, "the usual CPU character-LM recipe"},
    {"medium", 6, 6, 384, 256, 8, "the usual character-LM model, smaller batch"},
    {"long", 4, 4, 128, 1024, 4, "long context: attention dominates"},
}};

inline const Preset& find_preset(const std::string& name) {
  std::string known;
  for (const auto& p : kPresets) {
    if (name == p.name) return p;
    known += (known.empty() ? "" : ", ") + std::string(p.name);
  }
  throw ConfigError("unknown preset '" + name + "' (known: " + known + ")");
}

template <class T>
class GPT : public Module<T> {
 public:
  GPT(const GPTConfig& config, std::uint64_t seed) : config(config), ln_f((config.validate(), config.d_model)) {
    Rng rng(seed);
    wte = this->register_parameter("wte", normal_init<T>({config.vocab_size, config.d_model}, 0.02, rng));
    wpe = this->register_parameter("wpe", normal_init<T>({config.block_size, config.d_model}, 0.02, rng));
    this->register_module("h", h);
    for (std::size_t i = 0; i < config.n_layer; ++i) h.emplace_back(config.d_model, config.n_head, config.n_layer, rng);
    this->register_module("ln_f", ln_f);
  }

  // idx (B, T) token ids, T <= block_size -> logits (B, T, V)
  Tensor<T> forward(Tape& tape, const Ids& idx) const {
    if (idx.dimension() != 2 || idx.shape()[1] == 0)
      throw ShapeError("GPT: token ids must have shape [B, T] with T >= 1, got " + shape_str(shape_of(idx)));
    const std::size_t T_len = idx.shape()[1];
    if (T_len > config.block_size)
      throw ShapeError("GPT: sequence length " + std::to_string(T_len) + " exceeds block_size " +
                                  std::to_string(config.block_size));
    Ids positions = Ids::from_shape({T_len});
    for (std::size_t t = 0; t < T_len; ++t) positions(t) = std::int64_t(t);

    Tensor<T> x = ops::add(tape, ops::embedding(tape, wte, idx), ops::embedding(tape, wpe, positions));  // (B, T, d)
    for (std::size_t i = 0; i < h.size(); ++i) x = h[i].forward(tape, x);                                // (B, T, d)
    x = ln_f.forward(tape, x);                                                                           // (B, T, d)
    return ops::matmul(tape, x, wte, {.transpose_b = true});                                             // (B, T, V)
  }

  // Mean next-token cross-entropy; targets (B, T).
  Tensor<T> loss(Tape& tape, const Ids& idx, const Ids& targets) const {
    return ops::cross_entropy(tape, forward(tape, idx), targets);
  }

  GPTConfig config;
  Tensor<T> wte, wpe;
  ModuleList<TransformerBlock<T>> h;
  LayerNorm<T> ln_f;
};

}  // namespace tapegrad::nn
