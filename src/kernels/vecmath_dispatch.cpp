// Picks core/vecmath.hpp's kernels: the widest instruction set the CPU supports, or the one
// TAPEGRAD_ISA names. Compiled with the default (portable) flags.
#include <tapegrad/core/cpu.hpp>
#include <tapegrad/core/error.hpp>
#include <tapegrad/core/vecmath.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace tapegrad::vec {

namespace kernels {
extern const Kernels sse2, avx2, avx512;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "sse2";
  }
}

const Kernels& widest_kernels() {
  return cpu::has_avx512() ? kernels::avx512 : cpu::has_avx2() ? kernels::avx2 : kernels::sse2;
}

const Kernels& active_kernels() {
  static const Kernels& chosen = []() -> const Kernels& {
    const Kernels& widest = widest_kernels();
    const char* env = std::getenv("TAPEGRAD_ISA");
    if (!env || !*env) return widest;
    const std::string want = env;
    const Kernels* asked = want == "sse2"     ? &kernels::sse2
                           : want == "avx2"   ? &kernels::avx2
                           : want == "avx512" ? &kernels::avx512
                                              : nullptr;
    if (!asked) throw ConfigError("TAPEGRAD_ISA='" + want + "' is not one of sse2, avx2, avx512");
    if (int(asked->isa) > int(widest.isa)) {
      std::fprintf(stderr, "tapegrad: TAPEGRAD_ISA=%s is not supported by this CPU; using %s\n", env,
                   isa_name(widest.isa));
      return widest;
    }
    return *asked;
  }();
  return chosen;
}

}  // namespace tapegrad::vec
