// Muon (nn/muon.hpp): its update against a plain-loop reference in double, the
// orthogonalisation checked with an SVD, the split between Muon and AdamW, and its state.
#include <tapegrad/tapegrad.hpp>

#include "singular_values.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

using namespace tapegrad;
using namespace tapegrad::nn;

namespace {

using Matrix = std::vector<double>;  // row-major

Matrix matmul(const Matrix& a, const Matrix& b, std::size_t n, std::size_t k, std::size_t m, bool transpose_b = false) {
  Matrix c(n * m, 0.0);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < m; ++j)
      for (std::size_t l = 0; l < k; ++l) c[i * m + j] += a[i * k + l] * (transpose_b ? b[j * k + l] : b[l * m + j]);
  return c;
}

// The reference's zeropower_via_newtonschulz5 on g (rows x cols), in plain loops.
Matrix newton_schulz_reference(Matrix g, std::size_t rows, std::size_t cols, int steps) {
  const bool tall = rows > cols;
  const std::size_t r = tall ? cols : rows, c = tall ? rows : cols;
  Matrix x(r * c);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) (tall ? x[j * rows + i] : x[i * cols + j]) = g[i * cols + j];
  double norm = 0;
  for (double v : x) norm += v * v;
  for (double& v : x) v /= std::sqrt(norm) + 1e-7;
  for (int s = 0; s < steps; ++s) {
    const Matrix a = matmul(x, x, r, c, r, true), aa = matmul(a, a, r, r, r);
    Matrix b(r * r);
    for (std::size_t k = 0; k < r * r; ++k) b[k] = -4.7750 * a[k] + 2.0315 * aa[k];
    const Matrix bx = matmul(b, x, r, r, c);
    for (std::size_t k = 0; k < r * c; ++k) x[k] = 3.4445 * x[k] + bx[k];
  }
  Matrix out(rows * cols);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) out[i * cols + j] = tall ? x[j * rows + i] : x[i * cols + j];
  return out;
}

Tensor<double> random_tensor(const Shape& shape, std::mt19937_64& rng, double stddev = 1.0) {
  std::normal_distribution<double> normal(0.0, stddev);
  Array<double> a = Array<double>::from_shape(shape);
  for (auto& v : a) v = normal(rng);
  return Tensor<double>(std::move(a), true);
}

void set_gradient(const Tensor<double>& p, std::mt19937_64& rng) {
  Array<double>& g = p.grad_accumulator("test");
  std::normal_distribution<double> normal(0.0, 1.0);
  for (auto& v : g) v = normal(rng);
}

std::vector<double> values(const Tensor<double>& t) { return {t.data(), t.data() + t.size()}; }

}  // namespace

TEST_CASE("muon: three steps match a plain-loop reference in double (Nesterov momentum, Newton-Schulz, shape scale, "
          "AdamW for the embedding and the bias)") {
  std::mt19937_64 rng(7);
  const NamedTensors<double> params{{"emb", random_tensor({7, 3}, rng)},
                                    {"wide", random_tensor({5, 8}, rng)},
                                    {"tall", random_tensor({9, 4}, rng)},
                                    {"bias", random_tensor({4}, rng)}};
  const MuonOptions opt{.lr = 0.05, .momentum = 0.9, .weight_decay = 0.1, .adamw = {.lr = 0.01, .weight_decay = 0.2}};
  Muon<double> muon(params, opt, {"emb"});
  CHECK(!muon.orthogonalised(0));
  CHECK(muon.orthogonalised(1));
  CHECK(muon.orthogonalised(2));
  CHECK(!muon.orthogonalised(3));

  // the reference's state
  std::vector<std::vector<double>> w, mom(4), m(4), v(4);
  for (const auto& [name, p] : params) w.push_back(values(p));
  for (std::size_t i = 0; i < 4; ++i) mom[i] = m[i] = v[i] = std::vector<double>(w[i].size(), 0.0);
  const double schedule[3] = {1.0, 0.5, 0.25};  // the lr multiplier of each step
  for (int t = 1; t <= 3; ++t) {
    const double lr = opt.lr * schedule[t - 1], adamw_lr = opt.adamw.lr * schedule[t - 1];
    for (std::size_t i = 0; i < 4; ++i) {
      set_gradient(params[i].second, rng);
      const std::vector<double> g(params[i].second.grad().begin(), params[i].second.grad().end());
      if (i == 1 || i == 2) {
        const std::size_t rows = params[i].second.shape()[0], cols = params[i].second.shape()[1];
        Matrix u(g.size());
        for (std::size_t k = 0; k < g.size(); ++k) {
          mom[i][k] += (1 - opt.momentum) * (g[k] - mom[i][k]);
          u[k] = g[k] + opt.momentum * (mom[i][k] - g[k]);
        }
        const Matrix x = newton_schulz_reference(u, rows, cols, 5);
        const double scale = std::sqrt(std::max(1.0, double(cols) / double(rows)));
        for (std::size_t k = 0; k < g.size(); ++k) w[i][k] = w[i][k] * (1 - lr * opt.weight_decay) - lr * scale * x[k];
      } else {
        const double b1 = opt.adamw.beta1, b2 = opt.adamw.beta2;
        for (std::size_t k = 0; k < g.size(); ++k) {
          if (i == 0) w[i][k] *= 1 - adamw_lr * opt.adamw.weight_decay;  // 2-D: decayed
          m[i][k] = b1 * m[i][k] + (1 - b1) * g[k];
          v[i][k] = b2 * v[i][k] + (1 - b2) * g[k] * g[k];
          const double m_hat = m[i][k] / (1 - std::pow(b1, t)), v_hat = v[i][k] / (1 - std::pow(b2, t));
          w[i][k] -= adamw_lr * m_hat / (std::sqrt(v_hat) + opt.adamw.eps);
        }
      }
    }
    muon.step(lr);
    for (std::size_t i = 0; i < 4; ++i) {
      CAPTURE(params[i].first);
      CAPTURE(t);
      const auto got = values(params[i].second);
      for (std::size_t k = 0; k < got.size(); ++k) REQUIRE(got[k] == doctest::Approx(w[i][k]).epsilon(1e-12));
    }
  }
}

