// train_lm/sample.cpp — temperature / top-k sampling and the `sample` subcommand.
#include "sample.hpp"

#include "usage_error.hpp"

#include <algorithm>
#include <cmath>
#include <ostream>

namespace train_lm {

namespace {

// The next-token logits after `context` (its last block_size tokens).
template <class T>
std::vector<double> next_logits(const GPT<T>& model, const std::vector<std::int64_t>& context,
                                const tapegrad::Context& run) {
  const std::size_t T_len = std::min(context.size(), model.config.block_size);
  tapegrad::Ids idx = tapegrad::Ids::from_shape({1, T_len});
  std::copy(context.end() - std::ptrdiff_t(T_len), context.end(), idx.begin());
  tapegrad::Tape tape(run);
  tapegrad::NoGradGuard no_grad(tape);
  const auto logits = model.forward(tape, idx);  // (1, T, V)
  const std::size_t V = model.config.vocab_size;
  const T* last = logits.data() + (T_len - 1) * V;
  std::vector<double> next(last, last + V);
  if (!std::all_of(next.begin(), next.end(), [](double x) { return std::isfinite(x); }))
    throw std::runtime_error("the model's next-token logits are not finite: the model is diverged or corrupt");
  return next;
}

std::int64_t draw(std::vector<double> logits, const SamplingOptions& options, std::mt19937_64& rng) {
  const auto best = std::max_element(logits.begin(), logits.end());
  if (options.temperature == 0) return std::int64_t(best - logits.begin());
  double threshold = -INFINITY;  // logits below it are dropped (top-k)
  if (options.top_k > 0 && options.top_k < logits.size()) {
    std::vector<double> sorted = logits;
    std::nth_element(sorted.begin(), sorted.begin() + std::ptrdiff_t(options.top_k - 1), sorted.end(), std::greater<>());
    threshold = sorted[options.top_k - 1];
  }
  std::vector<double> weights(logits.size());
  for (std::size_t i = 0; i < logits.size(); ++i)
    weights[i] = logits[i] < threshold ? 0.0 : std::exp((logits[i] - *best) / options.temperature);
  std::discrete_distribution<std::int64_t> next(weights.begin(), weights.end());
  return next(rng);
}

}  // namespace

template <class T>
void generate(const GPT<T>& model, std::vector<std::int64_t> context, const SamplingOptions& options,
              const std::function<void(std::int64_t)>& emit) {
  std::mt19937_64 rng(options.seed);
  for (std::size_t i = 0; i < options.tokens; ++i) {
    const std::int64_t id = draw(next_logits(model, context, options.context), options, rng);
    context.push_back(id);
    emit(id);
  }
}

std::vector<std::int64_t> prompt_ids(const Vocabulary& vocab, const std::string& prompt) {
  if (prompt.empty()) return {vocab.contains("\n") ? vocab.encode({"\n"}, "")[0] : 0};
  return vocab.encode(split_utf8(prompt, "--prompt"), "--prompt");
}

template <class T>
void stream_sample(const GPT<T>& model, const Vocabulary& vocab, const std::string& prompt,
                   const SamplingOptions& options, std::ostream& out) {
  const auto context = prompt_ids(vocab, prompt);
  out << prompt << std::flush;
  generate(model, context, options, [&](std::int64_t id) { out << vocab.token(id) << std::flush; });
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
                  .scalar_bytes = io::dtype_size(checkpoint.dtype)},
                 options.checkpoint.string());
  with_model(checkpoint, [&](const auto& model) { stream_sample(model, vocab, options.prompt, sampling, out); });
}

template void generate(const GPT<float>&, std::vector<std::int64_t>, const SamplingOptions&,
                       const std::function<void(std::int64_t)>&);
template void stream_sample(const GPT<float>&, const Vocabulary&, const std::string&, const SamplingOptions&, std::ostream&);

}  // namespace train_lm
