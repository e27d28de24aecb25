// Plain-loop double-precision references for the op table (tests/op_table.hpp),
// written from the math in each op's header comment, independently of the op:
// naive index loops over std::vector<double>, no xtensor expressions, no BLAS, no
// shared helper of the op's. Each takes the inputs' values and returns the output.
#pragma once

#include <tapegrad/core/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <numbers>
#include <vector>

namespace tapegrad::testing {

// A reference output: its shape and row-major values.
struct Ref {
  Shape shape;
  std::vector<double> values;
};

template <class T>
Ref ref_of(const Tensor<T>& t) {
  return {t.shape(), std::vector<double>(t.data(), t.data() + t.size())};
}
inline Ref ref_of(const Ids& ids) { return {shape_of(ids), std::vector<double>(ids.begin(), ids.end())}; }

// Row-major multi-index <-> flat index.
inline std::vector<std::size_t> unravel(std::size_t flat, const Shape& s) {
  std::vector<std::size_t> index(s.size());
  for (std::size_t k = s.size(); k-- > 0;) {
    index[k] = flat % s[k];
    flat /= s[k];
  }
  return index;
}
inline std::size_t ravel(const std::vector<std::size_t>& index, const Shape& s) {
  std::size_t flat = 0;
  for (std::size_t k = 0; k < s.size(); ++k) flat = flat * s[k] + index[k];
  return flat;
}

inline Ref ref_unary(const Ref& x, const std::function<double(double)>& f) {
  Ref y{x.shape, {}};
  for (double v : x.values) y.values.push_back(f(v));
  return y;
}

// numpy broadcasting: dims aligned from the right; a 1 or a missing dim stretches.
inline Ref ref_broadcast(const Ref& a, const Ref& b, const std::function<double(double, double)>& f) {
  const std::size_t rank = std::max(a.shape.size(), b.shape.size());
  const auto dim = [&](const Shape& s, std::size_t k) {  // dim k of `rank`, 1 where s has none
    return k + s.size() < rank ? std::size_t(1) : s[k + s.size() - rank];
  };
  Ref y;
  for (std::size_t k = 0; k < rank; ++k) y.shape.push_back(std::max(dim(a.shape, k), dim(b.shape, k)));
  for (std::size_t i = 0; i < numel(y.shape); ++i) {
    const auto index = unravel(i, y.shape);
    const auto read = [&](const Ref& x) {
      std::vector<std::size_t> at;
      for (std::size_t k = rank - x.shape.size(); k < rank; ++k) at.push_back(dim(x.shape, k) == 1 ? 0 : index[k]);
      return x.values[ravel(at, x.shape)];
    };
    y.values.push_back(f(read(a), read(b)));
  }
  return y;
}

// c (..., M, N) = op(a) op(b); b (K, N) shared or with a's batch dims.
inline Ref ref_matmul(const Ref& a, const Ref& b, bool ta, bool tb) {
  const std::size_t ra = a.shape.size(), rb = b.shape.size();
  const std::size_t M = ta ? a.shape[ra - 1] : a.shape[ra - 2], K = ta ? a.shape[ra - 2] : a.shape[ra - 1];
  const std::size_t N = tb ? b.shape[rb - 2] : b.shape[rb - 1];
  const std::size_t batch = a.values.size() / (M * K);
  const bool shared = rb == 2;
  Ref c{Shape(a.shape.begin(), a.shape.end() - 2), {}};
  c.shape.push_back(M);
  c.shape.push_back(N);
  for (std::size_t n = 0; n < batch; ++n)
    for (std::size_t i = 0; i < M; ++i)
      for (std::size_t j = 0; j < N; ++j) {
        double s = 0;
        for (std::size_t k = 0; k < K; ++k) {
          const double av = a.values[n * M * K + (ta ? k * M + i : i * K + k)];
          const double bv = b.values[(shared ? 0 : n * K * N) + (tb ? j * K + k : k * N + j)];
          s += av * bv;
        }
        c.values.push_back(s);
      }
  return c;
}

inline Ref ref_sum(const Ref& x) {
  double s = 0;
  for (double v : x.values) s += v;
  return {{}, {s}};
}
inline Ref ref_mean(const Ref& x) { return {{}, {ref_sum(x).values[0] / double(x.values.size())}}; }

inline Ref ref_reshape(const Ref& x, const Shape& shape) { return {shape, x.values}; }

// y[i_0, ..., i_r] = x[j] with j[axes[k]] = i_k.
inline Ref ref_permute(const Ref& x, const std::vector<std::size_t>& axes) {
  Ref y;
  for (std::size_t k = 0; k < axes.size(); ++k) y.shape.push_back(x.shape[axes[k]]);
  for (std::size_t i = 0; i < numel(y.shape); ++i) {
    const auto index = unravel(i, y.shape);
    std::vector<std::size_t> from(axes.size());
    for (std::size_t k = 0; k < axes.size(); ++k) from[axes[k]] = index[k];
    y.values.push_back(x.values[ravel(from, x.shape)]);
  }
  return y;
}

// (B, T, d) -> (B, h, T, d/h): y[b, j, t, e] = x[b, t, j dh + e].
inline Ref ref_split_heads(const Ref& x, std::size_t h) {
  const std::size_t B = x.shape[0], T = x.shape[1], dh = x.shape[2] / h;
  Ref y{{B, h, T, dh}, {}};
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t j = 0; j < h; ++j)
      for (std::size_t t = 0; t < T; ++t)
        for (std::size_t e = 0; e < dh; ++e) y.values.push_back(x.values[(b * T + t) * h * dh + j * dh + e]);
  return y;
}
// (B, h, T, dh) -> (B, T, h dh): y[b, t, j dh + e] = x[b, j, t, e].
inline Ref ref_merge_heads(const Ref& x) {
  const std::size_t B = x.shape[0], h = x.shape[1], T = x.shape[2], dh = x.shape[3];
  Ref y{{B, T, h * dh}, {}};
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t t = 0; t < T; ++t)
      for (std::size_t j = 0; j < h; ++j)
        for (std::size_t e = 0; e < dh; ++e) y.values.push_back(x.values[((b * h + j) * T + t) * dh + e]);
  return y;
}

