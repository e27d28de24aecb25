// tapegrad/core/blas.hpp — row-major GEMM and GEMV on contiguous buffers, for float and
// double: the one file that calls CBLAS and oneDNN.
//   gemm: C (M,N) = alpha * op(A) (M,K) * op(B) (K,N) + beta * C
//   gemv: y (M)   = alpha * op(A) (M,K) * x (K) + beta * y
// op(X) = X or X^T as the trans flag says; leading dimensions follow from the
// stored (untransposed) shapes. Backward rules pass beta = 1 to accumulate, or beta = 0
// to write a gradient nothing was added to yet: with beta = 0, C is never read (it may
// hold anything, NaN included), under every backend and for the GEMV of one row.
// A GEMM of one row (M = 1) runs as a GEMV, y = op(B)^T a: a GEMM would pack all of B
// for one row (a sampler's one-token step is made of them). GEMVs run on OpenBLAS.
//
// Backends (docs/gemm_backend.md has the measurements that chose them):
//  - float: oneDNN's matmul primitive. oneDNN generates its kernels at run time for the
//    ISA the CPU has (AVX2, AVX-512, ...), so a CPU newer than the installed library still
//    gets full-width code; OpenBLAS picks precompiled kernels by CPU model and falls back to
//    SSE3 ones on a model it does not know. One primitive per shape, transposes, alpha and
//    beta, cached per thread.
//  - double (the gradient checks), and float with TAPEGRAD_GEMM=openblas: OpenBLAS.
//  - float GEMMs of at most vec::kSmallGemmWork multiply-adds (the attention of a small model:
//    32 x 32 x 8) under either backend: vec::small_gemm, tapegrad's own kernel at the CPU's
//    vector width. A library call costs about 0.8 us (oneDNN) or 0.3 us (OpenBLAS) there, more
//    than the arithmetic (docs/gemm_backend.md).
// gemm_backend() names what runs; generic_kernel_warning() says when it is a generic kernel.
//
// Every call runs single-threaded: the threads are tapegrad's own (core/parallel.hpp),
// one pool for GEMMs and every other kernel. gemm(ctx, ...) cuts C
// into blocks of rows (or of columns, when N > M) whose size depends only on the shape,
// and runs one single-threaded GEMM per block, blocks handed out dynamically. So each
// element of C comes from the same call, bit for bit, at any thread count; and neither
// library's own threads compete with tapegrad's for the cores.
#pragma once

#include "cpu.hpp"
#include "parallel.hpp"
#include "vecmath.hpp"

#include <cblas.h>
#include <oneapi/dnnl/dnnl.hpp>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <type_traits>
#include <string>
#include <unordered_map>

extern "C" char* openblas_get_corename(void);

namespace tapegrad::blas {

enum class FloatBackend { onednn, openblas };

// The float GEMM backend: oneDNN, unless TAPEGRAD_GEMM=openblas (read once per process).
inline FloatBackend float_backend() {
  static const FloatBackend b = [] {
    const char* v = std::getenv("TAPEGRAD_GEMM");
    return v && std::strcmp(v, "openblas") == 0 ? FloatBackend::openblas : FloatBackend::onednn;
  }();
  return b;
}

namespace detail {

// OpenBLAS's own thread count, set to 1 once per process.
inline void single_threaded_blas() {
  static const bool done = (openblas_set_num_threads(1), true);
  (void)done;
}

inline void openblas(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, float alpha, const float* A,
                     std::size_t lda, const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc) {
  single_threaded_blas();
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N), int(K),
              alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}
inline void openblas(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, double alpha, const double* A,
                     std::size_t lda, const double* B, std::size_t ldb, double beta, double* C, std::size_t ldc) {
  single_threaded_blas();
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N), int(K),
              alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}

