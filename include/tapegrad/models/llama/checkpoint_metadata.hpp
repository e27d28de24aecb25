// tapegrad/models/llama/checkpoint_metadata.hpp — a Llama checkpoint's __metadata__ (docs/llama.md):
// format "tapegrad-llama", version "1" and the model's sizes, all strings.
//
//   llama_metadata(config)                  what a checkpoint of Llama(config) carries
//   llama_config_from_metadata(meta, path)  the config back; FormatError naming `path`
//                                           when an entry is missing or not a positive count
#pragma once

#include "../../io/safetensors.hpp"
#include "../gpt/checkpoint_metadata.hpp"  // detail::metadata_count
#include "model.hpp"

#include <filesystem>
#include <string>

namespace tapegrad::models {

inline const std::string kLlamaFormat = "tapegrad-llama";

inline io::Metadata llama_metadata(const LlamaConfig& c) {
  return {{"format", kLlamaFormat},
          {"version", "1"},
          {"vocab_size", std::to_string(c.vocab_size)},
          {"block_size", std::to_string(c.block_size)},
          {"n_layer", std::to_string(c.n_layer)},
          {"n_head", std::to_string(c.n_head)},
          {"d_model", std::to_string(c.d_model)},
          {"d_hidden", std::to_string(c.d_hidden)}};
}

inline LlamaConfig llama_config_from_metadata(const io::Metadata& meta, const std::filesystem::path& source) {
  const detail::MetadataReader read{meta, source};
  if (read.get("format") != kLlamaFormat)
    throw io::FormatError(source, "checkpoint metadata 'format' is not " + kLlamaFormat);
  if (read.get("version") != "1")
    throw io::FormatError(source, "checkpoint metadata 'version' " + read.get("version") + " is not 1");
  const LlamaConfig c{read.count("vocab_size"), read.count("block_size"), read.count("n_layer"),
                      read.count("n_head"),     read.count("d_model"),    read.count("d_hidden")};
  if (const std::string problem = c.problem(); !problem.empty())
    throw io::FormatError(source, "Llama config: " + problem);
  return c;
}

}  // namespace tapegrad::models
