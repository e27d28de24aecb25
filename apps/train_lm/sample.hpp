// train_lm/sample.hpp — generating text from a model, one character at a time.
//
// tapegrad::models::generate (nn/generate.hpp) does the work: each new token runs one row
// through the model against the cached keys and values of the window; its logits are
// divided by the temperature, the top_k largest kept (0 = all), softmax, one draw from
// an mt19937_64 seeded with `seed`. Temperature 0 means greedy (argmax). When the
// window reaches block_size tokens, its last block_size / 2 are re-run at positions
// 0.. and the window grows again from there.
#pragma once

#include "threads.hpp"
#include "model_file.hpp"

#include <filesystem>
#include <iosfwd>

namespace train_lm {

struct SamplingOptions {
  std::size_t tokens = 500;
  double temperature = 1.0;
  std::size_t top_k = 0;
  std::uint64_t seed = 1337;
  tapegrad::Context context = {};  // the threads of the multi-row passes (the prompt, window refills)
};

// The prompt as ids (an unknown character is a DataError naming it); an empty
// prompt starts from "\n" when the vocabulary has it, else from token 0.
std::vector<std::int64_t> prompt_ids(const Vocabulary& vocab, const std::string& prompt);

// Generated text streamed to `out` (flushed per character).
template <class T>
void stream_sample(const GPT<T>& model, const Vocabulary& vocab, const std::string& prompt,
                   const SamplingOptions& options, std::ostream& out);

struct SampleOptions {
  std::filesystem::path checkpoint;
  std::string prompt = {};
  SamplingOptions sampling = {};
  int threads = default_threads();
};

// `train_lm sample`: prints the prompt, then the generated text.
void run_sample(const SampleOptions& options, std::ostream& out);

}  // namespace train_lm
