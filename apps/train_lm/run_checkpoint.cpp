// train_lm/run_checkpoint.cpp — saving and restoring a training run.
#include "run_checkpoint.hpp"

#include "number_text.hpp"
#include "output_dir.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>
#include <span>
#include <sstream>
#include <utility>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

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

// How a safetensors file of --out is read: within memory, and as the run's own file,
// never through a symbolic link.
io::ReadOptions run_file(const std::string& what) {
  io::ReadOptions options = within_memory(what);
  options.follow_links = false;
  return options;
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

std::vector<std::filesystem::path> CheckpointDir::prepare_for_writing() const {
  const std::string where = "--out " + dir.string() + ": ";
  std::vector<std::filesystem::path> created;  // the directories that do not exist yet, deepest last
  std::error_code ec;
  for (std::filesystem::path d = dir; !d.empty() && !std::filesystem::exists(d, ec); d = d.parent_path()) {
    created.insert(created.begin(), d);
    if (!d.has_relative_path() || d.parent_path() == d) break;
  }
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error(where + "cannot create the directory: " + ec.message());
  check_writable_directory(dir, "--out " + dir.string());
  return created;
}

void CheckpointDir::remove_if_empty(const std::vector<std::filesystem::path>& created) const {
  if (created.empty()) return;
  remove_stale_temporary_files();
  std::error_code ec;
  for (auto d = created.rbegin(); d != created.rend(); ++d)
    if (!std::filesystem::remove(*d, ec)) break;  // not empty (or already gone): it and its parents stay
}

DirectoryLock::DirectoryLock(const std::filesystem::path& dir, const std::string& what)
    : fd_(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
  if (fd_ < 0) throw std::runtime_error(what + ": cannot open the directory to lock it: " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
  const int error = errno;
  ::close(fd_);
  if (error == EWOULDBLOCK)
    throw std::runtime_error(what + " is in use by another train_lm run (it holds the directory's lock); wait for "
                             "it to end, or choose another --out");
  throw std::runtime_error(what + ": cannot lock the directory: " + std::strerror(error));
}
DirectoryLock::DirectoryLock(DirectoryLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the flock
}

DirectoryLock CheckpointDir::lock() const { return DirectoryLock(dir, "--out " + dir.string()); }

std::size_t CheckpointDir::remove_stale_temporary_files() const {
  std::size_t removed = 0;
  for (const auto& file : {model(), state(), log(), loss_svg()}) removed += io::remove_stale_temporary_files(file);
  return removed;
}

io::Metadata RunSettings::to_metadata() const {
  io::Metadata m = models::gpt_metadata(model);
  m["format"] = kStateFormat;
  if (family != Family::gpt) m["family"] = family_name(family);
  m["batch"] = std::to_string(batch);
  m["lr"] = exact_text(lr);
  m["seed"] = std::to_string(seed);
  m["data_fingerprint"] = hex(data_fingerprint);
  m["data_source"] = data_source;
  m["steps"] = std::to_string(steps);
  m["threads"] = std::to_string(threads);
  if (optimizer == tapegrad::nn::OptimizerKind::muon) {  // an AdamW run's state has no such entries
    m["optimizer"] = "muon";
    m["muon_lr"] = exact_text(muon_lr);
  }
  return m;
}

RunSettings RunSettings::from_metadata(const io::Safetensors& file) {
  if (metadata_value(file, "format") != kStateFormat)
    file.fail("not a training state (format is '" + metadata_value(file, "format") + "')");
  io::Metadata model_meta = file.metadata();
  model_meta["format"] = "tapegrad-gpt";
  RunSettings s;
  s.model = models::gpt_config_from_metadata(model_meta, file.path());
  if (const auto it = file.metadata().find("family"); it != file.metadata().end()) {
    try {
      s.family = family_named(it->second);
    } catch (const tapegrad::ConfigError& e) {
      file.fail(e.what());
    }
    if (const std::string problem = config_problem(s.family, s.model); !problem.empty()) file.fail(problem);
  }
  s.batch = metadata_number<std::size_t>(file, "batch");
  s.lr = metadata_number<double>(file, "lr");
  s.seed = metadata_number<std::uint64_t>(file, "seed");
  const std::string& fp = metadata_value(file, "data_fingerprint");
  const auto r = std::from_chars(fp.data(), fp.data() + fp.size(), s.data_fingerprint, 16);
  if (r.ec != std::errc() || r.ptr != fp.data() + fp.size()) file.fail("bad data_fingerprint '" + fp + "'");
  s.data_source = metadata_value(file, "data_source");
  s.steps = metadata_number<std::int64_t>(file, "steps");
  s.threads = metadata_number<int>(file, "threads");
  if (file.metadata().contains("optimizer")) {
    if (metadata_value(file, "optimizer") != "muon")
      file.fail("__metadata__ 'optimizer' is '" + metadata_value(file, "optimizer") + "', not muon (AdamW states have none)");
    s.optimizer = tapegrad::nn::OptimizerKind::muon;
    s.muon_lr = metadata_number<double>(file, "muon_lr");
  }
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
  if (now.family != saved.family)
    return std::string("--preset builds a ") + family_name(now.family) + ", the checkpoint holds a " +
           family_name(saved.family);
  if (now.model.n_layer != saved.model.n_layer) return differs("--layers", now.model.n_layer, saved.model.n_layer);
  if (now.model.n_head != saved.model.n_head) return differs("--heads", now.model.n_head, saved.model.n_head);
  if (now.model.d_model != saved.model.d_model) return differs("--dim", now.model.d_model, saved.model.d_model);
  if (now.model.block_size != saved.model.block_size) return differs("--block", now.model.block_size, saved.model.block_size);
  if (now.model.vocab_size != saved.model.vocab_size) return differs("vocabulary size", now.model.vocab_size, saved.model.vocab_size);
  if (now.batch != saved.batch) return differs("--batch", now.batch, saved.batch);
  if (now.lr != saved.lr) return differs("--lr", exact_text(now.lr), exact_text(saved.lr));
  if (now.seed != saved.seed) return differs("--seed", now.seed, saved.seed);
  auto name = [](tapegrad::nn::OptimizerKind k) { return k == tapegrad::nn::OptimizerKind::muon ? "muon" : "adamw"; };
  if (now.optimizer != saved.optimizer) return differs("--optimizer", name(now.optimizer), name(saved.optimizer));
  if (now.muon_lr != saved.muon_lr) return differs("--muon-lr", exact_text(now.muon_lr), exact_text(saved.muon_lr));
  return "";
}

void save_checkpoint(const CheckpointDir& dir, const LanguageModel<float>& model,
                     const tapegrad::nn::Optimizer<float>& optimizer, const TrainState& state, const Vocabulary& vocab) {
  io::Metadata metadata = state.settings.to_metadata();
  std::ostringstream rng;
  rng << state.sampler;
  metadata["step"] = std::to_string(state.step);
  metadata["rng"] = rng.str();
  metadata["elapsed_s"] = exact_text(state.elapsed_s);
  metadata["vocab"] = vocab.to_json();
  const auto params = model.named_parameters();
  const auto moments = optimizer.state();  // copies: must outlive the views
  // Whatever led here (an eval step or not), a checkpoint never holds a model eval
  // would refuse (unusable_weight) or a non-finite moment: refuse before anything is
  // written, so the previous checkpoint stays.
  for (const auto& bad : {unusable_weight(params), io::non_finite_value(moments)})
    if (bad)
      throw std::runtime_error(dir.dir.string() + ": checkpoint not saved, the previous one is kept: " + *bad +
                               " at step " + std::to_string(state.step) + " (the run diverged; try a smaller --lr)");
  std::vector<io::TensorView> tensors;
  for (const auto& [name, p] : params) tensors.emplace_back(kParamPrefix + name, p.value());
  for (const auto& [name, m] : moments) tensors.emplace_back(name, m.value());
  // Model first, then state (see run_checkpoint.hpp): the state never runs ahead of the model.
  save_model(dir.model(), model, {{"vocab", vocab.to_json()}, {"step", std::to_string(state.step)}});
  io::write_safetensors(dir.state(), tensors, metadata);
}

std::string checkpoint_pair_note(const CheckpointDir& dir, std::int64_t state_step) {
  const std::string resuming = "resuming from the state's step " + std::to_string(state_step) + "; " +
                               dir.model().filename().string() + " is written again at the next save";
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::symlink_status(dir.model(), ec)))
    return "note: " + dir.model().string() + " is missing: " + resuming;
  try {
    const io::Safetensors model = io::Safetensors::read(dir.model(), run_file("a model file"));
    const auto step =
        model.metadata().contains("step") ? parse_number<std::int64_t>(model.metadata().at("step")) : std::nullopt;
    if (step == state_step) return "";
    return "note: " + dir.model().string() + " is at step " + (step ? std::to_string(*step) : "(none)") + ", " +
           dir.state().filename().string() + " at step " + std::to_string(state_step) +
           " (a save was interrupted): " + resuming;
  } catch (const tapegrad::Error& e) {
    return "note: " + dir.model().string() + " cannot be read (" + e.reason() + "): " + resuming;
  }
}

