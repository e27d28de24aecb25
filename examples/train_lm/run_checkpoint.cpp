// train_lm/run_checkpoint.cpp — saving and restoring a training run.
#include "run_checkpoint.hpp"

#include "number_text.hpp"

#include <sstream>

namespace train_lm {

namespace {

const std::string kStateFormat = "tapegrad-train-state";
const std::string kParamPrefix = "param.";

template <class T>
T metadata_number(const TensorFile& file, const std::string& key, const std::string& source) {
  const std::string& text = file.meta(key, source);
  const auto value = parse_number<T>(text);
  if (!value) throw FileError(source + ": __metadata__ '" + key + "' is not a number: '" + text + "'");
  return *value;
}

std::string hex(std::uint64_t x) {
  std::ostringstream s;
  s << std::hex << x;
  return s.str();
}

}  // namespace

bool CheckpointDir::holds_checkpoint() const {
  std::error_code ec;
  return std::filesystem::exists(model(), ec) || std::filesystem::exists(state(), ec);
}

void CheckpointDir::prepare_for_writing() const {
  const std::string where = "--out " + dir.string() + ": ";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error(where + "cannot create the directory: " + ec.message());
  check_writable_directory(dir, "--out " + dir.string());
}

Metadata RunSettings::to_metadata() const {
  Metadata m = model.metadata();
  m["format"] = kStateFormat;
  m["batch"] = std::to_string(batch);
  m["lr"] = exact_text(lr);
  m["seed"] = std::to_string(seed);
  m["data_fingerprint"] = hex(data_fingerprint);
  m["data_source"] = data_source;
  m["steps"] = std::to_string(steps);
  m["threads"] = std::to_string(threads);
  return m;
}

RunSettings RunSettings::from_metadata(const TensorFile& file, const std::string& source) {
  if (file.meta("format", source) != kStateFormat)
    throw FileError(source + ": not a training state (format is '" + file.meta("format", source) + "')");
  Metadata model_meta = file.metadata;
  model_meta["format"] = "tapegrad-gpt";
  RunSettings s;
  try {
    s.model = GPTConfig::from_metadata(model_meta);
  } catch (const std::invalid_argument& e) {
    throw FileError(source + ": " + e.what());
  }
  s.batch = metadata_number<std::size_t>(file, "batch", source);
  s.lr = metadata_number<double>(file, "lr", source);
  s.seed = metadata_number<std::uint64_t>(file, "seed", source);
  const std::string& fp = file.meta("data_fingerprint", source);
  std::uint64_t fingerprint_value = 0;
  const auto r = std::from_chars(fp.data(), fp.data() + fp.size(), fingerprint_value, 16);
  if (r.ec != std::errc() || r.ptr != fp.data() + fp.size()) throw FileError(source + ": bad data_fingerprint '" + fp + "'");
  s.data_fingerprint = fingerprint_value;
  s.data_source = file.meta("data_source", source);
  s.steps = metadata_number<std::int64_t>(file, "steps", source);
  s.threads = metadata_number<int>(file, "threads", source);
  return s;
}

std::string settings_conflict(const RunSettings& saved, const RunSettings& now) {
  auto differs = [](const std::string& option, const auto& given, const auto& saved_value) {
    std::ostringstream s;
    s << option << " " << given << " differs from the checkpoint's " << saved_value;
    return s.str();
  };
  if (now.data_fingerprint != saved.data_fingerprint)
    return "the training text (" + now.data_source + ") is not the one the checkpoint was trained on (" +
           saved.data_source + ")";
  if (now.model.n_layer != saved.model.n_layer) return differs("--layers", now.model.n_layer, saved.model.n_layer);
  if (now.model.n_head != saved.model.n_head) return differs("--heads", now.model.n_head, saved.model.n_head);
  if (now.model.d_model != saved.model.d_model) return differs("--dim", now.model.d_model, saved.model.d_model);
  if (now.model.block_size != saved.model.block_size) return differs("--block", now.model.block_size, saved.model.block_size);
  if (now.model.vocab_size != saved.model.vocab_size) return differs("vocabulary size", now.model.vocab_size, saved.model.vocab_size);
  if (now.batch != saved.batch) return differs("--batch", now.batch, saved.batch);
  if (now.lr != saved.lr) return differs("--lr", exact_text(now.lr), exact_text(saved.lr));
  if (now.seed != saved.seed) return differs("--seed", now.seed, saved.seed);
  return "";
}

void save_checkpoint(const CheckpointDir& dir, const GPT<float>& model, const tapegrad::nn::AdamW<float>& optimizer,
                     const TrainState& state, const Vocabulary& vocab) {
  TensorFile state_file;
  state_file.metadata = state.settings.to_metadata();
  std::ostringstream rng;
  rng << state.sampler;
  state_file.metadata["step"] = std::to_string(state.step);
  state_file.metadata["rng"] = rng.str();
  state_file.metadata["elapsed_s"] = exact_text(state.elapsed_s);
  state_file.metadata["vocab"] = vocab.to_json();
  for (const auto& [name, p] : model.named_parameters()) state_file.add(kParamPrefix + name, to_raw(p.value()));
  for (const auto& [name, moment] : optimizer.state()) state_file.add(name, to_raw(moment.value()));
  write_tensor_file(dir.state(), state_file);

  write_tensor_file(dir.model(), model_to_file(model, {{"vocab", vocab.to_json()}, {"step", std::to_string(state.step)}}));
}

SavedState read_state_file(const CheckpointDir& dir) {
  SavedState saved{read_tensor_file(dir.state()), dir.state().string(), {}};
  TrainState& s = saved.state;
  s.settings = RunSettings::from_metadata(saved.file, saved.source);
  s.step = metadata_number<std::int64_t>(saved.file, "step", saved.source);
  if (s.step < 0) throw FileError(saved.source + ": negative step");
  s.elapsed_s = metadata_number<double>(saved.file, "elapsed_s", saved.source);
  std::istringstream rng(saved.file.meta("rng", saved.source));
  rng >> s.sampler;
  if (rng.fail()) throw FileError(saved.source + ": __metadata__ 'rng' is not a std::mt19937_64 state");
  return saved;
}

void load_training_tensors(const SavedState& saved, GPT<float>& model, tapegrad::nn::AdamW<float>& optimizer) {
  load_parameters(model, saved.file, saved.source, kParamPrefix);
  tapegrad::NamedTensors<float> moments;
  for (const auto& [name, raw] : saved.file.tensors)
    if (!name.starts_with(kParamPrefix))
      moments.emplace_back(name, tapegrad::Tensor<float>(from_raw<float>(raw, saved.source + ": tensor '" + name + "'")));
  try {
    optimizer.load_state(moments, saved.state.step);
  } catch (const std::invalid_argument& e) {
    throw FileError(saved.source + ": " + e.what());
  }
}

}  // namespace train_lm