TEST_CASE("muon: the orthogonalised update has the singular values the Newton-Schulz quintic maps the gradient's to, "
          "all within its band [0.68, 1.14]") {
  for (const Shape& shape : {Shape{6, 10}, Shape{12, 5}, Shape{8, 8}}) {
    CAPTURE(shape_str(shape));
    std::mt19937_64 rng(11);
    const NamedTensors<double> params{{"w", random_tensor(shape, rng)}};
    Muon<double> muon(params, {.lr = 1.0, .momentum = 0.0});  // no momentum: the update is the gradient's
    set_gradient(params[0].second, rng);
    const Array<double> g = params[0].second.grad(), before = params[0].second.value();
    muon.step();
    const double scale = std::sqrt(std::max(1.0, double(shape[1]) / double(shape[0])));
    std::vector<double> update(g.size()), gradient(g.begin(), g.end());
    double frobenius = 0;
    for (std::size_t k = 0; k < g.size(); ++k) {
      update[k] = (before.data()[k] - params[0].second.data()[k]) / scale;
      frobenius += gradient[k] * gradient[k];
    }
    frobenius = std::sqrt(frobenius);
    const auto s_update = testing::singular_values(update, shape[0], shape[1]);
    const auto s_grad = testing::singular_values(gradient, shape[0], shape[1]);
    REQUIRE(s_grad.back() / frobenius > 0.01);  // the band holds from there up
    auto quintic = [](double x) {
      for (int s = 0; s < 5; ++s) x = 3.4445 * x - 4.7750 * x * x * x + 2.0315 * x * x * x * x * x;
      return x;
    };
    std::vector<double> expected, got = s_update;
    for (double s : s_grad) expected.push_back(quintic(s / (frobenius + 1e-7)));
    std::sort(expected.begin(), expected.end());
    std::sort(got.begin(), got.end());
    REQUIRE(got.size() == expected.size());
    for (std::size_t k = 0; k < got.size(); ++k) {
      CHECK(got[k] == doctest::Approx(expected[k]).epsilon(1e-9));
      CHECK(got[k] > 0.68);
      CHECK(got[k] < 1.14);
    }
  }
}

TEST_CASE("muon: state names its buffers by slot, saves and resumes bit-identically, and refuses what is not its own") {
  std::mt19937_64 rng(3);
  auto make = [&] {
    std::mt19937_64 init(5);
    return NamedTensors<double>{{"wte", random_tensor({6, 4}, init)}, {"w", random_tensor({4, 4}, init)},
                                {"b", random_tensor({4}, init)}};
  };
  const NamedTensors<double> a = make(), b = make();
  Muon<double> first(a, {}, {"wte"}), second(b, {}, {"wte"});
  std::vector<std::string> names;
  for (const auto& [name, t] : first.state()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"momentum.w", "m.wte", "m.b", "v.wte", "v.b"});
  std::vector<std::mt19937_64> streams{rng, rng};
  auto run = [&](Muon<double>& opt, const NamedTensors<double>& p, std::mt19937_64& g, int steps) {
    for (int s = 0; s < steps; ++s) {
      for (const auto& [name, t] : p) set_gradient(t, g);
      opt.step(0.01);
    }
  };
  run(first, a, streams[0], 4);  // 4 steps straight
  run(second, b, streams[1], 2);  // 2 steps, then a new optimiser from the saved state
  Muon<double> resumed(b, {}, {"wte"});
  resumed.load_state(second.state(), second.step_count());
  run(resumed, b, streams[1], 2);
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(values(a[i].second) == values(b[i].second));

  auto without_momentum = second.state();
  without_momentum.erase(without_momentum.begin());
  CHECK_THROWS_WITH_AS(resumed.load_state(without_momentum, 2), doctest::Contains("missing state 'momentum.w'"), FormatError);
  auto with_adamw_moment = second.state();
  with_adamw_moment.emplace_back("m.w", Tensor<double>::zeros({4, 4}));
  CHECK_THROWS_WITH_AS(resumed.load_state(with_adamw_moment, 2), doctest::Contains("unexpected state 'm.w'"), FormatError);
  CHECK_THROWS_WITH_AS(Muon<double>(a, {}, {"nonexistent"}), doctest::Contains("'nonexistent'"), ConfigError);
  CHECK_THROWS_AS(Muon<double>(a, {.momentum = 1.0}), ConfigError);
}