inline void raw_gemv(bool ta, std::size_t M, std::size_t K, float alpha, const float* A, std::size_t lda,
                     const float* x, float beta, float* y) {
  single_threaded_blas();
  cblas_sgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, int(ta ? K : M), int(ta ? M : K), alpha, A, int(lda), x, 1,
              beta, y, 1);
}
inline void raw_gemv(bool ta, std::size_t M, std::size_t K, double alpha, const double* A, std::size_t lda,
                     const double* x, double beta, double* y) {
  single_threaded_blas();
  cblas_dgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, int(ta ? K : M), int(ta ? M : K), alpha, A, int(lda), x, 1,
              beta, y, 1);
}

// While alive, OpenMP regions opened by the calling thread (oneDNN's: Debian builds it with
// the OpenMP runtime) get one thread; the thread's previous setting comes back after.
// oneDNN reads the count when it creates a primitive and when it runs one, so both see 1,
// on the caller and on the pool's helper threads alike (which are not OpenMP threads, so
// oneDNN would otherwise open a team of its own from each).
struct OneOpenMPThread {
#ifdef _OPENMP
  int saved = omp_get_max_threads();
  OneOpenMPThread() { omp_set_num_threads(1); }
  ~OneOpenMPThread() { omp_set_num_threads(saved); }
#endif
};

// Never destroyed: the pool's helper threads (core/parallel.hpp) end after static
// destructors run, and their cached primitives and streams still refer to it.
inline const dnnl::engine& onednn_engine() {
  static const dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

struct MatmulKey {
  std::size_t M, N, K, lda, ldb, ldc;
  bool ta, tb;
  float alpha, beta;
  bool operator==(const MatmulKey&) const = default;
};
struct MatmulKeyHash {
  std::size_t operator()(const MatmulKey& k) const {
    std::size_t h = 0;
    for (std::size_t v : {k.M, k.N, k.K, k.lda, k.ldb, k.ldc, std::size_t(k.ta) * 2 + std::size_t(k.tb),
                          std::hash<float>{}(k.alpha), std::hash<float>{}(k.beta)})
      h = h * 1000003u ^ v;
    return h;
  }
};

// One shape's primitive, its memory objects (their buffers set per call) and scratchpad.
struct Matmul {
  dnnl::matmul primitive;
  dnnl::memory a, b, c, scratchpad;
  std::string implementation;  // oneDNN's name for the kernel, e.g. brg:avx512_core
};

inline Matmul make_matmul(const MatmulKey& k) {
  using dnnl::memory;
  const dnnl::engine& engine = onednn_engine();
  const auto dims = [](std::size_t r, std::size_t c) { return memory::dims{memory::dim(r), memory::dim(c)}; };
  const memory::desc a_md(dims(k.M, k.K), memory::data_type::f32, k.ta ? dims(1, k.lda) : dims(k.lda, 1));
  const memory::desc b_md(dims(k.K, k.N), memory::data_type::f32, k.tb ? dims(1, k.ldb) : dims(k.ldb, 1));
  const memory::desc c_md(dims(k.M, k.N), memory::data_type::f32, dims(k.ldc, 1));
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (k.alpha != 1.0f) attr.set_output_scales(0, {k.alpha});
  if (k.beta != 0.0f) {
    dnnl::post_ops ops;
    ops.append_sum(k.beta);
    attr.set_post_ops(ops);
  }
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine);
  return {dnnl::matmul(pd),
          memory(a_md, engine, DNNL_MEMORY_NONE),
          memory(b_md, engine, DNNL_MEMORY_NONE),
          memory(c_md, engine, DNNL_MEMORY_NONE),
          memory(pd.scratchpad_desc(), engine),
          pd.impl_info_str()};
}

// The calling thread's primitive for this shape (created on first use).
inline const Matmul& onednn_matmul(const MatmulKey& key) {
  thread_local std::unordered_map<MatmulKey, Matmul, MatmulKeyHash> cache;
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, make_matmul(key)).first;
  return it->second;
}

