// train_lm/grad.cpp — the `grad` subcommand.
#include "grad.hpp"

#include "model_file.hpp"
#include "number_text.hpp"
#include "output_dir.hpp"
#include "usage_error.hpp"

#include <cmath>
#include <span>

namespace train_lm {

namespace {

// One forward and backward pass; writes `loss` and `grad.<name>` to `out`, unless the loss
// or a gradient is NaN or infinite (a runtime_error naming `inputs`; nothing is written).
template <class T>
double write_loss_and_gradients(const LanguageModel<T>& model, const Batch& batch, const std::filesystem::path& out,
                                const tapegrad::Context& context, const std::string& inputs) {
  model.zero_grad();
  tapegrad::Tape tape(context);
  const auto loss = model.loss(tape, batch.inputs, batch.targets);
  tape.backward(loss);
  tapegrad::Array<T> loss_value = tapegrad::Array<T>::from_shape({});
  loss_value() = loss.item();
  const auto params = model.named_parameters();
  const auto diverged = [&](const std::string& what) {
    throw std::runtime_error(inputs + ": " + what + ": the model is diverged or corrupt; nothing written");
  };
  if (!std::isfinite(loss_value())) diverged("the loss is " + readable_number(double(loss_value())));
  std::vector<io::TensorView> tensors{{"loss", loss_value}};
  for (const auto& [name, p] : params) {
    const auto& g = p.grad();
    if (const auto bad = io::non_finite_value("grad." + name, std::span<const T>(g.data(), g.size())))
      diverged(*bad);
    tensors.emplace_back("grad." + name, g);
  }
  io::write_safetensors(out, tensors);
  return double(loss_value());
}

}  // namespace

Batch read_batch_file(const std::filesystem::path& path, std::size_t vocab_size, std::size_t block_size) {
  const auto file = io::Safetensors::read(path, within_memory("a batch file"));
  Batch b{file.get_ids("inputs"), file.get_ids("targets")};
  const auto shape = tapegrad::shape_of(b.inputs);
  if (shape.size() != 2 || shape[0] == 0 || shape[1] == 0)
    file.fail("'inputs' must have shape [B, T] with B, T >= 1, got " + tapegrad::shape_str(shape));
  if (tapegrad::shape_of(b.targets) != shape)
    file.fail("'targets' has shape " + tapegrad::shape_str(tapegrad::shape_of(b.targets)) + ", 'inputs' " +
              tapegrad::shape_str(shape));
  if (shape[1] > block_size)
    file.fail("T = " + std::to_string(shape[1]) + " is above the checkpoint's block size " + std::to_string(block_size));
  for (const auto* ids : {&b.inputs, &b.targets})
    for (const auto id : *ids)
      if (id < 0 || std::size_t(id) >= vocab_size)
        file.fail("token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
  return b;
}

double run_grad(const GradOptions& options) {
  const tapegrad::Context context = use_threads(options.threads);
  check_writable_file(options.out, "--out");
  refuse_same_file(options.out, "--out", options.checkpoint, "--checkpoint");
  refuse_same_file(options.out, "--out", options.batch, "--batch");
  const ModelFile checkpoint = read_model_file(options.checkpoint);
  const Batch batch = read_batch_file(options.batch, checkpoint.config.vocab_size, checkpoint.config.block_size);
  require_memory({.config = checkpoint.config,
                  .batch = batch.inputs.shape()[0],
                  .window = batch.inputs.shape()[1],
                  .training = true,
                  .scalar_bytes = io::dtype_size(checkpoint.dtype),
                  .swiglu_hidden = checkpoint.family == Family::llama ? checkpoint.d_hidden : 0},
                 options.checkpoint.string() + " with " + options.batch.string());
  return with_model(checkpoint, [&](const auto& model) {
    return write_loss_and_gradients(model, batch, options.out, context,
                                    options.checkpoint.string() + " on " + options.batch.string());
  });
}

}  // namespace train_lm
