// train_lm/model_file.cpp — GPT parameters to and from safetensors.
#include "model_file.hpp"

#include <set>

namespace train_lm {

namespace {

// The one float dtype of every tensor in `file`.
DType float_dtype_of(const TensorFile& file, const std::string& source) {
  if (file.tensors.empty()) throw FileError(source + ": holds no tensors");
  const DType dtype = file.tensors.front().second.dtype;
  for (const auto& [name, t] : file.tensors) {
    if (t.dtype != DType::F32 && t.dtype != DType::F64)
      throw FileError(source + ": parameter '" + name + "' has dtype " + std::string(dtype_name(t.dtype)) +
                      "; a model holds F32 or F64");
    if (t.dtype != dtype)
      throw FileError(source + ": parameter '" + name + "' is " + std::string(dtype_name(t.dtype)) + " but '" +
                      file.tensors.front().first + "' is " + std::string(dtype_name(dtype)) + "; mixed precisions");
  }
  return dtype;
}

}  // namespace

const Vocabulary& ModelFile::require_vocab() const {
  if (!vocab) throw FileError(source + ": the checkpoint has no 'vocab' metadata (it was not trained from text)");
  return *vocab;
}

ModelFile read_model_file(const std::filesystem::path& path) {
  ModelFile m{read_tensor_file(path), path.string(), {}, DType::F32, std::nullopt};
  try {
    m.config = GPTConfig::from_metadata(m.file.metadata);
  } catch (const std::invalid_argument& e) {
    throw FileError(m.source + ": " + e.what());
  }
  m.dtype = float_dtype_of(m.file, m.source);
  if (const auto it = m.file.metadata.find("vocab"); it != m.file.metadata.end()) {
    m.vocab = Vocabulary::from_json(it->second, m.source);
    if (m.vocab->size() != m.config.vocab_size)
      throw FileError(m.source + ": 'vocab' lists " + std::to_string(m.vocab->size()) + " tokens but vocab_size is " +
                      std::to_string(m.config.vocab_size));
  }
  return m;
}

template <class T>
TensorFile model_to_file(const GPT<T>& model, const Metadata& extra) {
  TensorFile file;
  file.metadata = model.config.metadata();
  for (const auto& [key, value] : extra) file.metadata[key] = value;
  for (const auto& [name, p] : model.named_parameters()) file.add(name, to_raw(p.value()));
  return file;
}

template <class T>
void load_parameters(GPT<T>& model, const TensorFile& file, const std::string& source, const std::string& prefix) {
  std::set<std::string> expected;
  for (auto& [name, p] : model.named_parameters()) {
    const std::string key = prefix + name;
    expected.insert(key);
    const RawTensor& raw = file.at(key, source);
    if (raw.shape != p.shape())
      throw FileError(source + ": tensor '" + key + "' has shape " + tapegrad::shape_str(raw.shape) + ", the model needs " +
                      tapegrad::shape_str(p.shape()));
    p.value() = from_raw<T>(raw, source + ": tensor '" + key + "'");
  }
  for (const auto& [name, t] : file.tensors)
    if (name.starts_with(prefix) && !expected.count(name))
      throw FileError(source + ": unexpected tensor '" + name + "' (not a parameter of this model)");
}

template TensorFile model_to_file(const GPT<float>&, const Metadata&);
template TensorFile model_to_file(const GPT<double>&, const Metadata&);
template void load_parameters(GPT<float>&, const TensorFile&, const std::string&, const std::string&);
template void load_parameters(GPT<double>&, const TensorFile&, const std::string&, const std::string&);

}  // namespace train_lm