SavedState read_state_file(const CheckpointDir& dir) {
  SavedState saved{io::Safetensors::read(dir.state(), run_file("a training state")), {}};
  TrainState& s = saved.state;
  s.settings = RunSettings::from_metadata(saved.file);
  s.step = metadata_number<std::int64_t>(saved.file, "step");
  if (s.step < 0) saved.file.fail("negative step");
  s.elapsed_s = metadata_number<double>(saved.file, "elapsed_s");
  if (!std::isfinite(s.elapsed_s) || s.elapsed_s < 0)
    saved.file.fail("__metadata__ 'elapsed_s' must be a finite number >= 0, got '" + metadata_value(saved.file, "elapsed_s") + "'");
  // The sampler's state: exactly what save_checkpoint writes (so nothing trails it and
  // every word is in range), and not all zero (a Mersenne Twister that never leaves 0).
  const std::string& rng_text = metadata_value(saved.file, "rng");
  std::istringstream rng(rng_text);
  rng >> s.sampler;
  std::ostringstream written;
  written << s.sampler;
  if (rng.fail() || written.str() != rng_text) saved.file.fail("__metadata__ 'rng' is not a std::mt19937_64 state");
  std::istringstream words(rng_text);
  std::uint64_t word = 0;
  bool all_zero = true;
  for (std::size_t i = 0; i < std::mt19937_64::state_size && words >> word; ++i) all_zero = all_zero && word == 0;
  if (all_zero) saved.file.fail("__metadata__ 'rng' is an all-zero std::mt19937_64 state");
  return saved;
}

