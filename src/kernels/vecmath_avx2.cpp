// The vecmath kernels for AVX2 + FMA (Haswell, Zen and later); compiled with -mavx2 -mfma.
#include "vecmath_kernels.hpp"

namespace tapegrad::vec::kernels {
extern const Kernels avx2 = For<xsimd::fma3<xsimd::avx2>>::table(Isa::avx2);
}
