// train_lm/model_file.hpp — a model and its model.safetensors file (docs/contracts.md, section 2,
// for a GPT; docs/llama.md for a Llama), on top of tapegrad's io/ (untrusted-file checks, atomic writes).
//
//   save_model(path, model, extra)   the parameters by name, metadata = family's format + sizes + extra (vocab, step)
//   read_model_file(path)            the file, checked: metadata -> family and sizes, one float dtype
//                                    throughout, the tensors the config needs (names, shapes)
//                                    and a vocab that fits; the expected layout is the modules'
//                                    (models::expected_parameter_shapes, shape-only: nothing is
//                                    allocated), so a forged block_size or n_layer cannot exhaust memory
//   with_model(checkpoint, f)        builds LanguageModel<float> (F32) or <double> (F64) and calls f(model)
#pragma once

#include "language_model.hpp"
#include "memory_estimate.hpp"
#include "number_text.hpp"
#include "text_data.hpp"

#include <tapegrad/io/checkpoint.hpp>
#include <tapegrad/models/gpt/checkpoint_metadata.hpp>
#include <tapegrad/models/gpt/model.hpp>

#include <cmath>
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

// Read options bounding a file read whole by usable_memory(); `what` names the file's kind.
io::ReadOptions within_memory(const std::string& what);

// The metadata value for `key`; io::FormatError naming the file when it is absent.
const std::string& metadata_value(const io::Safetensors& file, const std::string& key);

// A model file that passed every check, not yet turned into a model.
struct ModelFile {
  io::Safetensors file;
  GPTConfig config;                  // the sizes
  Family family = Family::gpt;       // from the format: tapegrad-gpt or tapegrad-llama
  std::size_t d_hidden = 0;          // a Llama's SwiGLU width
  io::DType dtype = io::DType::F32;  // of every parameter
  std::optional<Vocabulary> vocab;   // absent for models not trained from text

  // The vocabulary; io::FormatError when the file has none (eval and sample need one).
  const Vocabulary& require_vocab() const;
};

// Reads at most what usable_memory() allows (io::Safetensors::read checks the size first).
ModelFile read_model_file(const std::filesystem::path& path);
// The same checks on a safetensors file already read (from_bytes: the fuzz target's way in).
ModelFile read_model_file(io::Safetensors file);

// The weights of a usable model: finite, and within +-kMaxWeightMagnitude. A GPT
// trained by this recipe holds weights of order 1 (it starts at stddev 0.02); a
// diverged run's reach 1e28 (--lr 1e30), where a float forward overflows. One check,
// used by every save (save_model, save_checkpoint) and every model load (eval, sample,
// grad: build_model), so a saved model is never one they refuse. (--resume asks only
// for finite weights: the run's own checks of the loss and gradients take it from there.)
inline constexpr double kMaxWeightMagnitude = 1e4;

// "tensor 'wte' holds 5e+28 at flat index 3, beyond +-10000: ..." or nothing when the
// weights are usable.
template <class T>
std::optional<std::string> unusable_weight(const tapegrad::NamedTensors<T>& params) {
  if (auto bad = io::non_finite_value(params)) return bad;
  for (const auto& [name, p] : params)
    for (std::size_t i = 0; i < p.size(); ++i)
      if (std::abs(double(p.data()[i])) > kMaxWeightMagnitude)
        return "tensor '" + name + "' holds " + readable_number(p.data()[i]) + " at flat index " + std::to_string(i) +
               ", beyond the +-" + readable_number(kMaxWeightMagnitude) + " a trained model's weights stay within";
  return std::nullopt;
}

// Writes the model (`model`: a LanguageModel, a GPT or a Llama); refuses weights
// unusable_weight names (a runtime_error, nothing written).
template <class M>
void save_model(const std::filesystem::path& path, const M& model, const io::Metadata& extra = {}) {
  const auto params = model.named_parameters();
  if (const auto bad = unusable_weight(params))
    throw std::runtime_error(path.string() + ": not saved: " + *bad + " (the run diverged; try a smaller --lr)");
  io::Metadata metadata = checkpoint_metadata(model);
  metadata.insert(extra.begin(), extra.end());
  io::save_parameters(path, params, metadata);
}

// A model with the checkpoint's family, config and parameters (all-or-nothing: a name,
// shape or dtype that does not match is an io::FormatError, and so are weights
// unusable_weight names).
template <class T>
std::unique_ptr<LanguageModel<T>> build_model(const ModelFile& checkpoint) {
  auto model = std::make_unique<LanguageModel<T>>(checkpoint.family, checkpoint.config, 0, checkpoint.d_hidden);
  io::load_parameters(checkpoint.file, model->named_parameters());
  if (const auto bad = unusable_weight(model->named_parameters()))
    checkpoint.file.fail(*bad + ": the model is diverged or corrupt");
  return model;
}

// f(LanguageModel<float>&) or f(LanguageModel<double>&), as the file's dtype says.
template <class F>
decltype(auto) with_model(const ModelFile& checkpoint, F&& f) {
  if (checkpoint.dtype == io::DType::F64) return f(*build_model<double>(checkpoint));
  return f(*build_model<float>(checkpoint));
}

}  // namespace train_lm
