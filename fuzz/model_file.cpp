// fuzz/model_file.cpp — libFuzzer target: train_lm's model-file reader (the checks
// behind eval, sample and grad --checkpoint) on any bytes.
//
// It may refuse the input with io::FormatError or DataError (a bad vocabulary) and
// nothing else; a file it accepts must build into a model, and its memory estimate
// must be a finite number.
#include "model_file.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

using namespace train_lm;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const ModelFile model =
        read_model_file(io::Safetensors::from_bytes(std::as_bytes(std::span(data, size)), "fuzz-input"));
    const MemoryNeed need{.config = model.config, .window = model.config.block_size};
    if (!std::isfinite(need.estimate_bytes())) std::abort();
    with_model(model, [](const auto& gpt) {
      if (gpt.parameter_count() == 0) std::abort();
    });
  } catch (const io::FormatError&) {
  } catch (const DataError&) {
  }
  return 0;
}
