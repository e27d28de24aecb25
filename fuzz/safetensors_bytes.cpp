// fuzz/safetensors_bytes.cpp — libFuzzer target: Safetensors::from_bytes on any bytes.
//
// The reader may refuse the input with io::FormatError and nothing else; when it
// accepts, every tensor is read back as its dtype says (the copy and xtensor's shape
// and stride computations run on the extents the header gave).
#include <tapegrad/io/safetensors.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

using namespace tapegrad;
using namespace tapegrad::io;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto file = Safetensors::from_bytes(std::as_bytes(std::span(data, size)), "fuzz-input");
    for (const StoredTensor& t : file.tensors()) {
      std::size_t elements = 0;
      if (t.dtype == DType::F32) elements = file.get<float>(t.name).size();
      if (t.dtype == DType::F64) elements = file.get<double>(t.name).size();
      if (t.dtype == DType::I32 || t.dtype == DType::I64) elements = file.get_ids(t.name).size();
      if (elements != t.numel()) std::abort();  // the shape and the byte size disagree
    }
  } catch (const FormatError&) {
  }
  return 0;
}
