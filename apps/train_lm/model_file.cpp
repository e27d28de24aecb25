// train_lm/model_file.cpp — reading a model file: metadata, then tensors, then vocabulary.
#include "model_file.hpp"

#include <set>

namespace train_lm {

namespace {

// The config in words, for messages: "vocab_size 65, block_size 64, n_layer 4, n_head 4, d_model 128".
std::string describe(const GPTConfig& c) {
  return "vocab_size " + std::to_string(c.vocab_size) + ", block_size " + std::to_string(c.block_size) + ", n_layer " +
         std::to_string(c.n_layer) + ", n_head " + std::to_string(c.n_head) + ", d_model " + std::to_string(c.d_model);
}

// The file's tensors are exactly the config's parameters (names and shapes; the dtype
// is one of F32, F64 throughout, checked by io::checkpoint_dtype). Fails on the first
// mismatch. The expected list is only built once n_layer is bounded by the file's
// tensor count, so its size, like every shape it is compared with, is bounded by the file.
void check_parameter_tensors(const io::Safetensors& file, const ModelFile& m) {
  const GPTConfig& config = m.config;
  const std::string needs = "the metadata (" + describe(config) + ") needs ";
  if (config.n_layer > file.tensors().size())
    file.fail(needs + "more tensors than the " + std::to_string(file.tensors().size()) + " the file holds");
  const tapegrad::nn::ParameterShapes expected =
      m.family == Family::gpt ? tapegrad::models::expected_parameter_shapes(config)
                              : tapegrad::models::expected_parameter_shapes(llama_config(config, m.d_hidden));
  for (const auto& [name, shape] : expected) {
    if (!file.contains(name)) file.fail("no tensor '" + name + "': " + needs + "it");
    const tapegrad::Shape& stored = file.tensor(name).shape;
    if (stored != shape)
      file.fail("tensor '" + name + "' has shape " + tapegrad::shape_str(stored) + ", " + needs +
                tapegrad::shape_str(shape));
  }
  if (file.tensors().size() == expected.size()) return;  // names are unique, so the two sets are equal
  std::set<std::string> names;
  for (const auto& entry : expected) names.insert(entry.first);
  for (const auto& t : file.tensors())
    if (!names.contains(t.name))
      file.fail("unexpected tensor '" + t.name + "': not a parameter of a " +
                (m.family == Family::gpt ? "GPT" : "Llama"));
}

}  // namespace

const std::string& metadata_value(const io::Safetensors& file, const std::string& key) {
  const auto it = file.metadata().find(key);
  if (it == file.metadata().end()) file.fail("__metadata__ has no '" + key + "'");
  return it->second;
}

const Vocabulary& ModelFile::require_vocab() const {
  if (!vocab) file.fail("the checkpoint has no 'vocab' metadata (it was not trained from text)");
  return *vocab;
}

io::ReadOptions within_memory(const std::string& what) {
  const MemoryLimit memory = usable_memory();
  return {.max_bytes = std::uint64_t(memory.bytes), .what = what + " (the memory " + memory.name + ")"};
}

ModelFile read_model_file(const std::filesystem::path& path) {
  return read_model_file(io::Safetensors::read(path, within_memory("a model file")));
}

ModelFile read_model_file(io::Safetensors file) {
  ModelFile m{std::move(file), {}, Family::gpt, 0, io::DType::F32, std::nullopt};
  if (const auto format = m.file.metadata().find("format");
      format != m.file.metadata().end() &&
      format->second == models::kLlamaFormat) {  // else a GPT's, or an error naming tapegrad-gpt
    const models::LlamaConfig c = models::llama_config_from_metadata(m.file.metadata(), m.file.path());
    m.family = Family::llama;
    m.config = {c.vocab_size, c.block_size, c.n_layer, c.n_head, c.d_model};
    m.d_hidden = c.d_hidden;
  } else {
    m.config = models::gpt_config_from_metadata(m.file.metadata(), m.file.path());
  }
  m.dtype = io::checkpoint_dtype(m.file);
  check_parameter_tensors(m.file, m);
  if (const auto it = m.file.metadata().find("vocab"); it != m.file.metadata().end()) {
    m.vocab = Vocabulary::from_json(it->second, m.file.path().string());
    if (m.vocab->size() != m.config.vocab_size)
      m.file.fail("'vocab' lists " + std::to_string(m.vocab->size()) + " tokens but vocab_size is " +
                  std::to_string(m.config.vocab_size));
  }
  return m;
}

}  // namespace train_lm