// -inf at [.., t, s] for s > t.
inline Ref ref_causal_mask(const Ref& x) {
  Ref y = x;
  const std::size_t T = x.shape.back();
  for (std::size_t i = 0; i < y.values.size(); ++i)
    if (i % T > (i / T) % T) y.values[i] = -std::numeric_limits<double>::infinity();
  return y;
}

// Over the last axis. A row entirely -inf: softmax 0, log_softmax -inf.
inline Ref ref_softmax(const Ref& x, bool log) {
  const double ninf = -std::numeric_limits<double>::infinity();
  const std::size_t C = x.shape.back();
  Ref y{x.shape, std::vector<double>(x.values.size())};
  for (std::size_t r = 0; r < x.values.size() / C; ++r) {
    const double* row = &x.values[r * C];
    double max = ninf;
    for (std::size_t j = 0; j < C; ++j) max = std::max(max, row[j]);
    double sum = 0;
    if (max != ninf)
      for (std::size_t j = 0; j < C; ++j) sum += std::exp(row[j] - max);
    for (std::size_t j = 0; j < C; ++j) {
      if (max == ninf)
        y.values[r * C + j] = log ? ninf : 0.0;
      else
        y.values[r * C + j] = log ? row[j] - max - std::log(sum) : std::exp(row[j] - max) / sum;
    }
  }
  return y;
}

// Over the last axis: (x - mean) / sqrt(biased var + eps) * w + b.
inline Ref ref_layernorm(const Ref& x, const Ref& w, const Ref& b, double eps = 1e-5) {
  const std::size_t C = x.shape.back();
  Ref y{x.shape, std::vector<double>(x.values.size())};
  for (std::size_t r = 0; r < x.values.size() / C; ++r) {
    double mean = 0, var = 0;
    for (std::size_t j = 0; j < C; ++j) mean += x.values[r * C + j] / double(C);
    for (std::size_t j = 0; j < C; ++j) var += (x.values[r * C + j] - mean) * (x.values[r * C + j] - mean) / double(C);
    for (std::size_t j = 0; j < C; ++j)
      y.values[r * C + j] = (x.values[r * C + j] - mean) / std::sqrt(var + eps) * w.values[j] + b.values[j];
  }
  return y;
}

inline double ref_gelu(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (x + 0.044715 * x * x * x)));
}

// y[..., :] = table[id, :].
inline Ref ref_embedding(const Ref& table, const Ref& ids) {
  const std::size_t d = table.shape[1];
  Ref y{ids.shape, {}};
  y.shape.push_back(d);
  for (double id : ids.values)
    for (std::size_t e = 0; e < d; ++e) y.values.push_back(table.values[std::size_t(id) * d + e]);
  return y;
}

// mean over rows of log sum exp(row) - row[target].
inline Ref ref_cross_entropy(const Ref& logits, const Ref& targets) {
  const std::size_t V = logits.shape.back(), N = logits.values.size() / V;
  double total = 0;
  for (std::size_t n = 0; n < N; ++n) {
    double sum = 0;
    for (std::size_t j = 0; j < V; ++j) sum += std::exp(logits.values[n * V + j]);
    total += std::log(sum) - logits.values[n * V + std::size_t(targets.values[n])];
  }
  return {{}, {total / double(N)}};
}

