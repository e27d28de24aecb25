// examples/tour — the README's API tour, compiled and run by the test suite.
#include <tapegrad/tapegrad.hpp>

#include <cstdio>

using namespace tapegrad;

int main() {
  // 1. Ops on a tape. Leaves that require grad are what backward fills in.
  Tape tape;
  auto x = Tensor<double>::from({2, 3}, {1, 2, 3, 4, 5, 6});                      // input (2, 3)
  auto w = Tensor<double>::from({3, 2}, {0.1, -0.2, 0.3, 0.4, -0.5, 0.6}, true);  // weight (3, 2)
  auto b = Tensor<double>::from({2}, {0.01, -0.01}, true);                        // bias (2)
  auto h = ops::gelu(tape, ops::add(tape, ops::matmul(tape, x, w), b));           // (2, 2)
  auto loss = ops::cross_entropy(tape, h, Ids{1, 0});                             // targets (2)
  tape.backward(loss);  // replays the tape in reverse; the tape is then cleared
  std::printf("loss %.6f  dL/dw[0,0] %.6f  dL/db %.6f %.6f\n", loss.item(), w.grad()(0, 0), b.grad()(0), b.grad()(1));

  // 2. Check those gradients against central differences.
  auto report = gradcheck<double>(
      [&](Tape& t) { return ops::cross_entropy(t, ops::gelu(t, ops::add(t, ops::matmul(t, x, w), b)), Ids{1, 0}); },
      {{"w", w}, {"b", b}});
  std::printf("gradcheck: worst relative error %.2e\n", report.worst_rel_error());

  // 3. A GPT and two training steps with the contract's recipe (nn/train_step.hpp).
  models::GPT<float> model({.vocab_size = 65, .block_size = 32, .n_layer = 2, .n_head = 4, .d_model = 32}, /*seed=*/1);
  const nn::Recipe recipe;  // AdamW lr 1e-3, betas (0.9, 0.99), wd 0.1 on matrices; clip 1; warm-up + cosine
  nn::AdamW<float> optimizer(model.named_parameters(), recipe.adamw);
  Ids inputs = Ids::from_shape({4, 32}), targets = Ids::from_shape({4, 32});
  for (std::size_t i = 0; i < inputs.size(); ++i) inputs.data()[i] = std::int64_t(i % 65), targets.data()[i] = std::int64_t((i + 1) % 65);
  for (int step = 0; step < 2; ++step) {
    // zero grads, loss, backward, clip, AdamW step; the loss is mean next-token cross-entropy
    const auto r = nn::train_step(optimizer, recipe.lr_at(step, 2), recipe.clip_norm,
                                  [&](Tape& t) { return model.loss(t, inputs, targets); });
    std::printf("step %d: loss %.4f (ln 65 = 4.1744), gradient norm %.3f\n", step, r.loss, r.grad_norm);
  }
  return report.worst_rel_error() < 1e-7 ? 0 : 1;
}
