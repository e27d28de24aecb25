// tapegrad/io/checkpoint.hpp — a model's named parameters to and from safetensors.
//
//   save_parameters(path, model.named_parameters(), metadata);  // F32 for float, F64 for double
//   load_parameters(path, model.named_parameters());            // all-or-nothing
//   switch (checkpoint_dtype(file)) { ... }                     // pick float or double first
//
// load_parameters checks the whole file against the model before it copies
// anything: the same names (missing and unexpected ones are listed), the same
// shapes, the model's dtype, and finite values (a NaN or inf weight is a corrupt
// checkpoint). A mismatch is a FormatError and leaves every parameter as it was.
// save_parameters writes no file holding a NaN or inf weight either: it throws a
// FormatError naming `path`, and the file at `path` stays as it was.
#pragma once

#include "../core/tensor.hpp"
#include "safetensors.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace tapegrad::io {

// "tensor 'name' holds a non-finite value (nan) at flat index 3", or nothing when all are finite.
template <FloatElement T>
std::optional<std::string> non_finite_value(const std::string& name, std::span<const T> values) {
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i]))
      return "tensor '" + name + "' holds a non-finite value (" + std::to_string(values[i]) + ") at flat index " +
             std::to_string(i);
  return std::nullopt;
}
template <FloatElement T>
std::optional<std::string> non_finite_value(const NamedTensors<T>& tensors) {
  for (const auto& [name, t] : tensors)
    if (auto found = non_finite_value(name, std::span<const T>(t.data(), t.size()))) return found;
  return std::nullopt;
}

template <FloatElement T>
void save_parameters(const std::filesystem::path& path, const NamedTensors<T>& params, const Metadata& metadata = {}) {
  if (const auto bad = non_finite_value(params))
    throw FormatError(path, "not written: " + *bad);
  std::vector<TensorView> views;
  views.reserve(params.size());
  for (const auto& [name, p] : params) views.emplace_back(name, p.value());
  write_safetensors(path, views, metadata);
}

namespace detail {

// "what: a, b, c, d, e and 3 more" — long lists are cut so an error stays readable.
inline std::string summarize(const std::string& what, const std::vector<std::string>& items) {
  constexpr std::size_t shown = 5;
  std::string out = what + ": ";
  for (std::size_t i = 0; i < items.size() && i < shown; ++i) out += (i ? ", " : "") + items[i];
  if (items.size() > shown) out += " and " + std::to_string(items.size() - shown) + " more";
  return out;
}

// Everything that keeps `file` from loading into `params`, one entry per kind of mismatch.
template <FloatElement T>
std::vector<std::string> parameter_mismatches(const Safetensors& file, const NamedTensors<T>& params) {
  const std::string model_dtype(dtype_name(dtype_of<T>));
  std::vector<std::string> missing, unexpected, wrong_dtype, wrong_shape;
  std::set<std::string> model_names;
  for (const auto& [name, p] : params) {
    model_names.insert(name);
    if (!file.contains(name)) {
      missing.push_back("'" + name + "'");
      continue;
    }
    const StoredTensor& stored = file.tensor(name);
    if (stored.dtype != dtype_of<T>) wrong_dtype.push_back("'" + name + "' " + std::string(dtype_name(stored.dtype)));
    if (stored.shape != p.shape())
      wrong_shape.push_back("'" + name + "' " + shape_str(stored.shape) + " (model " + shape_str(p.shape()) + ")");
  }
  for (const StoredTensor& stored : file.tensors())
    if (!model_names.contains(stored.name)) unexpected.push_back("'" + stored.name + "'");

  std::vector<std::string> mismatches;
  const auto report = [&](const std::string& what, const std::vector<std::string>& items) {
    if (!items.empty()) mismatches.push_back(summarize(what, items));
  };
  report("missing parameters", missing);
  report("unexpected tensors", unexpected);
  report("dtype is not the model's " + model_dtype, wrong_dtype);
  report("shape differs from the model's", wrong_shape);
  return mismatches;
}

}  // namespace detail

// Copies the file's tensors into `into` once the whole file matches the model.
template <FloatElement T>
void load_parameters(const Safetensors& file, const NamedTensors<T>& into) {
  const std::vector<std::string> mismatches = detail::parameter_mismatches(file, into);
  if (!mismatches.empty()) {
    std::string reason = "does not match the model: ";
    for (std::size_t i = 0; i < mismatches.size(); ++i) reason += (i ? "; " : "") + mismatches[i];
    file.fail(reason);
  }
  // Stage every tensor and check its values before any parameter changes.
  std::vector<Array<T>> staged;
  staged.reserve(into.size());
  for (const auto& [name, handle] : into) {
    staged.push_back(file.get<T>(name));
    const Array<T>& values = staged.back();
    if (const auto bad = non_finite_value(name, std::span<const T>(values.data(), values.size()))) file.fail(*bad);
  }
  for (std::size_t k = 0; k < into.size(); ++k) {
    Tensor<T> p = into[k].second;
    std::copy_n(staged[k].data(), p.size(), p.data());
  }
}
template <FloatElement T>
void load_parameters(const std::filesystem::path& path, const NamedTensors<T>& into) {
  load_parameters(Safetensors::read(path), into);
}

// The float dtype all of a checkpoint's tensors share (F32 or F64), so a caller can
// choose float or double before building the model.
inline DType checkpoint_dtype(const Safetensors& file) {
  const StoredTensor* first = nullptr;
  for (const StoredTensor& t : file.tensors()) {
    if (t.dtype != DType::F32 && t.dtype != DType::F64)
      file.fail("tensor '" + t.name + "' is " + std::string(dtype_name(t.dtype)) +
                ": checkpoint tensors are F32 or F64");
    if (first && t.dtype != first->dtype)
      file.fail("checkpoint mixes dtypes ('" + first->name + "' is " + std::string(dtype_name(first->dtype)) + ", '" +
                t.name + "' is " + std::string(dtype_name(t.dtype)) + ")");
    if (!first) first = &t;
  }
  if (!first) file.fail("checkpoint holds no tensors");
  return first->dtype;
}
inline DType checkpoint_dtype(const std::filesystem::path& path) { return checkpoint_dtype(Safetensors::read(path)); }

}  // namespace tapegrad::io
