// bench/bench_attention — times forward + backward of the attention core
// softmax(mask(Q K^T / sqrt(dh))) V on q, k, v (B, h, T, dh) in float, two ways: the
// fused op (ops::causal_attention) and the composed ops (matmul, scale, causal_mask,
// softmax, matmul: models::CausalSelfAttention::attend_composed). The paths alternate run
// by run in one process, after warm-up, so a noisy machine slows both alike. One JSON
// line per (shape, threads, path): median and min ms, and `saved_bytes`, the heap the
// forward leaves allocated until backward (in use after it minus before; the output is
// included: O and L for the fused op, P and O for the composed path), and the peak RSS of
// the child process each (shape, threads) runs in. Shape 8k (T = 8192) runs the fused op
// only: the composed path's (B, h, T, T) tensors would need several GiB. It measures; it
// asserts nothing.
//
//   bench_attention [--shapes small,long,8k] [--threads 1] [--runs 10] [--warmup 2]
#include <tapegrad/tapegrad.hpp>

#include "bench_args.hpp"

#include <malloc.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

using namespace tapegrad;

namespace {

struct Shape4 {
  const char* name;
  std::size_t B, h, T, dh;
};
// The attention of presets small and long (nn/gpt.hpp): d = 128 in 4 heads.
// 8k: one long sequence, the scaling check of the fused op (T = 8192).
constexpr std::array<Shape4, 3> kShapes{{{"small", 12, 4, 64, 32}, {"long", 4, 4, 1024, 32}, {"8k", 1, 4, 8192, 32}}};
constexpr std::size_t kComposedMaxT = 1024;

std::size_t heap_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

Tensor<float> randn(const Shape& shape, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.f, 1.f);
  Array<float> a = Array<float>::from_shape(shape);
  for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = normal(rng);
  return Tensor<float>(std::move(a), /*requires_grad=*/true);
}

void run(const Shape4& s, int threads, int runs, int warmup) {
  std::mt19937_64 rng(3);
  const Shape shape{s.B, s.h, s.T, s.dh};
  const Tensor<float> q = randn(shape, rng), k = randn(shape, rng), v = randn(shape, rng);
  const Array<float> seed = randn(shape, rng).value();
  const char* names[2] = {"fused", "composed"};
  const int paths = s.T <= kComposedMaxT ? 2 : 1;
  std::vector<double> ms[2];
  std::size_t saved[2] = {0, 0};
  for (int r = 0; r < warmup + runs; ++r)
    for (int path = 0; path < paths; ++path) {
      for (const auto* x : {&q, &k, &v}) x->zero_grad();
      const auto start = std::chrono::steady_clock::now();
      Tape tape(Context{threads});
      const std::size_t before = heap_in_use();
      const Tensor<float> o = path == 0 ? ops::causal_attention(tape, q, k, v)
                                        : models::CausalSelfAttention<float>::attend_composed(tape, q, k, v);
      saved[path] = heap_in_use() - before;
      tape.backward(o, seed);
      const auto stop = std::chrono::steady_clock::now();
      if (r >= warmup) ms[path].push_back(std::chrono::duration<double, std::milli>(stop - start).count());
    }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  for (int path = 0; path < paths; ++path) {
    const double median = bench::median(ms[path]);
    std::printf(
        "{\"shape\": \"%s\", \"B\": %zu, \"h\": %zu, \"T\": %zu, \"dh\": %zu, \"path\": \"%s\", \"threads\": %d, "
        "\"runs\": %d, \"median_ms\": %.3f, \"min_ms\": %.3f, \"saved_bytes\": %zu, \"process_peak_rss_mib\": %.1f}\n",
        s.name, s.B, s.h, s.T, s.dh, names[path], threads, runs, median, ms[path].front(), saved[path],
        double(usage.ru_maxrss) / 1024);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const auto opt = bench::parse_options("bench_attention", "--shapes", "--runs", {{"small", "long"}, {1}, 10, 2}, argc, argv);
  std::vector<const Shape4*> shapes;
  for (const auto& name : opt.names) {
    shapes.push_back(nullptr);
    for (const auto& known : kShapes)
      if (name == known.name) shapes.back() = &known;
    if (!shapes.back()) {
      std::fprintf(stderr, "bench_attention: unknown shape '%s' (known: small, long, 8k)\n", name.c_str());
      return 2;
    }
  }
  for (const Shape4* s : shapes)
    for (int t : opt.threads) {  // a child process per run: its peak RSS is its own
      const pid_t child = fork();
      if (child == 0) {
        run(*s, t, opt.runs, opt.warmup);
        std::_Exit(0);
      }
      int status = 0;
      waitpid(child, &status, 0);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::fprintf(stderr, "bench_attention: the %s run with %d thread(s) failed\n", s->name, t);
        return 1;
      }
    }
  return 0;
}
