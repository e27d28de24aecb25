// run_inputs — the first weights and the batches of a `train_lm train` run, for
// replaying that run in another implementation (scripts/reference_torch.py replay).
//
//   run_inputs DATA PRESET SEED STEPS OUT_DIR
//
// writes OUT_DIR/init.safetensors (the F32 model before step 1, SPEC names) and
// OUT_DIR/batches.safetensors (I64 `inputs` and `targets`, [STEPS, B, T]): what
// `train_lm train --data DATA --preset PRESET --seed SEED` draws, from the same
// random streams (train.hpp's stream_seed) and the same functions.
#include <tapegrad/io/checkpoint.hpp>
#include <tapegrad/models/gpt/checkpoint_metadata.hpp>
#include "presets.hpp"
#include "text_data.hpp"
#include "train.hpp"

#include <filesystem>
#include <iostream>
#include <string>

int main(int argc, char** argv) try {
  if (argc != 6) {
    std::cerr << "usage: run_inputs DATA PRESET SEED STEPS OUT_DIR\n";
    return 2;
  }
  using namespace train_lm;
  const auto& preset = find_train_preset(argv[2]);
  const std::uint64_t seed = std::stoull(argv[3]);
  const std::size_t steps = std::stoull(argv[4]);
  const std::filesystem::path out = argv[5];

  const Corpus corpus = make_corpus(read_text_file(argv[1]), preset.block_size);
  const tapegrad::models::GPTConfig config = preset.config(corpus.vocab.size());
  const tapegrad::models::GPT<float> model(config, stream_seed(seed, Stream::init));
  tapegrad::io::save_parameters(out / "init.safetensors", model.named_parameters(), tapegrad::models::gpt_metadata(config));

  std::mt19937_64 sampler(stream_seed(seed, Stream::sampler));
  tapegrad::Ids inputs = tapegrad::Ids::from_shape({steps, preset.batch, preset.block_size});
  tapegrad::Ids targets = tapegrad::Ids::from_shape(inputs.shape());
  const std::size_t per_step = preset.batch * preset.block_size;
  for (std::size_t step = 0; step < steps; ++step) {
    const Batch b = random_batch(corpus.train, preset.batch, preset.block_size, sampler);
    std::copy(b.inputs.begin(), b.inputs.end(), inputs.data() + step * per_step);
    std::copy(b.targets.begin(), b.targets.end(), targets.data() + step * per_step);
  }
  tapegrad::io::write_safetensors(out / "batches.safetensors", {{"inputs", inputs}, {"targets", targets}});
  return 0;
} catch (const std::exception& e) {
  std::cerr << "run_inputs: " << e.what() << "\n";
  return 1;
}
