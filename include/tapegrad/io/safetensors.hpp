// tapegrad/io/safetensors.hpp — read and write safetensors files.
//
// A safetensors file is: an 8-byte little-endian header length N, N bytes of JSON
// header, then the tensors' raw little-endian row-major bytes:
//
//   {"__metadata__": {"format": "tapegrad-gpt", ...},             (string values)
//    "wte": {"dtype": "F32", "shape": [65, 32], "data_offsets": [0, 8320]}, ...}
//
// data_offsets are [begin, end) byte offsets into the data that follows the header.
// Safetensors::read treats every file as untrusted: anything that breaks a rule of
// the format (see its comment) is a FormatError "<path>: <reason>", one line. The
// writer pads the header with spaces to a multiple of 8 bytes, as the reference
// implementation does, and replaces the target file atomically (atomic_file.hpp).
// The tapegrad dtypes are F32, F64, I32 and I64.
#pragma once

#include "../core/tensor.hpp"
#include "atomic_file.hpp"
#include "utf8.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tapegrad::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; tapegrad copies tensor bytes as they are");

// ---- dtypes

enum class DType { F32, F64, I32, I64 };
inline constexpr std::array<DType, 4> all_dtypes{DType::F32, DType::F64, DType::I32, DType::I64};

constexpr std::string_view dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
  }
  return "?";
}
constexpr std::size_t dtype_size(DType d) { return d == DType::F32 || d == DType::I32 ? 4 : 8; }
constexpr std::optional<DType> dtype_from_name(std::string_view name) {
  for (DType d : all_dtypes)
    if (dtype_name(d) == name) return d;
  return std::nullopt;
}

// The dtype that stores a T.
template <class T>
inline constexpr DType dtype_of = [] {
  if constexpr (std::same_as<T, float>)
    return DType::F32;
  else if constexpr (std::same_as<T, double>)
    return DType::F64;
  else if constexpr (std::same_as<T, std::int32_t>)
    return DType::I32;
  else {
    static_assert(std::same_as<T, std::int64_t>, "tensors hold float, double, int32 or int64");
    return DType::I64;
  }
}();

template <class T>
concept FloatElement = std::same_as<T, float> || std::same_as<T, double>;

using Metadata = std::map<std::string, std::string>;

// ---- errors

// A file that cannot be read or breaks the format: what() is "<path>: <reason>" (core/error.hpp).
using FormatError = tapegrad::FormatError;

// ---- byte-level helpers

namespace detail {

inline constexpr std::uint64_t max_header_length = 100'000'000;  // the reference implementation's limit
inline constexpr int max_header_depth = 64;

inline std::uint64_t decode_le64(const unsigned char* bytes) {
  std::uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}
inline void append_le64(std::string& out, std::uint64_t value) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((value >> (8 * i)) & 0xff);
}

inline std::optional<std::uint64_t> non_negative_integer(const nlohmann::json& value) {
  if (value.is_number_unsigned()) return value.get<std::uint64_t>();
  if (value.is_number_integer() && value.get<std::int64_t>() >= 0) return value.get<std::uint64_t>();
  return std::nullopt;
}

inline std::optional<std::uint64_t> checked_multiply(std::uint64_t a, std::uint64_t b) {
  std::uint64_t product;
  if (__builtin_mul_overflow(a, b, &product)) return std::nullopt;
  return product;
}

}  // namespace detail

// ---- reading

// One tensor's header entry; begin/end are byte offsets into the data buffer.
struct StoredTensor {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  std::uint64_t begin = 0, end = 0;

  std::uint64_t byte_size() const { return end - begin; }
  std::size_t numel() const { return byte_size() / dtype_size(dtype); }
};

// A safetensors file read into memory and validated. Rules checked (each failure
// is a FormatError whose reason names the rule):
//  - the file exists, is a regular file, can be read, and is at least 8 bytes long;
//  - the header length is at most 100 MB and within the file;
//  - the header is UTF-8, JSON, an object, starts with '{', has no duplicate key at
//    any level (duplicate tensor names included) and nests at most 64 levels deep;
//  - __metadata__ is an object of string values (and not a tensor entry);
//  - each tensor entry is an object with exactly dtype, shape and data_offsets: a known
//    dtype, a shape of non-negative integers, data_offsets a pair of non-negative
//    integers with begin <= end, whose size equals dtype size x shape (overflow-checked);
//  - in offset order the tensors start at 0 and tile the data buffer to its end exactly
//    (no gap, no overlap).
class Safetensors {
 public:
  static Safetensors read(const std::filesystem::path& path) {
    Safetensors file(path);
    const std::string header = file.read_header_and_data();
    file.parse_header(header);
    file.check_layout();
    file.index_by_name();
    return file;
  }

