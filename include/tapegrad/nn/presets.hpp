// tapegrad/nn/presets.hpp — SPEC section 4's named presets in one table: the model's
// sizes, the batch, the default number of steps and the training recipe. train_lm,
// bench_train and (through `train_lm presets --json`) scripts/reference_torch.py read it.
#pragma once

#include "../core/error.hpp"
#include "gpt.hpp"
#include "train_step.hpp"

#include <array>
#include <cstdint>
#include <string>

namespace tapegrad::nn {

struct Preset {
  const char* name;
  std::size_t n_layer, n_head, d_model, block_size;
  std::size_t batch;
  std::int64_t steps;  // train_lm's --steps default
  const char* purpose;
  Recipe recipe;  // the SPEC's, for all four

  GPTConfig model(std::size_t vocab_size) const { return {vocab_size, block_size, n_layer, n_head, d_model}; }
};

inline constexpr std::array<Preset, 4> kPresets{{
    {"tiny", 2, 4, 32, 32, 4, 200, "tests and smoke runs", {}},
    {"small", 4, 4, 128, 64, 12, 2000, "the usual CPU character-LM recipe", {}},
    {"medium", 6, 6, 384, 256, 8, 5000, "the usual character-LM model, smaller batch", {}},
    {"long", 4, 4, 128, 1024, 4, 2000, "long context: attention dominates", {}},
}};

inline const Preset& find_preset(const std::string& name) {
  std::string known;
  for (const auto& p : kPresets) {
    if (name == p.name) return p;
    known += (known.empty() ? "" : ", ") + std::string(p.name);
  }
  throw ConfigError("unknown preset '" + name + "' (known: " + known + ")");
}

}  // namespace tapegrad::nn
