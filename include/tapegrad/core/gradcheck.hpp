// tapegrad/core/gradcheck.hpp — finite-difference check of a tape's backward.
//
// The objective is a random projection L = sum(out * R) with a fixed random R
// (plain sum(out) hides bugs: softmax rows always sum to 1). Its gradient comes
// from one backward with seed R; the numeric gradient from central differences
//   dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (up - down),
// up and down being x_i +- eps as T represents them, each forward run without
// recording. Entries that are not finite (a -inf logit) have no finite difference
// and are skipped; a NaN anywhere in either gradient counts as an infinite error. Reported per input: the max absolute error
// and the normwise relative error max|g_analytic - g_numeric| / max|g_numeric|.
#pragma once

#include "tape.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace tapegrad {

struct GradcheckOptions {
  double eps = 1e-6;  // step for double; the float profile uses ~1e-2
  std::uint64_t seed = 20261128;
};

struct InputError {
  std::string name;
  Shape shape;
  double max_abs_error = 0;
  double max_rel_error = 0;
};

struct GradcheckReport {
  std::vector<InputError> inputs;
  std::vector<std::string> ops;  // op names the forward recorded
  double worst_rel_error() const {
    double w = 0;
    for (const auto& e : inputs) w = std::max(w, e.max_rel_error);
    return w;
  }
  bool recorded(const std::string& op) const { return std::find(ops.begin(), ops.end(), op) != ops.end(); }
};

// `forward(tape)` builds the output from `inputs` (and whatever else it captures);
// every input that requires grad is checked.
template <class T>
GradcheckReport gradcheck(const std::function<Tensor<T>(Tape&)>& forward, const NamedTensors<T>& inputs,
                          GradcheckOptions opt = {}) {
  GradcheckReport report;
  for (const auto& [name, x] : inputs) x.zero_grad();

  Tape tape;
  const Tensor<T> out = forward(tape);
  report.ops = tape.op_names();
  std::mt19937_64 rng(opt.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  Array<T> R = Array<T>::from_shape(out.value().shape());
  for (auto& r : R) r = T(normal(rng));
  tape.backward(out, R);

  auto projection = [&](Tape& probe) {
    const Tensor<T> o = forward(probe);
    double s = 0;
    for (std::size_t i = 0; i < o.size(); ++i) s += double(o.data()[i]) * double(R.data()[i]);
    return s;
  };

  Tape probe;
  NoGradGuard no_grad(probe);
  for (const auto& [name, input] : inputs) {
    if (!input.requires_grad()) continue;
    Tensor<T> x = input;
    InputError err{name, x.shape()};
    double max_numeric = 0, max_diff = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const T saved = x.data()[i];
      if (!std::isfinite(double(saved))) continue;
      const T up = T(saved + opt.eps), down = T(saved - opt.eps);  // the steps T can represent
      x.data()[i] = up;
      const double plus = projection(probe);
      x.data()[i] = down;
      const double minus = projection(probe);
      x.data()[i] = saved;
      const double numeric = (plus - minus) / (double(up) - double(down));
      const double analytic = x.has_grad() ? double(x.grad().data()[i]) : 0.0;
      max_numeric = std::max(max_numeric, std::abs(numeric));
      const double diff = std::abs(analytic - numeric);
      max_diff = std::isnan(diff) ? INFINITY : std::max(max_diff, diff);
    }
    err.max_abs_error = max_diff;
    err.max_rel_error = max_numeric > 0 ? max_diff / max_numeric : max_diff;
    report.inputs.push_back(err);
  }
  return report;
}

}  // namespace tapegrad
