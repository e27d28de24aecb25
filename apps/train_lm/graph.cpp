// train_lm/graph.cpp — one training step's tape as a Graphviz graph.
#include "graph.hpp"

#include "language_model.hpp"
#include "presets.hpp"
#include "text_data.hpp"
#include "usage_error.hpp"

#include <tapegrad/io/atomic_file.hpp>

#include <ostream>
#include <random>
#include <sstream>

namespace train_lm {

std::size_t run_graph(const GraphOptions& o, std::ostream& standard_output) {
  const TrainPreset& preset = find_train_preset(o.preset);
  auto count = [](const char* name, const std::optional<std::int64_t>& given, std::size_t preset_value) {
    if (!given) return preset_value;
    require_count(name, *given, kMaxCount);
    return std::size_t(*given);
  };
  tapegrad::models::GPTConfig config = preset.config(0);
  config.n_layer = count("--layers", o.layers, preset.n_layer);
  config.block_size = count("--block", o.block, preset.block_size);
  const std::size_t batch = count("--batch", o.batch, preset.batch);
  const Text text = o.data.empty() ? read_default_corpus() : read_text_file(o.data);
  const Corpus corpus = make_corpus(text, config.block_size);
  config.vocab_size = corpus.vocab.size();

  LanguageModel<float> model(family_named(preset.family), config, 1);
  model.set_checkpoint_blocks(o.checkpoint_activations);
  std::mt19937_64 rng(1);
  const Batch b = random_batch(corpus.train, batch, config.block_size, rng);
  tapegrad::Tape tape;
  tape.set_keep_graph(true);
  model.loss(tape, b.inputs, b.targets);
  std::ostringstream dot;
  tape.write_dot(dot, model.named_parameters());
  if (o.out.empty())
    standard_output << dot.str();
  else
    tapegrad::io::write_file_atomically(o.out, dot.str());
  return tape.size();
}

}  // namespace train_lm
