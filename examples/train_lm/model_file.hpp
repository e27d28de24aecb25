// train_lm/model_file.hpp — a GPT and its model.safetensors file (SPEC section 2).
//
//   model_to_file(model, extra)   the parameters by SPEC name + config metadata (+ extra, e.g. vocab)
//   read_model_file(path)         the file, checked: metadata -> GPTConfig, one float dtype
//                                 throughout, a vocab that fits (names and shapes: when built)
//   with_model(checkpoint, f)     builds GPT<float> (F32) or GPT<double> (F64) and calls f(model)
#pragma once

#include "tensor_file.hpp"
#include "text_data.hpp"

#include <nn/gpt.hpp>

#include <filesystem>
#include <optional>
#include <string>

namespace train_lm {

using tapegrad::nn::GPT;
using tapegrad::nn::GPTConfig;

// A model file that passed every check, not yet turned into a model.
struct ModelFile {
  TensorFile file;
  std::string source;  // the path, for messages
  GPTConfig config;
  DType dtype = DType::F32;            // of every parameter
  std::optional<Vocabulary> vocab;     // absent for models not trained from text

  // The vocabulary; FileError when the file has none (eval and sample need one).
  const Vocabulary& require_vocab() const;
};

ModelFile read_model_file(const std::filesystem::path& path);

// The SPEC file for `model`: its parameters in order, metadata = config + `extra`.
template <class T>
TensorFile model_to_file(const GPT<T>& model, const Metadata& extra = {});

// Copy the file's parameters into `model` (same config and dtype T), checking
// that names, shapes and dtypes match exactly and nothing else is there.
// `prefix` is prepended to each parameter name (the training state stores "param.<name>").
template <class T>
void load_parameters(GPT<T>& model, const TensorFile& file, const std::string& source, const std::string& prefix = "");

template <class T>
std::unique_ptr<GPT<T>> build_model(const ModelFile& checkpoint) {
  auto model = std::make_unique<GPT<T>>(checkpoint.config, 0);
  load_parameters(*model, checkpoint.file, checkpoint.source);
  return model;
}

// f(GPT<float>&) or f(GPT<double>&), as the file's dtype says.
template <class F>
decltype(auto) with_model(const ModelFile& checkpoint, F&& f) {
  if (checkpoint.dtype == DType::F64) return f(*build_model<double>(checkpoint));
  return f(*build_model<float>(checkpoint));
}

}  // namespace train_lm
