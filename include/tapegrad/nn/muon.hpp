// tapegrad/nn/muon.hpp — Muon: momentum orthogonalised by a Newton-Schulz iteration, for
// the 2-D weight matrices; AdamW for the rest (embeddings, gains, biases).
//
// Keller Jordan's Muon (kellerjordan.github.io/posts/muon), as his reference code does
// it, for each matrix W (r x c) with gradient G and momentum buffer M:
//   M <- M + (1 - mu) (G - M)                      (M.lerp_(G, 1 - mu))
//   U <- G + mu (M - G)   if nesterov, else U <- M
//   X <- U / (||U||_F + 1e-7), transposed when r > c (so X X^T is the smaller Gram matrix)
//   5 times: A <- X X^T;  X <- a X + (b A + c A A) X     (a, b, c) = (3.4445, -4.7750, 2.0315)
//   W <- W (1 - lr wd) - lr sqrt(max(1, fan_out / fan_in)) X
// The quintic drives every singular value of U/||U||_F towards 1 without settling there:
// after 5 steps they lie in about [0.68, 1.13] (the scalar map's band, docs/muon.md), an
// update close to the orthogonal factor of U's polar decomposition. The reference's
// weights are (out, in) and scale by max(1, rows / cols); tapegrad's are (in, out)
// (y = x W), so here fan_out / fan_in = c / r.
//
// The other parameters (dim() != 2, and the matrices named in `adamw_matrices`: the
// embedding tables, which are looked up rather than multiplied) get AdamW with
// `options.adamw`, at a learning rate that follows the schedule in proportion:
// adamw.lr * (lr now / options.lr). State: "momentum.<name>" for the orthogonalised
// matrices, "m.<name>" and "v.<name>" for the others (optim.hpp's named slots).
// The iteration runs in T (float in training) on step()'s Context, through
// blas::gemm: the result does not depend on the thread count.
#pragma once

#include "../core/blas.hpp"
#include "optim.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace tapegrad::nn {

struct MuonOptions {
  double lr = 0.02;  // of the orthogonalised matrices
  double momentum = 0.95;
  bool nesterov = true;
  int ns_steps = 5;
  double weight_decay = 0;  // decoupled, on the orthogonalised matrices
  AdamWOptions adamw = {.lr = 3e-3, .weight_decay = 0};  // for everything else
};

// The quintic Newton-Schulz coefficients of the reference implementation.
inline constexpr double kNewtonSchulzA = 3.4445, kNewtonSchulzB = -4.7750, kNewtonSchulzC = 2.0315;

// x (r x c, r <= c, row-major) <- the Newton-Schulz iteration's approximately orthogonal
// factor of x, `steps` times; `a_buf` (r x r), `b_buf` (r x r) and `next` (r x c) are scratch.
template <class T>
void newton_schulz(const Context& ctx, T* x, std::size_t r, std::size_t c, int steps, T* a_buf, T* b_buf, T* next) {
  double sum = 0;
  for (std::size_t k = 0; k < r * c; ++k) sum += double(x[k]) * double(x[k]);
  const T inv = T(1 / (std::sqrt(sum) + 1e-7));
  for (std::size_t k = 0; k < r * c; ++k) x[k] *= inv;
  for (int s = 0; s < steps; ++s) {
    blas::gemm(ctx, false, true, r, r, c, T(1), x, x, T(0), a_buf);  // A = X X^T
    for (std::size_t k = 0; k < r * r; ++k) b_buf[k] = T(kNewtonSchulzB) * a_buf[k];
    blas::gemm(ctx, false, false, r, r, r, T(kNewtonSchulzC), a_buf, a_buf, T(1), b_buf);  // B = b A + c A A
    std::copy_n(x, r * c, next);
    blas::gemm(ctx, false, false, r, c, r, T(1), b_buf, x, T(kNewtonSchulzA), next);  // X' = a X + B X
    std::copy_n(next, r * c, x);
  }
}

