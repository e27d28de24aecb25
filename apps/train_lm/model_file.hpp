// train_lm/model_file.hpp — a GPT and its model.safetensors file (docs/contracts.md, section 2),
// on top of tapegrad's io/ (untrusted-file checks, atomic writes).
//
//   save_model(path, model, extra)   the parameters by contract name, metadata = config + extra (vocab, step)
//   read_model_file(path)            the file, checked: metadata -> GPTConfig, one float dtype
//                                    throughout, the tensors the config needs (names, shapes)
//                                    and a vocab that fits; the expected layout is the modules'
//                                    (models::expected_parameter_shapes, shape-only: nothing is
//                                    allocated), so a forged block_size or n_layer cannot exhaust memory
//   with_model(checkpoint, f)        builds GPT<float> (F32) or GPT<double> (F64) and calls f(model)
#pragma once

#include "memory_estimate.hpp"
#include "text_data.hpp"

#include <tapegrad/io/checkpoint.hpp>
#include <tapegrad/models/gpt/checkpoint_metadata.hpp>
#include <tapegrad/models/gpt/model.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace train_lm {

namespace io = tapegrad::io;
namespace models = tapegrad::models;
using tapegrad::models::GPT;
using tapegrad::models::GPTConfig;

// The metadata value for `key`; io::FormatError naming the file when it is absent.
const std::string& metadata_value(const io::Safetensors& file, const std::string& key);

// A model file that passed every check, not yet turned into a model.
struct ModelFile {
  io::Safetensors file;
  GPTConfig config;
  io::DType dtype = io::DType::F32;  // of every parameter
  std::optional<Vocabulary> vocab;   // absent for models not trained from text

  // The vocabulary; io::FormatError when the file has none (eval and sample need one).
  const Vocabulary& require_vocab() const;
};

ModelFile read_model_file(const std::filesystem::path& path);
// The same checks on a safetensors file already read (from_bytes: the fuzz target's way in).
ModelFile read_model_file(io::Safetensors file);

template <class T>
void save_model(const std::filesystem::path& path, const GPT<T>& model, const io::Metadata& extra = {}) {
  io::Metadata metadata = models::gpt_metadata(model.config);
  metadata.insert(extra.begin(), extra.end());
  io::save_parameters(path, model.named_parameters(), metadata);
}

// A model with the checkpoint's config and parameters (all-or-nothing: a name,
// shape or dtype that does not match is an io::FormatError).
template <class T>
std::unique_ptr<GPT<T>> build_model(const ModelFile& checkpoint) {
  auto model = std::make_unique<GPT<T>>(checkpoint.config, 0);
  io::load_parameters(checkpoint.file, model->named_parameters());
  return model;
}

// f(GPT<float>&) or f(GPT<double>&), as the file's dtype says.
template <class F>
decltype(auto) with_model(const ModelFile& checkpoint, F&& f) {
  if (checkpoint.dtype == io::DType::F64) return f(*build_model<double>(checkpoint));
  return f(*build_model<float>(checkpoint));
}

}  // namespace train_lm