  const std::filesystem::path& path() const { return path_; }
  const Metadata& metadata() const { return metadata_; }
  // In data order (by data_offsets), which for files tapegrad writes is the order written.
  const std::vector<StoredTensor>& tensors() const { return tensors_; }
  bool contains(const std::string& name) const { return index_.contains(name); }
  const StoredTensor& tensor(const std::string& name) const {
    const auto it = index_.find(name);
    if (it == index_.end()) fail("no tensor named '" + name + "'");
    return tensors_[it->second];
  }

  // A float tensor's values; the stored dtype must be exactly T's (F32 for float, F64 for double).
  template <FloatElement T>
  Array<T> get(const std::string& name) const {
    Array<T> values = Array<T>::from_shape(tensor(name).shape);
    copy_to(name, std::span<T>(values.data(), values.size()));
    return values;
  }
  // Copies a float tensor into `out`, which must hold exactly its element count.
  template <FloatElement T>
  void copy_to(const std::string& name, std::span<T> out) const {
    const StoredTensor& t = tensor(name);
    if (t.dtype != dtype_of<T>)
      fail("tensor '" + name + "' is " + std::string(dtype_name(t.dtype)) + ", expected " +
           std::string(dtype_name(dtype_of<T>)));
    if (out.size() != t.numel())
      throw ShapeError("Safetensors::copy_to: tensor '" + name + "' has " + std::to_string(t.numel()) +
                       " elements, the destination " + std::to_string(out.size()));
    copy_bytes(t, out.data());
  }
  // An integer tensor (I32 or I64) as int64 ids.
  Ids get_ids(const std::string& name) const {
    const StoredTensor& t = tensor(name);
    Ids ids = Ids::from_shape(t.shape);
    if (t.dtype == DType::I64) {
      copy_bytes(t, ids.data());
    } else if (t.dtype == DType::I32) {
      for (std::size_t i = 0; i < t.numel(); ++i) {
        std::int32_t id;
        std::memcpy(&id, bytes_of(t) + i * sizeof id, sizeof id);
        ids.data()[i] = id;
      }
    } else {
      fail("tensor '" + name + "' is " + std::string(dtype_name(t.dtype)) + ", expected I32 or I64");
    }
    return ids;
  }

  [[noreturn]] void fail(const std::string& reason) const { throw FormatError(path_, reason); }

 private:
  explicit Safetensors(std::filesystem::path path) : path_(std::move(path)) {}

  const std::byte* bytes_of(const StoredTensor& t) const { return data_.data() + t.begin; }
  void copy_bytes(const StoredTensor& t, void* out) const {
    if (t.byte_size() != 0) std::memcpy(out, bytes_of(t), t.byte_size());  // an empty array's data() may be null
  }

  // Reads the file: returns the header text and keeps the data buffer that follows it.
  std::string read_header_and_data() {
    std::error_code error;
    const auto status = std::filesystem::status(path_, error);
    if (status.type() == std::filesystem::file_type::not_found) fail("cannot read: no such file");
    if (error) fail("cannot read: " + error.message());
    if (!std::filesystem::is_regular_file(status)) fail("cannot read: not a regular file");
    const std::uint64_t file_size = std::filesystem::file_size(path_, error);
    std::ifstream in(path_, std::ios::binary);
    if (error || !in) fail("cannot read: the file cannot be opened");
    if (file_size < 8) fail("file is shorter than 8 bytes, the size of the header length");

    unsigned char length_bytes[8];
    read_exactly(in, reinterpret_cast<char*>(length_bytes), 8);
    const std::uint64_t header_length = detail::decode_le64(length_bytes);
    if (header_length > detail::max_header_length)
      fail("header length " + std::to_string(header_length) + " is over the 100 MB limit");
    if (header_length > file_size - 8)
      fail("header length " + std::to_string(header_length) + " runs past the end of the file (" +
           std::to_string(file_size) + " bytes)");

    std::string header(header_length, '\0');
    read_exactly(in, header.data(), header.size());
    data_.resize(file_size - 8 - header_length);
    read_exactly(in, reinterpret_cast<char*>(data_.data()), data_.size());
    return header;
  }
  void read_exactly(std::ifstream& in, char* out, std::size_t count) const {
    if (!in.read(out, static_cast<std::streamsize>(count)))
      fail("cannot read: the file ended early (changed while reading?)");
  }

