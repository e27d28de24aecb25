// train_lm/run_checkpoint.cpp — saving and restoring a training run.
#include "run_checkpoint.hpp"

#include "number_text.hpp"
#include "output_dir.hpp"

#include <cmath>
#include <set>
#include <span>
#include <sstream>

namespace train_lm {

namespace {

const std::string kStateFormat = "tapegrad-train-state";
const std::string kParamPrefix = "param.";

template <class T>
T metadata_number(const io::Safetensors& file, const std::string& key) {
  const std::string& text = metadata_value(file, key);
  const auto value = parse_number<T>(text);
  if (!value) file.fail("__metadata__ '" + key + "' is not a number: '" + text + "'");
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

io::Metadata RunSettings::to_metadata() const {
  io::Metadata m = io::gpt_metadata(model);
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

RunSettings RunSettings::from_metadata(const io::Safetensors& file) {
  if (metadata_value(file, "format") != kStateFormat)
    file.fail("not a training state (format is '" + metadata_value(file, "format") + "')");
  io::Metadata model_meta = file.metadata();
  model_meta["format"] = "tapegrad-gpt";
  RunSettings s;
  s.model = io::gpt_config_from_metadata(model_meta, file.path());
  s.batch = metadata_number<std::size_t>(file, "batch");
  s.lr = metadata_number<double>(file, "lr");
  s.seed = metadata_number<std::uint64_t>(file, "seed");
  const std::string& fp = metadata_value(file, "data_fingerprint");
  const auto r = std::from_chars(fp.data(), fp.data() + fp.size(), s.data_fingerprint, 16);
  if (r.ec != std::errc() || r.ptr != fp.data() + fp.size()) file.fail("bad data_fingerprint '" + fp + "'");
  s.data_source = metadata_value(file, "data_source");
  s.steps = metadata_number<std::int64_t>(file, "steps");
  s.threads = metadata_number<int>(file, "threads");
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
  io::Metadata metadata = state.settings.to_metadata();
  std::ostringstream rng;
  rng << state.sampler;
  metadata["step"] = std::to_string(state.step);
  metadata["rng"] = rng.str();
  metadata["elapsed_s"] = exact_text(state.elapsed_s);
  metadata["vocab"] = vocab.to_json();
  const auto params = model.named_parameters();
  const auto moments = optimizer.state();  // copies: must outlive the views
  std::vector<io::TensorView> tensors;
  for (const auto& [name, p] : params) tensors.emplace_back(kParamPrefix + name, p.value());
  for (const auto& [name, m] : moments) tensors.emplace_back(name, m.value());
  io::write_safetensors(dir.state(), tensors, metadata);

  save_model(dir.model(), model, {{"vocab", vocab.to_json()}, {"step", std::to_string(state.step)}});
}

SavedState read_state_file(const CheckpointDir& dir) {
  SavedState saved{io::Safetensors::read(dir.state()), {}};
  TrainState& s = saved.state;
  s.settings = RunSettings::from_metadata(saved.file);
  s.step = metadata_number<std::int64_t>(saved.file, "step");
  if (s.step < 0) saved.file.fail("negative step");
  s.elapsed_s = metadata_number<double>(saved.file, "elapsed_s");
  if (!std::isfinite(s.elapsed_s) || s.elapsed_s < 0)
    saved.file.fail("__metadata__ 'elapsed_s' must be a finite number >= 0, got '" + metadata_value(saved.file, "elapsed_s") + "'");
  std::istringstream rng(metadata_value(saved.file, "rng"));
  rng >> s.sampler;
  if (rng.fail()) saved.file.fail("__metadata__ 'rng' is not a std::mt19937_64 state");
  return saved;
}

void load_training_tensors(const SavedState& saved, GPT<float>& model, tapegrad::nn::AdamW<float>& optimizer) {
  const io::Safetensors& file = saved.file;
  // Check the weights first, then let the optimiser check its moments, then copy the weights.
  std::set<std::string> weights;
  for (const auto& [name, p] : model.named_parameters()) {
    const std::string key = kParamPrefix + name;
    if (file.tensor(key).shape != p.shape())
      file.fail("tensor '" + key + "' has shape " + tapegrad::shape_str(file.tensor(key).shape) + ", the model needs " +
                tapegrad::shape_str(p.shape()));
    weights.insert(key);
  }
  tapegrad::NamedTensors<float> moments;
  for (const auto& t : file.tensors())
    if (!weights.contains(t.name)) moments.emplace_back(t.name, tapegrad::Tensor<float>(file.get<float>(t.name)));
  try {
    optimizer.load_state(moments, saved.state.step);
  } catch (tapegrad::FormatError& e) {
    e.about(file.path().string());
    throw;
  }
  for (auto& [name, p] : model.named_parameters()) file.copy_to(kParamPrefix + name, std::span<float>(p.data(), p.size()));
}

}  // namespace train_lm