void load_training_tensors(const SavedState& saved, const LanguageModel<float>& model,
                           tapegrad::nn::Optimizer<float>& optimizer) {
  const io::Safetensors& file = saved.file;
  // Everything is read and checked (weights: shapes and finite values; moments: by the
  // optimiser) before any parameter changes.
  std::set<std::string> weight_names;
  tapegrad::NamedTensors<float> weights;
  auto params = model.named_parameters();
  for (const auto& [name, p] : params) {
    const std::string key = kParamPrefix + name;
    if (file.tensor(key).shape != p.shape())
      file.fail("tensor '" + key + "' has shape " + tapegrad::shape_str(file.tensor(key).shape) + ", the model needs " +
                tapegrad::shape_str(p.shape()));
    weights.emplace_back(key, tapegrad::Tensor<float>(file.get<float>(key)));
    weight_names.insert(key);
  }
  if (const auto bad = io::non_finite_value(weights)) file.fail(*bad);
  tapegrad::NamedTensors<float> moments;
  for (const auto& t : file.tensors())
    if (!weight_names.contains(t.name)) moments.emplace_back(t.name, tapegrad::Tensor<float>(file.get<float>(t.name)));
  try {
    optimizer.load_state(moments, saved.state.step);
  } catch (tapegrad::FormatError& e) {
    e.about(file.path().string());
    throw;
  }
  for (std::size_t i = 0; i < params.size(); ++i)
    std::copy_n(weights[i].second.data(), params[i].second.size(), params[i].second.data());
}

}  // namespace train_lm
