// train_lm/grad.cpp — the `grad` subcommand.
#include "grad.hpp"

#include "model_file.hpp"
#include "usage_error.hpp"

#include <core/blas.hpp>

namespace train_lm {

namespace {

template <class T>
TensorFile loss_and_gradients(const GPT<T>& model, const Batch& batch) {
  model.zero_grad();
  tapegrad::Tape tape;
  const auto loss = model.loss(tape, batch.inputs, batch.targets);
  tape.backward(loss);
  TensorFile out;
  tapegrad::Array<T> scalar = tapegrad::Array<T>::from_shape({});
  scalar() = loss.item();
  out.add("loss", to_raw(scalar));
  for (const auto& [name, p] : model.named_parameters()) out.add("grad." + name, to_raw(p.grad()));
  return out;
}

}  // namespace

Batch read_batch_file(const std::filesystem::path& path, std::size_t vocab_size, std::size_t block_size) {
  const TensorFile file = read_tensor_file(path);
  const std::string source = path.string();
  Batch b{ids_from_raw(file.at("inputs", source), source + ": tensor 'inputs'"),
          ids_from_raw(file.at("targets", source), source + ": tensor 'targets'")};
  const auto shape = tapegrad::shape_of(b.inputs);
  if (shape.size() != 2 || shape[0] == 0 || shape[1] == 0)
    throw FileError(source + ": 'inputs' must have shape [B, T] with B, T >= 1, got " + tapegrad::shape_str(shape));
  if (tapegrad::shape_of(b.targets) != shape)
    throw FileError(source + ": 'targets' has shape " + tapegrad::shape_str(tapegrad::shape_of(b.targets)) +
                    ", 'inputs' " + tapegrad::shape_str(shape));
  if (shape[1] > block_size)
    throw FileError(source + ": T = " + std::to_string(shape[1]) + " is above the checkpoint's block size " +
                    std::to_string(block_size));
  for (const auto* ids : {&b.inputs, &b.targets})
    for (const auto id : *ids)
      if (id < 0 || std::size_t(id) >= vocab_size)
        throw FileError(source + ": token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                        std::to_string(vocab_size) + ")");
  return b;
}

double run_grad(const GradOptions& options) {
  require_positive("--threads", options.threads);
  check_writable_directory(options.out.parent_path(), "--out " + options.out.string());
  const ModelFile checkpoint = read_model_file(options.checkpoint);
  const Batch batch = read_batch_file(options.batch, checkpoint.config.vocab_size, checkpoint.config.block_size);
  const TensorFile out = with_model(checkpoint, [&](const auto& model) {
    tapegrad::blas::set_threads(options.threads);
    return loss_and_gradients(model, batch);
  });
  write_tensor_file(options.out, out);
  const RawTensor& loss = out.tensors.front().second;
  return checkpoint.dtype == DType::F64 ? double(*from_raw<double>(loss, "loss").data())
                                        : double(*from_raw<float>(loss, "loss").data());
}

}  // namespace train_lm
