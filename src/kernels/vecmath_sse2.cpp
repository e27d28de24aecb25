// The vecmath kernels for SSE2 (every x86-64 CPU); compiled with the default flags.
#include "vecmath_kernels.hpp"

namespace tapegrad::vec::kernels {
extern const Kernels sse2 = For<xsimd::sse2>::table(Isa::sse2);
}
