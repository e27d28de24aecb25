// The vecmath kernels for AVX-512 (F, BW, DQ, VL: Skylake-X, Zen 4 and later); compiled with
// -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma.
#include "vecmath_kernels.hpp"

namespace tapegrad::vec::kernels {
extern const Kernels avx512 = For<xsimd::avx512bw>::table(Isa::avx512);
}