template <class T>
class Muon final : public Optimizer<T> {
 public:
  // Orthogonalises every dim() == 2 parameter but those named in `adamw_matrices`.
  Muon(const NamedTensors<T>& params, MuonOptions opt = {}, std::vector<std::string> adamw_matrices = {})
      : Optimizer<T>("Muon", params, opt.lr, {"momentum", "m", "v"}, {"v"}, slot_filter(params, adamw_matrices)),
        opt_(opt) {
    if (!(opt.momentum >= 0 && opt.momentum < 1))
      throw ConfigError("Muon: momentum must be in [0, 1), got " + std::to_string(opt.momentum));
    if (opt.ns_steps < 1 || opt.ns_steps > 100)
      throw ConfigError("Muon: ns_steps must be from 1 to 100, got " + std::to_string(opt.ns_steps));
    if (!(opt.weight_decay >= 0)) throw ConfigError("Muon: weight_decay must be >= 0, got " + std::to_string(opt.weight_decay));
    if (!(opt.lr > 0)) throw ConfigError("Muon: lr must be > 0, got " + std::to_string(opt.lr));
    check_adamw_options(opt.adamw, "Muon (its AdamW)");
  }
  const MuonOptions& options() const { return opt_; }
  // Whether parameter i (in parameters() order) is orthogonalised.
  bool orthogonalised(std::size_t i) const { return this->holds(0, i); }

  Muon(const Muon&) = delete;
  Muon& operator=(const Muon&) = delete;

 protected:
  void update(const Context& context) override {
    const std::int64_t t = this->begin_step();
    const double lr = this->lr();
    const AdamWUpdate<T> adamw(opt_.adamw, opt_.adamw.lr * (lr / opt_.lr), t);
    const T mu = T(opt_.momentum), one_minus_mu = T(1 - opt_.momentum), decay = T(1 - lr * opt_.weight_decay);
    for (std::size_t i = 0; i < this->parameter_count(); ++i) {
      const auto flat = this->flat_parameter(i);
      if (!flat) continue;
      T* p = flat->value;
      const T* g = flat->grad;
      const std::size_t n = flat->size;
      if (!orthogonalised(i)) {
        adamw(context, p, g, this->buffer(1, i), this->buffer(2, i), n, this->decayed(i));
        continue;
      }
      const Shape shape = this->parameters()[i].second.shape();
      const std::size_t rows = shape[0], cols = shape[1], r = std::min(rows, cols), c = std::max(rows, cols);
      T* m = this->buffer(0, i);
      update_.resize(n);
      for (std::size_t k = 0; k < n; ++k) {
        m[k] += one_minus_mu * (g[k] - m[k]);
        update_[k] = opt_.nesterov ? g[k] + mu * (m[k] - g[k]) : m[k];
      }
      x_.resize(n);
      if (rows > cols) {  // work on U^T (cols x rows)
        for (std::size_t a = 0; a < rows; ++a)
          for (std::size_t b = 0; b < cols; ++b) x_[b * rows + a] = update_[a * cols + b];
      } else {
        std::copy_n(update_.data(), n, x_.data());
      }
      gram_.resize(r * r);
      poly_.resize(r * r);
      newton_schulz(context, x_.data(), r, c, opt_.ns_steps, gram_.data(), poly_.data(), update_.data());
      const T step = T(lr * std::sqrt(std::max(1.0, double(cols) / double(rows))));
      for (std::size_t a = 0; a < rows; ++a)
        for (std::size_t b = 0; b < cols; ++b) {
          const T u = rows > cols ? x_[b * rows + a] : x_[a * cols + b];
          T& w = p[a * cols + b];
          w = w * decay - step * u;
        }
    }
  }

 private:
  static typename Optimizer<T>::SlotFilter slot_filter(const NamedTensors<T>& params, const std::vector<std::string>& adamw_matrices) {
    std::vector<const TensorMeta*> on_adamw;  // by tensor: a tied tensor under another name counts too
    for (const auto& [name, p] : params)
      if (std::find(adamw_matrices.begin(), adamw_matrices.end(), name) != adamw_matrices.end()) on_adamw.push_back(&p.meta());
    for (const auto& name : adamw_matrices)
      if (std::none_of(params.begin(), params.end(), [&](const auto& np) { return np.first == name; }))
        throw ConfigError("Muon: adamw_matrices names '" + name + "', which is not a parameter");
    return [on_adamw](const std::string& slot, const Tensor<T>& p) {
      const bool orthogonal = p.dim() == 2 && std::find(on_adamw.begin(), on_adamw.end(), &p.meta()) == on_adamw.end();
      return slot == "momentum" ? orthogonal : !orthogonal;
    };
  }

  MuonOptions opt_;
  std::vector<T> update_, x_, gram_, poly_;  // scratch, reused across steps
};

}  // namespace tapegrad::nn
