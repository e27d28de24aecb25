// train_lm/model_file.cpp — reading a model file's metadata.
#include "model_file.hpp"

namespace train_lm {

const std::string& metadata_value(const io::Safetensors& file, const std::string& key) {
  const auto it = file.metadata().find(key);
  if (it == file.metadata().end()) file.fail("__metadata__ has no '" + key + "'");
  return it->second;
}

const Vocabulary& ModelFile::require_vocab() const {
  if (!vocab) file.fail("the checkpoint has no 'vocab' metadata (it was not trained from text)");
  return *vocab;
}

ModelFile read_model_file(const std::filesystem::path& path) {
  ModelFile m{io::Safetensors::read(path), {}, io::DType::F32, std::nullopt};
  try {
    m.config = GPTConfig::from_metadata(m.file.metadata());
  } catch (const std::invalid_argument& e) {
    m.file.fail(e.what());
  }
  m.dtype = io::checkpoint_dtype(m.file);
  if (const auto it = m.file.metadata().find("vocab"); it != m.file.metadata().end()) {
    m.vocab = Vocabulary::from_json(it->second, path.string());
    if (m.vocab->size() != m.config.vocab_size)
      m.file.fail("'vocab' lists " + std::to_string(m.vocab->size()) + " tokens but vocab_size is " +
                  std::to_string(m.config.vocab_size));
  }
  return m;
}

}  // namespace train_lm
