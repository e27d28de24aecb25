// train_lm/tensor_file.hpp — safetensors files for train_lm: the model, the
// training state, the `grad` batch and its output (SPEC section 2).
//
//   [8-byte little-endian header length][JSON header][raw little-endian tensor bytes]
//
// read_tensor_file treats the file as untrusted: every structural rule is checked
// (sizes with overflow-checked arithmetic, dtype, shape, contiguous data_offsets
// covering the buffer exactly, duplicate names, string-only __metadata__), and a
// violation throws FileError("<path>: <reason>"). write_tensor_file goes through
// write_file_atomically: a temporary file in the same directory, fsync, rename,
// fsync of the directory — a crash at any moment leaves the old file or the new
// one, never a mix.
//
// (A stand-in for the project's io/safetensors.hpp while that is being written;
// the file format is the same.)
#pragma once

#include <core/tensor.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace train_lm {

// A bad input file (missing, unreadable, malformed, not what was expected).
struct FileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class DType { F32, F64, I32, I64 };
std::string_view dtype_name(DType dtype);
std::size_t dtype_size(DType dtype);

template <class T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<std::int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<std::int64_t>() { return DType::I64; }

// One tensor's dtype, shape and raw little-endian row-major bytes.
struct RawTensor {
  DType dtype = DType::F32;
  tapegrad::Shape shape;
  std::vector<std::byte> bytes;
};

using Metadata = std::map<std::string, std::string>;

struct TensorFile {
  Metadata metadata;
  std::vector<std::pair<std::string, RawTensor>> tensors;  // in file order

  const RawTensor* find(const std::string& name) const;
  // The tensor called `name`; FileError naming `source` when it is absent.
  const RawTensor& at(const std::string& name, const std::string& source) const;
  // The metadata value for `key`; FileError naming `source` when it is absent.
  const std::string& meta(const std::string& key, const std::string& source) const;
  void add(std::string name, RawTensor tensor) { tensors.emplace_back(std::move(name), std::move(tensor)); }
};

TensorFile read_tensor_file(const std::filesystem::path& path);
std::string serialize_tensor_file(const TensorFile& file);
void write_tensor_file(const std::filesystem::path& path, const TensorFile& file);

// Write `bytes` to `path` through a temporary file in the same directory
// (".<name>.tmp-XXXXXX"), flushed, fsynced and renamed over `path`; the
// directory is fsynced after the rename. On failure the temporary is removed,
// `path` is untouched, and a std::runtime_error names the path.
void write_file_atomically(const std::filesystem::path& path, std::string_view bytes);

// Checks that files can be created in `dir` ("" = the current directory);
// std::runtime_error "<what>: <reason>" otherwise.
void check_writable_directory(const std::filesystem::path& dir, const std::string& what);

// True for the temporary names write_file_atomically uses (leftovers of a crash).
bool is_atomic_write_temporary(const std::filesystem::path& path);

// Conversions between tensors and their raw form.
template <class T>
RawTensor to_raw(const tapegrad::Array<T>& values);
// The values of `raw` as T; FileError naming `what` unless raw's dtype is exactly T's.
template <class T>
tapegrad::Array<T> from_raw(const RawTensor& raw, const std::string& what);
// Integer tensors (I32 or I64) widened to int64.
tapegrad::Ids ids_from_raw(const RawTensor& raw, const std::string& what);

}  // namespace train_lm