// Per (..., T, dh) matrix: softmax(mask(q k^T / sqrt(dh))) v.
inline Ref ref_causal_attention(const Ref& q, const Ref& k, const Ref& v) {
  const std::size_t dh = q.shape.back(), T = q.shape[q.shape.size() - 2], mats = q.values.size() / (T * dh);
  Ref o{q.shape, std::vector<double>(q.values.size(), 0.0)};
  for (std::size_t m = 0; m < mats; ++m) {
    const std::size_t base = m * T * dh;
    for (std::size_t t = 0; t < T; ++t) {
      std::vector<double> p(t + 1);
      double max = -std::numeric_limits<double>::infinity(), sum = 0;
      for (std::size_t s = 0; s <= t; ++s) {
        for (std::size_t e = 0; e < dh; ++e) p[s] += q.values[base + t * dh + e] * k.values[base + s * dh + e];
        p[s] /= std::sqrt(double(dh));
        max = std::max(max, p[s]);
      }
      for (double& x : p) sum += (x = std::exp(x - max));
      for (std::size_t s = 0; s <= t; ++s)
        for (std::size_t e = 0; e < dh; ++e) o.values[base + t * dh + e] += p[s] / sum * v.values[base + s * dh + e];
    }
  }
  return o;
}

// Over the last axis: x / sqrt(mean(x^2) + eps) * w.
inline Ref ref_rmsnorm(const Ref& x, const Ref& w, double eps = 1e-5) {
  const std::size_t C = x.shape.back();
  Ref y{x.shape, std::vector<double>(x.values.size())};
  for (std::size_t r = 0; r < x.values.size() / C; ++r) {
    double ms = 0;
    for (std::size_t j = 0; j < C; ++j) ms += x.values[r * C + j] * x.values[r * C + j] / double(C);
    for (std::size_t j = 0; j < C; ++j) y.values[r * C + j] = x.values[r * C + j] / std::sqrt(ms + eps) * w.values[j];
  }
  return y;
}

// Rows (..., T, dh) at positions offset + t: pairs (i, i + dh/2) turned by (offset + t) theta^(-2i/dh).
inline Ref ref_rope(const Ref& x, std::size_t offset, double theta = 10000.0) {
  const std::size_t dh = x.shape.back(), T = x.shape[x.shape.size() - 2], half = dh / 2;
  Ref y{x.shape, std::vector<double>(x.values.size())};
  for (std::size_t r = 0; r < x.values.size() / dh; ++r)
    for (std::size_t i = 0; i < half; ++i) {
      const double angle = double(offset + r % T) / std::pow(theta, double(2 * i) / double(dh));
      const double a = x.values[r * dh + i], b = x.values[r * dh + i + half];
      y.values[r * dh + i] = a * std::cos(angle) - b * std::sin(angle);
      y.values[r * dh + i + half] = a * std::sin(angle) + b * std::cos(angle);
    }
  return y;
}

// y[..., i, ...] = x[..., begin + i, ...] for i < end - begin along `axis` (>= 0).
inline Ref ref_slice(const Ref& x, std::size_t axis, std::size_t begin, std::size_t end) {
  Ref y{x.shape, {}};
  y.shape[axis] = end - begin;
  for (std::size_t i = 0; i < numel(y.shape); ++i) {
    auto index = unravel(i, y.shape);
    index[axis] += begin;
    y.values.push_back(x.values[ravel(index, x.shape)]);
  }
  return y;
}

// The parts one after another along `axis` (>= 0).
inline Ref ref_concat(const std::vector<Ref>& parts, std::size_t axis) {
  Ref y{parts[0].shape, {}};
  y.shape[axis] = 0;
  for (const Ref& p : parts) y.shape[axis] += p.shape[axis];
  for (std::size_t i = 0; i < numel(y.shape); ++i) {
    auto index = unravel(i, y.shape);
    std::size_t k = 0;
    while (index[axis] >= parts[k].shape[axis]) index[axis] -= parts[k++].shape[axis];
    y.values.push_back(parts[k].values[ravel(index, parts[k].shape)]);
  }
  return y;
}

// How far an op's output is from its reference: the largest |out - ref| relative to
// max(1, max |ref|); infinite on a shape mismatch, a NaN, or a non-finite reference
// entry (a masked -inf) that the output does not match exactly.
template <class T>
double forward_error(const Tensor<T>& out, const Ref& ref) {
  if (out.shape() != ref.shape || out.size() != ref.values.size()) return INFINITY;
  double scale = 1, worst = 0;
  for (double r : ref.values)
    if (std::isfinite(r)) scale = std::max(scale, std::abs(r));
  for (std::size_t i = 0; i < ref.values.size(); ++i) {
    const double o = double(out.data()[i]), r = ref.values[i];
    if (!std::isfinite(r)) {
      if (!(o == r)) return INFINITY;
      continue;
    }
    const double diff = std::abs(o - r);
    worst = std::isnan(diff) ? INFINITY : std::max(worst, diff / scale);
  }
  return worst;
}

}  // namespace tapegrad::testing