  void parse_header(const std::string& header) {
    const nlohmann::json json = parse_json(header);
    for (const auto& [key, value] : json.items()) {
      if (key == "__metadata__")
        parse_metadata(value);
      else
        tensors_.push_back(parse_entry(key, value));
    }
  }

  nlohmann::json parse_json(const std::string& header) const {
    if (!is_valid_utf8(header)) fail("header is not valid UTF-8");
    nlohmann::json json;
    try {
      json = nlohmann::json::parse(header, header_structure_checker());
    } catch (const nlohmann::json::parse_error& e) {
      fail(std::string("header is not valid JSON (") + e.what() + ")");
    }
    if (!json.is_object()) fail("header is not a JSON object");
    if (header.front() != '{') fail("header does not start with '{'");
    return json;
  }

  // A parser callback that rejects, as the parse goes: the second of two equal keys in
  // any object (nlohmann::json would keep the last silently), and nesting deeper than
  // max_header_depth (a valid header nests 3 levels; deeper only costs memory).
  nlohmann::json::parser_callback_t header_structure_checker() const {
    auto open_objects = std::make_shared<std::vector<std::set<std::string>>>();
    return [this, open_objects](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      using Event = nlohmann::json::parse_event_t;
      if ((event == Event::object_start || event == Event::array_start) && depth >= detail::max_header_depth)
        fail("header nests deeper than " + std::to_string(detail::max_header_depth) + " levels");
      if (event == Event::object_start) open_objects->emplace_back();
      if (event == Event::object_end) open_objects->pop_back();
      if (event == Event::key && !open_objects->back().insert(parsed.get<std::string>()).second)
        fail((depth == 1 ? "duplicate tensor name '" : "duplicate key '") + parsed.get<std::string>() + "'");
      return true;
    };
  }

  void parse_metadata(const nlohmann::json& value) {
    if (!value.is_object()) fail("__metadata__ is not an object");
    if (value.contains("data_offsets") && !value.at("data_offsets").is_string())
      fail("a tensor may not be named '__metadata__'");
    for (const auto& [key, text] : value.items()) {
      if (!text.is_string()) fail("__metadata__ value '" + key + "' is not a string");
      metadata_[key] = text.get<std::string>();
    }
  }

  StoredTensor parse_entry(const std::string& name, const nlohmann::json& entry) const {
    const std::string tensor = "tensor '" + name + "'";
    if (!entry.is_object()) fail(tensor + ": entry is not an object");
    for (const auto& [key, value] : entry.items())
      if (key != "dtype" && key != "shape" && key != "data_offsets") fail(tensor + ": unknown key '" + key + "'");
    for (const char* key : {"dtype", "shape", "data_offsets"})
      if (!entry.contains(key)) fail(tensor + ": missing '" + key + "'");

    StoredTensor t;
    t.name = name;
    const nlohmann::json& dtype = entry.at("dtype");
    const auto known = dtype.is_string() ? dtype_from_name(dtype.get<std::string>()) : std::nullopt;
    if (!known) fail(tensor + ": unknown dtype " + dtype.dump() + " (tapegrad reads F32, F64, I32, I64)");
    t.dtype = *known;

    const nlohmann::json& shape = entry.at("shape");
    if (!shape.is_array()) fail(tensor + ": shape is not a list of non-negative integers");
    for (const auto& extent : shape) {
      const auto n = detail::non_negative_integer(extent);
      if (!n) fail(tensor + ": shape is not a list of non-negative integers");
      t.shape.push_back(*n);
    }

    const nlohmann::json& offsets = entry.at("data_offsets");
    if (!offsets.is_array() || offsets.size() != 2) fail(tensor + ": data_offsets is not a pair [begin, end]");
    const auto begin = detail::non_negative_integer(offsets[0]), end = detail::non_negative_integer(offsets[1]);
    if (!begin || !end) fail(tensor + ": data_offsets are not non-negative integers");
    if (*end < *begin) fail(tensor + ": data_offsets end < begin");
    t.begin = *begin;
    t.end = *end;

    std::optional<std::uint64_t> expected = dtype_size(t.dtype);
    for (std::size_t i = 0; i < t.shape.size() && expected; ++i)
      expected = detail::checked_multiply(*expected, t.shape[i]);
    if (!expected) fail(tensor + ": byte size of dtype x shape " + shape_str(t.shape) + " overflows 64 bits");
    if (*expected != t.byte_size())
      fail(tensor + ": byte size " + std::to_string(t.byte_size()) + " disagrees with dtype x shape (" +
           std::string(dtype_name(t.dtype)) + " x " + shape_str(t.shape) + " = " + std::to_string(*expected) +
           " bytes)");
    return t;
  }

