// train_lm/sample.cpp — the `sample` subcommand on the families' models::generate (temperature, top-k, KV cache).
#include "sample.hpp"

#include "usage_error.hpp"

#include <cmath>
#include <ostream>

namespace train_lm {

std::vector<std::int64_t> prompt_ids(const Vocabulary& vocab, const std::string& prompt) {
  if (prompt.empty()) return {vocab.contains("\n") ? vocab.encode({"\n"}, "")[0] : 0};
  return vocab.encode(split_utf8(prompt, "--prompt"), "--prompt");
}

template <class T>
void stream_sample(const LanguageModel<T>& model, const Vocabulary& vocab, const std::string& prompt,
                   const SamplingOptions& options, std::ostream& out) {
  const auto prompt_tokens = prompt_ids(vocab, prompt);
  out << prompt << std::flush;
  std::mt19937_64 rng(options.seed);
  model.generate(prompt_tokens, options.tokens,
                 {.temperature = options.temperature, .top_k = options.top_k, .context = options.context}, rng,
                 [&](std::int64_t id) { out << vocab.token(id) << std::flush; });
  out << '\n';
}

void run_sample(const SampleOptions& options, std::ostream& out) {
  require_count("--tokens", options.sampling.tokens, kMaxSampleTokens);
  SamplingOptions sampling = options.sampling;
  sampling.context = use_threads(options.threads);
  if (!(options.sampling.temperature >= 0) || !std::isfinite(options.sampling.temperature))
    throw UsageError("--temperature must be >= 0 (0 = greedy), got " + std::to_string(options.sampling.temperature));
  const ModelFile checkpoint = read_model_file(options.checkpoint);
  const Vocabulary& vocab = checkpoint.require_vocab();
  const std::size_t prompt_length = prompt_ids(vocab, options.prompt).size();  // an unknown character fails here
  require_memory({.config = checkpoint.config,
                  .window = std::min(checkpoint.config.block_size, prompt_length + options.sampling.tokens),
                  .scalar_bytes = io::dtype_size(checkpoint.dtype),
                  .swiglu_hidden = checkpoint.family == Family::llama ? checkpoint.d_hidden : 0},
                 options.checkpoint.string());
  with_model(checkpoint, [&](const auto& model) { stream_sample(model, vocab, options.prompt, sampling, out); });
}

template void stream_sample(const LanguageModel<float>&, const Vocabulary&, const std::string&, const SamplingOptions&,
                            std::ostream&);

}  // namespace train_lm
