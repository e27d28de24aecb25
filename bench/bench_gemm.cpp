// bench/bench_gemm — one training step's float GEMMs, shape by shape, through blas::gemm
// with a one-thread Context (the same row/column blocks training runs), timed by the
// thread's CPU time (so a loaded machine barely moves it). Prints one JSON line per GEMM:
// its shape, the backend (TAPEGRAD_GEMM, OPENBLAS_CORETYPE choose it; see core/blas.hpp)
// and GFLOP/s from the median of --reps calls. scripts/bench_gemm_backends.sh runs it
// under each backend, alternating, and makes docs/gemm_backend.md's table.
//
//   bench_gemm [--presets small,medium,long] [--reps 15]
#include <tapegrad/tapegrad.hpp>

#include "bench_args.hpp"

#include <time.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace tapegrad;

namespace {

constexpr std::size_t kVocab = 65;

double thread_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

struct Gemm {
  std::string name;
  bool ta, tb;
  std::size_t M, N, K;
  float beta;
};

// The linear maps of one step: forward x W, backward dX = dY W^T and dW += X^T dY. dX runs
// with beta 0 when it is the gradient's first term (GradRef::grad_output: the MLP's inputs,
// w_o's, the first of q, k, v), else with beta 1 (added to the others); both are timed.
std::vector<Gemm> linear_gemms(const models::Preset& p) {
  const std::size_t R = p.batch * p.block_size, d = p.d_model;
  std::vector<Gemm> out;
  const auto linear = [&](const std::string& n, std::size_t din, std::size_t dout) {
    out.push_back({n + " fwd x W", false, false, R, dout, din, 0.f});
    out.push_back({n + " bwd dX = dY W^T", false, true, R, din, dout, 0.f});
    out.push_back({n + " bwd dX += dY W^T", false, true, R, din, dout, 1.f});
    out.push_back({n + " bwd dW += X^T dY", true, false, din, dout, R, 1.f});
  };
  linear("qkvo", d, d);
  linear("fc", d, 4 * d);
  linear("proj", 4 * d, d);
  out.push_back({"head fwd x E^T", false, true, R, kVocab, d, 0.f});
  return out;
}

template <class F>
double median_seconds(int reps, F&& f) {
  f();  // warm-up: creates the primitives, touches the buffers
  std::vector<double> s;
  for (int r = 0; r < reps; ++r) {
    const double t0 = thread_seconds();
    f();
    s.push_back(thread_seconds() - t0);
  }
  return bench::median(s);
}

void print(const char* preset, const std::string& name, const std::string& shape, double flops, double seconds) {
  std::printf("{\"preset\": \"%s\", \"gemm\": \"%s\", \"shape\": \"%s\", \"backend\": \"%s\", \"gflops\": %.1f}\n",
              preset, name.c_str(), shape.c_str(), blas::gemm_backend().c_str(), flops / seconds / 1e9);
  std::fflush(stdout);
}

void run(const models::Preset& p, int reps) {
  const Context one{1};
  for (const Gemm& g : linear_gemms(p)) {
    std::vector<float> a(g.M * g.K, 0.01f), b(g.K * g.N, 0.02f), c(g.M * g.N, 0.f);
    const double s = median_seconds(
        reps, [&] { blas::gemm(one, g.ta, g.tb, g.M, g.N, g.K, 1.0f, a.data(), b.data(), g.beta, c.data()); });
    const std::string shape = std::to_string(g.M) + "x" + std::to_string(g.N) + "x" + std::to_string(g.K) +
                              (g.ta ? " A^T" : "") + (g.tb ? " B^T" : "") + (g.beta != 0 ? " beta 1" : "");
    print(p.name, g.name, shape, 2.0 * double(g.M * g.N * g.K), s);
  }
  // Attention's strips for one (batch, head) matrix, the calls ops::causal_attention makes:
  // forward S = c Q_b K^T, O_b = P V; backward also dV += P^T dO_b, dP = dO_b V^T,
  // dQ_b += c dS K, dK += c dS^T Q_b (query blocks of qb = ops::query_block(T) rows, strips qb x t1).
  const std::size_t T = p.block_size, dh = p.d_model / p.n_head, qb = ops::query_block(T);
  const float c = 1.0f / std::sqrt(float(dh));
  std::vector<float> q(T * dh, 0.01f), k(T * dh, 0.02f), v(T * dh, 0.03f), o(T * dh), d(T * dh, 0.f), s(qb * T, 0.01f),
      s2(qb * T, 0.01f);
  double fwd_flops = 0, bwd_flops = 0;
  for (std::size_t t0 = 0; t0 < T; t0 += qb) {
    const double strip = 2.0 * double(std::min(T, t0 + qb) - t0) * double(std::min(T, t0 + qb)) * double(dh);
    fwd_flops += 2 * strip;
    bwd_flops += 4 * strip;
  }
  const double fwd = median_seconds(reps, [&] {
    for (std::size_t t0 = 0; t0 < T; t0 += qb) {
      const std::size_t t1 = std::min(T, t0 + qb), rows = t1 - t0;
      blas::gemm(false, true, rows, t1, dh, c, q.data() + t0 * dh, k.data(), 0.f, s.data());
      blas::gemm(false, false, rows, dh, t1, 1.f, s.data(), v.data(), 0.f, o.data() + t0 * dh);
    }
  });
  const double bwd = median_seconds(reps, [&] {
    for (std::size_t t0 = 0; t0 < T; t0 += qb) {
      const std::size_t t1 = std::min(T, t0 + qb), rows = t1 - t0;
      blas::gemm(true, false, t1, dh, rows, 1.f, s.data(), o.data() + t0 * dh, 1.f, d.data());
      blas::gemm(false, true, rows, t1, dh, 1.f, o.data() + t0 * dh, v.data(), 0.f, s2.data());
      blas::gemm(false, false, rows, dh, t1, c, s2.data(), k.data(), 1.f, d.data() + t0 * dh);
      blas::gemm(true, false, t1, dh, rows, c, s2.data(), q.data() + t0 * dh, 1.f, d.data());
    }
  });
  const std::string shape = std::to_string(qb) + " x t1 x " + std::to_string(dh) + ", t1 <= " + std::to_string(T);
  print(p.name, "attention fwd strips (S, PV)", shape, fwd_flops, fwd);
  print(p.name, "attention bwd strips (dV, dP, dQ, dK)", shape, bwd_flops, bwd);
}

}  // namespace

int main(int argc, char** argv) {
  const auto opt =
      bench::parse_options("bench_gemm", "--presets", "--reps", {{"small", "medium", "long"}, {1}, 15, 0}, argc, argv);
  for (const auto& name : opt.names) {
    try {
      run(models::find_preset(name), opt.runs);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_gemm: %s\n", e.what());
      return 2;
    }
  }
  return 0;
}