inline void onednn(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, float alpha, const float* A,
                   std::size_t lda, const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc) {
  const OneOpenMPThread one;
  const Matmul& m = onednn_matmul({M, N, K, lda, ldb, ldc, ta, tb, alpha, beta});
  thread_local dnnl::stream stream(onednn_engine());
  m.a.set_data_handle(const_cast<float*>(A));
  m.b.set_data_handle(const_cast<float*>(B));
  m.c.set_data_handle(C);
  m.primitive.execute(
      stream, {{DNNL_ARG_SRC, m.a}, {DNNL_ARG_WEIGHTS, m.b}, {DNNL_ARG_DST, m.c}, {DNNL_ARG_SCRATCHPAD, m.scratchpad}});
}

inline void raw(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, float alpha, const float* A,
                std::size_t lda, const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc) {
  if (vec::is_small_gemm(M, N, K))
    vec::active_kernels().small_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else if (float_backend() == FloatBackend::onednn)
    onednn(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else
    openblas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
inline void raw(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, double alpha, const double* A,
                std::size_t lda, const double* B, std::size_t ldb, double beta, double* C, std::size_t ldc) {
  openblas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// GEMMs below this many multiply-adds run as one call: splitting costs more than it gains.
inline constexpr std::size_t kSplitWork = std::size_t(1) << 21;

// Rows (or columns) per block of a split GEMM: about 1/16 of the dimension, a multiple
// of 32, at least 64. A function of the shape only.
inline std::size_t split_block(std::size_t dim) { return std::max<std::size_t>(64, (dim / 16 + 31) / 32 * 32); }

// One GEMM call, or a GEMV when C is one row: y (N) = alpha op(B)^T a + beta y, where a
// is A's K values (contiguous whether A is stored (1, K) or, transposed, (K, 1)).
template <class T>
void gemm_call(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A, std::size_t lda,
               const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
  if (M == 1) {
    if (beta == T(0)) std::fill(C, C + N, T(0));  // BLAS's GEMV may scale y by 0, and NaN * 0 is NaN
    return raw_gemv(!tb, N, K, alpha, B, ldb, A, beta, C);
  }
  raw(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

inline std::string onednn_isa() {
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

// OpenBLAS cores whose sgemm/dgemm kernels use AVX2 or AVX-512 (names as
// openblas_get_corename() prints them).
inline bool openblas_core_is_wide(const std::string& core) {
  for (const char* c : {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids", "excavator"})
    if (core == c) return true;
  return false;
}

inline std::string lower(std::string s) {
  for (char& ch : s) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

}  // namespace detail

// OpenBLAS's kernel set on this CPU, e.g. "Haswell" (or "Prescott" on a CPU it does not know).
inline std::string openblas_core() { return openblas_get_corename(); }

// What runs the GEMMs, e.g. "float: oneDNN 2.6.3 (jit avx512_core_bf16), double: OpenBLAS 0.3.21 (Haswell)".
inline std::string gemm_backend() {
  const dnnl_version_t* v = dnnl_version();
  const std::string openblas = "OpenBLAS (" + openblas_core() + ")";
  const std::string onednn = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                             std::to_string(v->patch) + " (jit " + detail::onednn_isa() + ")";
  return "float: " + (float_backend() == FloatBackend::onednn ? onednn : openblas) + ", double: " + openblas;
}

// A warning when a GEMM backend in use would run a generic (pre-AVX2) kernel on a CPU with
// AVX2 or AVX-512; empty when all is well.
inline std::string generic_kernel_warning() {
  if (!cpu::has_avx2()) return {};
  std::string w;
  const auto add = [&w](const std::string& s) { w += (w.empty() ? "" : "; ") + s; };
  if (!detail::openblas_core_is_wide(detail::lower(openblas_core())))
    add("OpenBLAS runs its generic '" + openblas_core() + "' kernels on this " +
        (cpu::has_avx512() ? std::string("AVX-512") : std::string("AVX2")) + " CPU (" +
        (float_backend() == FloatBackend::openblas ? "float and double GEMMs" : "double GEMMs") +
        " are slow; OPENBLAS_CORETYPE=Haswell or SkylakeX selects the right ones)");
  if (float_backend() == FloatBackend::onednn && dnnl_get_effective_cpu_isa() < dnnl_cpu_isa_avx2)
    add("oneDNN runs " + detail::onednn_isa() + " kernels on a CPU with AVX2");
  return w;
}

// One line for a program's header: the CPU, the ISA of tapegrad's own kernels and the GEMM
// backend, e.g. "CPU AMD EPYC; kernels avx512; GEMM float: oneDNN 2.6.3 (jit avx512_core), ...".
inline std::string machine_summary() {
  return "CPU " + cpu::model_name() + "; kernels " + vec::isa_name(vec::active_kernels().isa) + "; GEMM " +
         gemm_backend();
}

// y (M) = alpha op(A) (M,K) x (K) + beta y, single-threaded; A stored (M,K), or (K,M) with trans_a.
template <class T>
void gemv(bool trans_a, std::size_t M, std::size_t K, T alpha, const T* A, const T* x, T beta, T* y) {
  detail::raw_gemv(trans_a, M, K, alpha, A, trans_a ? M : K, x, beta, y);
}

// One single-threaded GEMM (inside a parallel region, or small work).
template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A, const T* B,
          T beta, T* C) {
  detail::gemm_call(trans_a, trans_b, M, N, K, alpha, A, trans_a ? M : K, B, trans_b ? K : N, beta, C, N);
}

// The epilogue of a GEMM that has none.
struct NoEpilogue {
  void operator()(std::size_t, std::size_t) const {}
};

// The same GEMM on up to ctx.threads() threads, cut into shape-fixed blocks of C; then
// epilogue(r0, r1) on C's rows [r0, r1), each row once: right after each block's GEMM
// while its rows are in cache when C is cut into blocks of rows, else over blocks of
// rows once C is complete. For element-wise work on the output (a bias, an activation).
template <class T, class Epilogue>
void gemm(const Context& ctx, bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K, T alpha,
          const T* A, const T* B, T beta, T* C, Epilogue&& epilogue) {
  const std::size_t lda = trans_a ? M : K, ldb = trans_b ? K : N;
  constexpr bool has_epilogue = !std::is_same_v<std::decay_t<Epilogue>, NoEpilogue>;
  const auto epilogue_after = [&] {  // over C complete, in blocks of about kElementBlock values
    if constexpr (has_epilogue) parallel_blocks(ctx, M, std::max<std::size_t>(1, kElementBlock / N), epilogue);
  };
  if (M * N * K < detail::kSplitWork || std::max(M, N) < 128 || M == 1) {
    detail::gemm_call(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, N);
    epilogue_after();
  } else if (M >= N) {  // blocks of rows: A's rows (columns of the stored A^T) and C's rows
    parallel_blocks(ctx, M, detail::split_block(M), [&](std::size_t b, std::size_t e) {
      detail::raw(trans_a, trans_b, e - b, N, K, alpha, A + (trans_a ? b : b * lda), lda, B, ldb, beta, C + b * N, N);
      epilogue(b, e);
    });
  } else {  // blocks of columns: B's columns (rows of the stored B^T) and C's columns
    parallel_blocks(ctx, N, detail::split_block(N), [&](std::size_t b, std::size_t e) {
      detail::raw(trans_a, trans_b, M, e - b, K, alpha, A, lda, B + (trans_b ? b * ldb : b), ldb, beta, C + b, N);
    });
    epilogue_after();
  }
}

// The same GEMM on up to ctx.threads() threads, cut into shape-fixed blocks of C.
template <class T>
void gemm(const Context& ctx, bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K, T alpha,
          const T* A, const T* B, T beta, T* C) {
  gemm(ctx, trans_a, trans_b, M, N, K, alpha, A, B, beta, C, NoEpilogue{});
}

}  // namespace tapegrad::blas
