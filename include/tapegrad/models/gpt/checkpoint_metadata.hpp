// tapegrad/models/gpt/checkpoint_metadata.hpp — a GPT checkpoint's __metadata__ (docs/contracts.md, section 2):
// format "tapegrad-gpt", version "1" and the model's sizes, all strings.
//
//   gpt_metadata(config)                  what a checkpoint of GPT(config) carries
//   gpt_config_from_metadata(meta, path)  the config back; FormatError naming `path`
//                                         when an entry is missing or not a positive count
#pragma once

#include "../../core/error.hpp"
#include "model.hpp"
#include "../../io/safetensors.hpp"

#include <filesystem>
#include <string>

namespace tapegrad::models {

inline io::Metadata gpt_metadata(const GPTConfig& c) {
  return {{"format", "tapegrad-gpt"},
          {"version", "1"},
          {"vocab_size", std::to_string(c.vocab_size)},
          {"block_size", std::to_string(c.block_size)},
          {"n_layer", std::to_string(c.n_layer)},
          {"n_head", std::to_string(c.n_head)},
          {"d_model", std::to_string(c.d_model)}};
}

// Counts are at most 9 digits, so a forged value cannot overflow.
inline GPTConfig gpt_config_from_metadata(const io::Metadata& meta, const std::filesystem::path& source) {
  auto get = [&](const std::string& key) -> std::string {
    auto it = meta.find(key);
    if (it == meta.end()) throw io::FormatError(source, "checkpoint metadata has no '" + key + "'");
    return it->second;
  };
  auto count = [&](const std::string& key) -> std::size_t {
    const std::string s = get(key);
    if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos)
      throw io::FormatError(source, "checkpoint metadata '" + key + "' is not a positive integer: '" + s + "'");
    return std::stoul(s);
  };
  if (get("format") != "tapegrad-gpt") throw io::FormatError(source, "checkpoint metadata 'format' is not tapegrad-gpt");
  if (get("version") != "1") throw io::FormatError(source, "checkpoint metadata 'version' " + get("version") + " is not 1");
  const GPTConfig c{count("vocab_size"), count("block_size"), count("n_layer"), count("n_head"), count("d_model")};
  if (const std::string problem = c.problem(); !problem.empty()) throw io::FormatError(source, "GPT config: " + problem);
  return c;
}

}  // namespace tapegrad::models
