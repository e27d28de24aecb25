// examples/compose — a model that is not the GPT, composed from tapegrad's modules
// and ops: an MLP that tells which of three rings around the origin a 2-D point lies
// in (radius in [0, 1), [1, 2) or [2, 3)). No straight line separates the classes,
// so it needs its hidden layers. Trained with the library's training step.
#pragma once

#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>

namespace compose {

using namespace tapegrad;

// x (N, 2) -> logits (N, 3): Linear, GELU, Linear, GELU, Linear.
class RingClassifier : public nn::Module<float> {
 public:
  RingClassifier(std::size_t hidden, nn::Rng& rng)
      : in(2, hidden, true, rng, 0.5), mid(hidden, hidden, true, rng, 0.2), out(hidden, 3, true, rng, 0.2) {
    register_module("in", in);
    register_module("mid", mid);
    register_module("out", out);
  }
  Tensor<float> forward(Tape& tape, const Tensor<float>& x) const {
    Tensor<float> h = ops::gelu(tape, in.forward(tape, x));  // (N, hidden)
    h = ops::gelu(tape, mid.forward(tape, h));               // (N, hidden)
    return out.forward(tape, h);                             // (N, 3)
  }
  nn::Linear<float> in, mid, out;
};

struct Points {
  Tensor<float> x;  // (N, 2)
  Ids label;        // (N) ring index 0, 1, 2
};

// N points uniform over the disk of radius 3.
inline Points make_points(std::size_t n, nn::Rng& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Points p{Tensor<float>::zeros({n, 2}), Ids::from_shape({n})};
  for (std::size_t i = 0; i < n; ++i) {
    const double r = 3 * std::sqrt(u(rng)), angle = 2 * std::numbers::pi * u(rng);
    p.x.data()[2 * i] = float(r * std::cos(angle));
    p.x.data()[2 * i + 1] = float(r * std::sin(angle));
    p.label.data()[i] = std::int64_t(r);
  }
  return p;
}

// The fraction of `p` the model puts in the right ring.
inline double accuracy(const RingClassifier& model, const Points& p) {
  Tape tape;
  NoGradGuard no_grad(tape);
  const Tensor<float> logits = model.forward(tape, p.x);
  std::size_t right = 0;
  for (std::size_t i = 0; i < p.label.size(); ++i) {
    const float* row = logits.data() + 3 * i;
    const std::int64_t guess = std::max_element(row, row + 3) - row;
    right += guess == p.label.data()[i];
  }
  return double(right) / double(p.label.size());
}

// Trains on fresh batches of `batch` points for `steps` steps (AdamW, clip, warm-up +
// cosine: nn::Recipe with lr 1e-2) and returns the accuracy on 2000 held-out points.
inline double train_and_test(std::size_t steps, std::uint64_t seed, std::size_t batch = 128) {
  nn::Rng rng(seed);
  RingClassifier model(32, rng);
  nn::Recipe recipe;
  recipe.adamw.lr = 1e-2;
  recipe.adamw.weight_decay = 0;
  nn::AdamW<float> optimizer(model.named_parameters(), recipe.adamw);
  for (std::size_t step = 0; step < steps; ++step) {
    const Points b = make_points(batch, rng);
    nn::train_step(optimizer, recipe.lr_at(std::int64_t(step), std::int64_t(steps)), recipe.clip_norm,
                   [&](Tape& tape) { return ops::cross_entropy(tape, model.forward(tape, b.x), b.label); });
  }
  return accuracy(model, make_points(2000, rng));
}

}  // namespace compose
