// train_lm/sample.hpp — generating text from a model, one character at a time.
//
// Each new token: run the model on the last block_size tokens of the context,
// take the logits at the last position, divide by the temperature, keep the
// top_k largest (0 = all), softmax, draw. Temperature 0 means greedy (argmax).
#pragma once

#include "blas_threads.hpp"
#include "model_file.hpp"

#include <filesystem>
#include <functional>
#include <iosfwd>
#include <random>

namespace train_lm {

struct SamplingOptions {
  std::size_t tokens = 500;
  double temperature = 1.0;
  std::size_t top_k = 0;
  std::uint64_t seed = 1337;
  tapegrad::Context context = {};  // the threads each forward pass runs on
};

// Extends `context` by options.tokens ids, calling emit(id) after each.
template <class T>
void generate(const GPT<T>& model, std::vector<std::int64_t> context, const SamplingOptions& options,
              const std::function<void(std::int64_t)>& emit);

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
