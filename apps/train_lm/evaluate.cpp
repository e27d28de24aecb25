// train_lm/evaluate.cpp — loss measurement and the `eval` subcommand.
#include "evaluate.hpp"

#include "number_text.hpp"
#include "usage_error.hpp"

#include <cmath>
#include <memory>
#include <utility>

namespace train_lm {

template <class T>
double batch_loss(const LanguageModel<T>& model, const Batch& batch, const tapegrad::Context& context,
                  std::shared_ptr<tapegrad::BufferPool> pool) {
  tapegrad::Tape tape(context, std::move(pool));
  tapegrad::NoGradGuard no_grad(tape);
  return double(model.loss(tape, batch.inputs, batch.targets).item());
}

template <class T>
double validation_loss(const LanguageModel<T>& model, const std::vector<std::int64_t>& tokens, std::size_t batch,
                       std::size_t block, std::size_t n_batches, std::uint64_t seed, const tapegrad::Context& context,
                       Shard shard) {
  std::mt19937_64 rng(seed);
  const auto pool = std::make_shared<tapegrad::BufferPool>();  // the batches' buffers, recycled
  double sum = 0;
  for (std::size_t i = 0; i < n_batches; ++i) {
    const Batch b = random_batch(tokens, batch, block, rng);  // every batch drawn: the RNG moves as without shards
    if (i % shard.count == shard.index) sum += batch_loss(model, b, context, pool);
  }
  return sum / double(n_batches);
}

double TextLoss::perplexity() const { return std::exp(loss); }

template <class T>
TextLoss text_loss(const LanguageModel<T>& model, const std::vector<std::int64_t>& tokens, std::size_t block, std::size_t batch,
                   const tapegrad::Context& context) {
  // Window k covers tokens [k*block, k*block + len] and predicts its last len tokens;
  // the last window may be shorter. Windows of equal length are batched together.
  const std::size_t predictions = tokens.size() - 1;
  const std::size_t full_windows = predictions / block, tail = predictions % block;
  const auto pool = std::make_shared<tapegrad::BufferPool>();  // the batches' buffers, recycled
  double sum = 0;  // of per-token losses
  for (std::size_t first = 0; first < full_windows; first += batch) {
    const std::size_t rows = std::min(batch, full_windows - first);
    Batch b{tapegrad::Ids::from_shape({rows, block}), tapegrad::Ids::from_shape({rows, block})};
    for (std::size_t r = 0; r < rows; ++r) fill_row(b, r, tokens, (first + r) * block);
    sum += batch_loss(model, b, context, pool) * double(rows * block);
  }
  if (tail > 0) {
    Batch b{tapegrad::Ids::from_shape({1, tail}), tapegrad::Ids::from_shape({1, tail})};
    fill_row(b, 0, tokens, full_windows * block);
    sum += batch_loss(model, b, context) * double(tail);
  }
  return {sum / double(predictions), predictions};
}

TextLoss run_eval(const EvalOptions& options) {
  require_positive("--batch", options.batch);
  const tapegrad::Context context = use_threads(options.threads);
  const ModelFile checkpoint = read_model_file(options.checkpoint);
  const Vocabulary& vocab = checkpoint.require_vocab();
  const std::size_t block = options.block.value_or(checkpoint.config.block_size);
  require_positive("--block", block);
  if (block > checkpoint.config.block_size)
    throw UsageError("--block " + std::to_string(block) + " is above the checkpoint's block size " +
                     std::to_string(checkpoint.config.block_size));
  const Text text = read_text_file(options.data);
  const auto tokens = vocab.encode_text(text.bytes, text.source);
  if (tokens.size() < 2) throw DataError(text.source + ": needs at least 2 characters to predict one");
  const std::size_t predictions = tokens.size() - 1;  // text_loss's widest batch: full windows, or the one short one
  require_memory({.config = checkpoint.config,
                  .batch = std::min(options.batch, std::max<std::size_t>(1, predictions / block)),
                  .window = std::min(block, predictions),
                  .scalar_bytes = io::dtype_size(checkpoint.dtype),
                  .swiglu_hidden = checkpoint.family == Family::llama ? checkpoint.d_hidden : 0},
                 options.checkpoint.string());

  const TextLoss result =
      with_model(checkpoint, [&](const auto& model) { return text_loss(model, tokens, block, options.batch, context); });
  if (!std::isfinite(result.loss))
    throw std::runtime_error(options.checkpoint.string() + ": the loss on " + text.source + " is " +
                             readable_number(result.loss) + ": the model is diverged or corrupt");
  return result;
}

template double batch_loss(const LanguageModel<float>&, const Batch&, const tapegrad::Context&,
                           std::shared_ptr<tapegrad::BufferPool>);
template double batch_loss(const LanguageModel<double>&, const Batch&, const tapegrad::Context&,
                           std::shared_ptr<tapegrad::BufferPool>);
template double validation_loss(const LanguageModel<float>&, const std::vector<std::int64_t>&, std::size_t, std::size_t, std::size_t,
                                std::uint64_t, const tapegrad::Context&, Shard);
template TextLoss text_loss(const LanguageModel<float>&, const std::vector<std::int64_t>&, std::size_t, std::size_t, const tapegrad::Context&);
template TextLoss text_loss(const LanguageModel<double>&, const std::vector<std::int64_t>&, std::size_t, std::size_t, const tapegrad::Context&);

}  // namespace train_lm
