// train_lm/language_model.hpp — the model families train_lm trains, behind one interface.
//
// A preset names its family (models::Preset::family): "gpt" (tapegrad/models/gpt/) or
// "llama" (tapegrad/models/llama/). Both are sized by the same five numbers (vocab_size,
// block_size, n_layer, n_head, d_model: a GPTConfig here); a Llama's SwiGLU width is
// models::swiglu_hidden_size(d_model) unless a model file says otherwise. A checkpoint
// records the family in its __metadata__ format ("tapegrad-gpt", "tapegrad-llama"), so
// eval, sample, grad and --resume build the right one from the file alone.
//
//   LanguageModel<T> model(family, sizes, seed[, d_hidden])
//   model.loss(tape, inputs, targets), model.named_parameters(), model.metadata(), ...
//   model.generate(prompt, n, options, rng, emit)     KV-cached sampling of either family
#pragma once

#include <tapegrad/core/error.hpp>
#include <tapegrad/models/gpt/checkpoint_metadata.hpp>
#include <tapegrad/models/gpt/sampling.hpp>
#include <tapegrad/models/llama/checkpoint_metadata.hpp>
#include <tapegrad/models/llama/sampling.hpp>

#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>

namespace train_lm {

enum class Family { gpt, llama };

inline const char* family_name(Family f) { return f == Family::gpt ? "gpt" : "llama"; }

// "gpt" or "llama"; tapegrad::ConfigError otherwise.
inline Family family_named(const std::string& name) {
  if (name == "gpt") return Family::gpt;
  if (name == "llama") return Family::llama;
  throw tapegrad::ConfigError("unknown model family '" + name + "' (known: gpt, llama)");
}

// A Llama of these sizes; d_hidden 0 takes the default width.
inline tapegrad::models::LlamaConfig llama_config(const tapegrad::models::GPTConfig& c, std::size_t d_hidden = 0) {
  return {c.vocab_size, c.block_size, c.n_layer,
          c.n_head,     c.d_model,    d_hidden ? d_hidden : tapegrad::models::swiglu_hidden_size(c.d_model)};
}

// What is wrong with these sizes for `family`, or "".
inline std::string config_problem(Family family, const tapegrad::models::GPTConfig& c, std::size_t d_hidden = 0) {
  return family == Family::gpt ? c.problem() : llama_config(c, d_hidden).problem();
}

// A checkpoint's metadata for a model of either family: its format, version and sizes.
template <class T>
tapegrad::io::Metadata checkpoint_metadata(const tapegrad::models::GPT<T>& model) {
  return tapegrad::models::gpt_metadata(model.config);
}
template <class T>
tapegrad::io::Metadata checkpoint_metadata(const tapegrad::models::Llama<T>& model) {
  return tapegrad::models::llama_metadata(model.config);
}

template <class T>
class LanguageModel {
 public:
  LanguageModel(Family family, const tapegrad::models::GPTConfig& sizes, std::uint64_t seed, std::size_t d_hidden = 0)
      : family_(family), sizes_(sizes) {
    if (family == Family::gpt)
      gpt_ = std::make_unique<tapegrad::models::GPT<T>>(sizes, seed);
    else
      llama_ = std::make_unique<tapegrad::models::Llama<T>>(llama_config(sizes, d_hidden), seed);
  }

  Family family() const { return family_; }
  const tapegrad::models::GPTConfig& sizes() const { return sizes_; }
  const tapegrad::nn::Module<T>& module() const {
    return gpt_ ? static_cast<const tapegrad::nn::Module<T>&>(*gpt_) : *llama_;
  }
  tapegrad::NamedTensors<T> named_parameters() const { return module().named_parameters(); }
  std::size_t parameter_count() const { return module().parameter_count(); }
  void zero_grad() const { module().zero_grad(); }
  // Each block through tapegrad::checkpoint (--checkpoint-activations): less memory, the same gradients.
  void set_checkpoint_blocks(bool on) {
    if (gpt_)
      gpt_->checkpoint_blocks = on;
    else
      llama_->checkpoint_blocks = on;
  }

  tapegrad::Tensor<T> loss(tapegrad::Tape& tape, const tapegrad::Ids& inputs, const tapegrad::Ids& targets) const {
    return gpt_ ? gpt_->loss(tape, inputs, targets) : llama_->loss(tape, inputs, targets);
  }

  // The checkpoint metadata of this model: the family's format, version and sizes.
  tapegrad::io::Metadata metadata() const { return gpt_ ? checkpoint_metadata(*gpt_) : checkpoint_metadata(*llama_); }

  void generate(std::span<const std::int64_t> prompt, std::size_t n_tokens,
                const tapegrad::models::GenerateOptions& options, std::mt19937_64& rng,
                const std::function<void(std::int64_t)>& emit) const {
    if (gpt_)
      tapegrad::models::generate(*gpt_, prompt, n_tokens, options, rng, emit);
    else
      tapegrad::models::generate(*llama_, prompt, n_tokens, options, rng, emit);
  }

 private:
  Family family_;
  tapegrad::models::GPTConfig sizes_;
  std::unique_ptr<tapegrad::models::GPT<T>> gpt_;
  std::unique_ptr<tapegrad::models::Llama<T>> llama_;
};

template <class T>
tapegrad::io::Metadata checkpoint_metadata(const LanguageModel<T>& model) {
  return model.metadata();
}

}  // namespace train_lm
