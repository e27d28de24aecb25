// tapegrad/models/gpt/presets.hpp — the four named GPT sizes of docs/contracts.md,
// "Presets": the model's sizes, the batch and the training recipe (nn::Recipe, the same
// for all four). They are fixed: benchmarks and the PyTorch comparisons use them.
// Applications add their own run settings on top (apps/train_lm/presets.hpp: the
// default number of steps, how often to evaluate, presets tuned for a machine).
#pragma once

#include "../../core/error.hpp"
#include "../../nn/train_step.hpp"
#include "model.hpp"

#include <array>
#include <cstddef>
#include <string>

namespace tapegrad::models {

struct Preset {
  const char* name;
  std::size_t n_layer, n_head, d_model, block_size;
  std::size_t batch;
  nn::Recipe recipe;

  GPTConfig config(std::size_t vocab_size) const { return {vocab_size, block_size, n_layer, n_head, d_model}; }
};

inline constexpr std::array<Preset, 4> kPresets{{
    {"tiny", 2, 4, 32, 32, 4, {}},
    {"small", 4, 4, 128, 64, 12, {}},
    {"medium", 6, 6, 384, 256, 8, {}},
    {"long", 4, 4, 128, 1024, 4, {}},
}};

// The preset called `name`, from `presets` (default: the four above); ConfigError
// naming the known ones otherwise.
template <class Presets = decltype(kPresets)>
const auto& find_preset(const std::string& name, const Presets& presets = kPresets) {
  std::string known;
  for (const auto& p : presets) {
    if (name == p.name) return p;
    known += (known.empty() ? "" : ", ") + std::string(p.name);
  }
  throw ConfigError("unknown preset '" + name + "' (known: " + known + ")");
}

}  // namespace tapegrad::models
