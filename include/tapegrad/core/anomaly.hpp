// tapegrad/core/anomaly.hpp — what anomaly mode (Tape::set_detect_anomaly) reports.
//
// In anomaly mode the tape checks every op's output after its forward and every
// gradient a backward rule wrote after the rule; the first NaN or Inf throws an
// AnomalyError whose one-line message names the op, its position on the tape, the
// module whose forward recorded it (its path, as parameter names have it:
// "h.2.attn"), the shapes and the first bad element's multi-index.
#pragma once

#include "error.hpp"
#include "tensor.hpp"

#include <optional>
#include <string>
#include <utility>

namespace tapegrad {

class AnomalyError : public Error {
 public:
  AnomalyError(const std::string& what, std::string op_name, std::optional<std::size_t> tape_position,
               std::string module, Shape bad_index)
      : Error(what), op(std::move(op_name)), position(tape_position), module_path(std::move(module)),
        index(std::move(bad_index)) {}
  std::string op;
  std::optional<std::size_t> position;  // on the tape; empty for an op that was not recorded (no gradient needed)
  std::string module_path;              // "" outside every module
  Shape index;                          // of the first bad element in the tensor the message names
};

namespace anomaly {

// The multi-index of the element at row-major `offset` in a tensor of `shape`.
inline Shape unravel(std::size_t offset, const Shape& shape) {
  Shape index(shape.size());
  for (std::size_t d = shape.size(); d-- > 0;) {
    index[d] = offset % shape[d];
    offset /= shape[d];
  }
  return index;
}

inline std::string value_name(double v) { return v != v ? "NaN" : v > 0 ? "Inf" : "-Inf"; }

// "layernorm (tape position 12, module h.1.ln_2)"
inline std::string op_origin(const char* op, std::optional<std::size_t> position, const std::string& module_path) {
  return std::string(op) + " (" + (position ? "tape position " + std::to_string(*position) : "not on the tape") +
         ", " + (module_path.empty() ? "outside any module" : "module " + module_path) + ")";
}

// "NaN at [0, 3] of input 2 [4, 8]"
inline std::string where(const NonFinite& bad, const Shape& index, const std::string& tensor, const Shape& shape) {
  return value_name(bad.value) + " at " + shape_str(index) + " of " + tensor + " " + shape_str(shape);
}

}  // namespace anomaly
}  // namespace tapegrad