  // Sorts the tensors by offset and checks that they tile the data buffer exactly.
  void check_layout() {
    std::stable_sort(tensors_.begin(), tensors_.end(), [](const StoredTensor& a, const StoredTensor& b) {
      return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
    });
    const StoredTensor* previous = nullptr;
    for (const StoredTensor& t : tensors_) {
      const std::uint64_t expected_begin = previous ? previous->end : 0;
      if (!previous && t.begin != 0)
        fail("data_offsets do not start at 0 (tensor '" + t.name + "' begins at " + std::to_string(t.begin) + ")");
      if (t.begin != expected_begin)
        fail(std::string(t.begin > expected_begin ? "gap" : "overlap") + " between tensors '" + previous->name +
             "' (ends at " + std::to_string(previous->end) + ") and '" + t.name + "' (begins at " +
             std::to_string(t.begin) + ")");
      previous = &t;
    }
    const std::uint64_t covered = previous ? previous->end : 0;
    if (covered != data_.size())
      fail("data_offsets do not cover the byte buffer to its end exactly (tensors end at " + std::to_string(covered) +
           ", the buffer has " + std::to_string(data_.size()) + " bytes)");
  }
  void index_by_name() {
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  }

  std::filesystem::path path_;
  Metadata metadata_;
  std::vector<StoredTensor> tensors_;
  std::map<std::string, std::size_t> index_;
  std::vector<std::byte> data_;
};

// ---- writing

// A named tensor to write. It borrows the caller's array, which must outlive the
// write (binding a temporary array does not compile).
struct TensorView {
  std::string name;
  DType dtype;
  Shape shape;
  std::span<const std::byte> bytes;

  template <class T>
  TensorView(std::string tensor_name, const xt::xarray<T>& values)
      : name(std::move(tensor_name)),
        dtype(dtype_of<T>),
        shape(shape_of(values)),
        bytes(std::as_bytes(std::span<const T>(values.data(), values.size()))) {}
  template <class T>
  TensorView(std::string tensor_name, xt::xarray<T>&& values) = delete;
};

// The bytes of a safetensors file holding `tensors`, laid out in the given order.
// Throws FormatError for what the format cannot hold: a duplicate tensor
// name, a tensor named "__metadata__", a name or metadata text that is not UTF-8.
inline std::string serialize_safetensors(const std::vector<TensorView>& tensors, const Metadata& metadata = {}) {
  const auto require_utf8 = [](const std::string& text, const char* what) {
    if (!is_valid_utf8(text))
      throw FormatError(std::string("serialize_safetensors: ") + what + " is not valid UTF-8");
  };
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    for (const auto& [key, value] : metadata)
      require_utf8(key, "a metadata key"), require_utf8(value, "a metadata value");
    header["__metadata__"] = metadata;
  }
  std::uint64_t offset = 0;
  for (const TensorView& t : tensors) {
    require_utf8(t.name, "a tensor name");
    if (t.name == "__metadata__")
      throw FormatError("serialize_safetensors: a tensor may not be named '__metadata__'");
    if (header.contains(t.name))
      throw FormatError("serialize_safetensors: duplicate tensor name '" + t.name + "'");
    header[t.name] = {
        {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }

  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out;
  out.reserve(8 + text.size() + offset);
  detail::append_le64(out, text.size());
  out += text;
  for (const TensorView& t : tensors) out.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  return out;
}

// Writes a safetensors file atomically: `path` holds either its old contents or the new file.
inline void write_safetensors(const std::filesystem::path& path, const std::vector<TensorView>& tensors,
                              const Metadata& metadata = {}) {
  write_file_atomically(path, serialize_safetensors(tensors, metadata));
}

}  // namespace tapegrad::io
