// train_lm/tensor_file.cpp — reading (untrusted) and writing (atomically)
// safetensors files.
#include "tensor_file.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <limits>
#include <set>
#include <unistd.h>

namespace train_lm {

static_assert(std::endian::native == std::endian::little, "safetensors bytes are little-endian; so must the host be");

namespace {

using nlohmann::json;
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

[[noreturn]] void reject(const std::filesystem::path& path, const std::string& reason) {
  throw FileError(path.string() + ": " + reason);
}

std::string read_whole_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) reject(path, "no such file");
  if (std::filesystem::is_directory(path, ec)) reject(path, "is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) reject(path, std::string("cannot open: ") + std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) reject(path, "read error");
  return bytes;
}

std::uint64_t read_le64(const std::string& bytes) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | std::uint8_t(bytes[std::size_t(i)]);
  return n;
}

DType parse_dtype(const std::string& name, const std::filesystem::path& path, const std::string& tensor) {
  for (DType d : {DType::F32, DType::F64, DType::I32, DType::I64})
    if (name == dtype_name(d)) return d;
  reject(path, "tensor '" + tensor + "' has unsupported dtype '" + name + "' (expected F32, F64, I32 or I64)");
}

std::uint64_t non_negative_integer(const json& j, const std::filesystem::path& path, const std::string& what) {
  if (!j.is_number_unsigned()) reject(path, what + " is not a non-negative integer");
  return j.get<std::uint64_t>();
}

// a * b, or a FileError when it overflows.
std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const std::filesystem::path& path, const std::string& what) {
  if (b != 0 && a > std::numeric_limits<std::uint64_t>::max() / b) reject(path, what + " overflows");
  return a * b;
}

// The header JSON, rejecting a repeated top-level key (nlohmann keeps the last one silently).
json parse_header(const std::string& text, const std::filesystem::path& path) {
  if (text.empty() || text.front() != '{') reject(path, "header does not start with '{'");
  std::set<std::string> keys;
  std::string duplicate;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && !keys.insert(parsed.get<std::string>()).second &&
        duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  json header;
  try {
    header = json::parse(text, on_event);
  } catch (const json::exception& e) {
    reject(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) reject(path, "tensor name '" + duplicate + "' appears twice in the header");
  if (!header.is_object()) reject(path, "header is not a JSON object");
  return header;
}

Metadata parse_metadata(const json& j, const std::filesystem::path& path) {
  if (!j.is_object()) reject(path, "__metadata__ is not an object");
  Metadata meta;
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string()) reject(path, "__metadata__ value for '" + key + "' is not a string");
    meta[key] = value.get<std::string>();
  }
  return meta;
}

struct TensorEntry {
  std::string name;
  DType dtype;
  tapegrad::Shape shape;
  std::uint64_t begin, end;
};

TensorEntry parse_entry(const std::string& name, const json& j, const std::filesystem::path& path) {
  const std::string what = "tensor '" + name + "'";
  if (!j.is_object()) reject(path, what + " entry is not an object");
  if (!j.contains("dtype") || !j["dtype"].is_string()) reject(path, what + " has no string 'dtype'");
  if (!j.contains("shape") || !j["shape"].is_array()) reject(path, what + " has no 'shape' array");
  if (!j.contains("data_offsets") || !j["data_offsets"].is_array() || j["data_offsets"].size() != 2)
    reject(path, what + " 'data_offsets' is not a pair [begin, end]");
  TensorEntry e{name, parse_dtype(j["dtype"].get<std::string>(), path, name), {}, 0, 0};
  std::uint64_t bytes = dtype_size(e.dtype);
  for (const json& d : j["shape"]) {
    const std::uint64_t extent = non_negative_integer(d, path, what + " shape entry");
    bytes = checked_mul(bytes, extent, path, what + " byte size");
    if (extent > std::numeric_limits<std::size_t>::max()) reject(path, what + " shape entry is too large");
    e.shape.push_back(std::size_t(extent));
  }
  e.begin = non_negative_integer(j["data_offsets"][0], path, what + " data_offsets begin");
  e.end = non_negative_integer(j["data_offsets"][1], path, what + " data_offsets end");
  if (e.end < e.begin) reject(path, what + " data_offsets end is before begin");
  if (e.end - e.begin != bytes)
    reject(path, what + " holds " + std::to_string(e.end - e.begin) + " bytes but dtype " +
                     std::string(dtype_name(e.dtype)) + " x shape " + tapegrad::shape_str(e.shape) + " needs " +
                     std::to_string(bytes));
  return e;
}

// The tensors must tile the byte buffer: sorted by offset they start at 0, leave
// no gap or overlap, and end exactly at the end of the file.
void check_layout(std::vector<TensorEntry> entries, std::uint64_t buffer_size, const std::filesystem::path& path) {
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t next = 0;
  for (const auto& e : entries) {
    if (e.begin < next) reject(path, "tensor '" + e.name + "' overlaps the previous tensor's bytes");
    if (e.begin > next) reject(path, "gap in the byte buffer before tensor '" + e.name + "'");
    next = e.end;
  }
  if (next != buffer_size)
    reject(path, "tensors cover " + std::to_string(next) + " bytes but the byte buffer holds " +
                     std::to_string(buffer_size));
}

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

void write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error(std::strerror(errno));
    bytes.remove_prefix(std::size_t(n));
  }
}

void fsync_directory(const std::filesystem::path& dir) {
  FileDescriptor fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY));
  if (fd.get() >= 0) ::fsync(fd.get());  // best effort: some file systems refuse directory fsync
}

}  // namespace

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
  }
  return "?";
}

std::size_t dtype_size(DType dtype) { return dtype == DType::F32 || dtype == DType::I32 ? 4 : 8; }

const RawTensor* TensorFile::find(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

const RawTensor& TensorFile::at(const std::string& name, const std::string& source) const {
  if (const RawTensor* t = find(name)) return *t;
  throw FileError(source + ": has no tensor '" + name + "'");
}

const std::string& TensorFile::meta(const std::string& key, const std::string& source) const {
  const auto it = metadata.find(key);
  if (it == metadata.end()) throw FileError(source + ": __metadata__ has no '" + key + "'");
  return it->second;
}

TensorFile read_tensor_file(const std::filesystem::path& path) {
  const std::string bytes = read_whole_file(path);
  if (bytes.size() < 8) reject(path, "file is " + std::to_string(bytes.size()) + " bytes, shorter than the 8-byte header length");
  const std::uint64_t header_size = read_le64(bytes);
  if (header_size > kMaxHeaderBytes) reject(path, "header length " + std::to_string(header_size) + " is over 100 MB");
  if (header_size > bytes.size() - 8)
    reject(path, "header length " + std::to_string(header_size) + " runs past the end of the file (" +
                     std::to_string(bytes.size()) + " bytes)");
  const json header = parse_header(bytes.substr(8, header_size), path);

  TensorFile file;
  std::vector<TensorEntry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__")
      file.metadata = parse_metadata(value, path);
    else
      entries.push_back(parse_entry(name, value, path));
  }
  const std::size_t buffer_start = 8 + std::size_t(header_size);
  check_layout(entries, bytes.size() - buffer_start, path);

  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.begin < b.begin; });
  for (const auto& e : entries) {
    RawTensor t{e.dtype, e.shape, std::vector<std::byte>(std::size_t(e.end - e.begin))};
    std::memcpy(t.bytes.data(), bytes.data() + buffer_start + e.begin, t.bytes.size());
    file.add(e.name, std::move(t));
  }
  return file;
}

std::string serialize_tensor_file(const TensorFile& file) {
  json header = json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  std::uint64_t offset = 0;
  for (const auto& [name, t] : file.tensors) {
    if (name == "__metadata__" || header.contains(name))
      throw std::logic_error("serialize_tensor_file: bad or repeated tensor name '" + name + "'");
    header[name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');  // pad so the byte buffer starts 8-byte aligned
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[std::size_t(i)] = char((std::uint64_t(text.size()) >> (8 * i)) & 0xff);
  out += text;
  for (const auto& [name, t] : file.tensors) out.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  return out;
}

void write_tensor_file(const std::filesystem::path& path, const TensorFile& file) {
  write_file_atomically(path, serialize_tensor_file(file));
}

void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  const std::filesystem::path dir = path.parent_path().empty() ? "." : path.parent_path();
  std::string temp = (dir / ("." + path.filename().string() + ".tmp-XXXXXX")).string();
  auto fail = [&](const std::string& what) {
    throw std::runtime_error("cannot write " + path.string() + ": " + what);
  };
  FileDescriptor fd(::mkstemp(temp.data()));
  if (fd.get() < 0) fail(std::strerror(errno));
  try {
    write_all(fd.get(), bytes);
    if (::fsync(fd.get()) != 0) throw std::runtime_error(std::strerror(errno));
    if (::close(fd.release()) != 0) throw std::runtime_error(std::strerror(errno));
    if (::rename(temp.c_str(), path.c_str()) != 0) throw std::runtime_error(std::strerror(errno));
  } catch (const std::exception& e) {
    ::unlink(temp.c_str());
    fail(e.what());
  }
  fsync_directory(dir);
}

void check_writable_directory(const std::filesystem::path& dir_or_empty, const std::string& what) {
  const std::filesystem::path dir = dir_or_empty.empty() ? "." : dir_or_empty;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) throw std::runtime_error(what + ": " + dir.string() + " is not a directory");
  std::string probe = (dir / ".train_lm-write-test-XXXXXX").string();
  FileDescriptor fd(::mkstemp(probe.data()));
  if (fd.get() < 0) throw std::runtime_error(what + ": cannot create files in " + dir.string() + ": " + std::strerror(errno));
  ::unlink(probe.c_str());
}

bool is_atomic_write_temporary(const std::filesystem::path& path) {
  const std::string name = path.filename().string();
  return name.size() > 12 && name.front() == '.' && name.find(".tmp-") == name.size() - 11;
}

template <class T>
RawTensor to_raw(const tapegrad::Array<T>& values) {
  RawTensor raw{dtype_of<T>(), tapegrad::shape_of(values), std::vector<std::byte>(values.size() * sizeof(T))};
  std::memcpy(raw.bytes.data(), values.data(), raw.bytes.size());
  return raw;
}

template <class T>
tapegrad::Array<T> from_raw(const RawTensor& raw, const std::string& what) {
  if (raw.dtype != dtype_of<T>())
    throw FileError(what + " has dtype " + std::string(dtype_name(raw.dtype)) + ", expected " +
                    std::string(dtype_name(dtype_of<T>())));
  tapegrad::Array<T> values = tapegrad::Array<T>::from_shape(raw.shape);
  std::memcpy(values.data(), raw.bytes.data(), raw.bytes.size());
  return values;
}

tapegrad::Ids ids_from_raw(const RawTensor& raw, const std::string& what) {
  if (raw.dtype == DType::I64) return from_raw<std::int64_t>(raw, what);
  if (raw.dtype == DType::I32) {
    const auto narrow = from_raw<std::int32_t>(raw, what);
    tapegrad::Ids ids = tapegrad::Ids::from_shape(raw.shape);
    std::copy(narrow.begin(), narrow.end(), ids.begin());
    return ids;
  }
  throw FileError(what + " has dtype " + std::string(dtype_name(raw.dtype)) + ", expected I64 or I32");
}

template RawTensor to_raw(const tapegrad::Array<float>&);
template RawTensor to_raw(const tapegrad::Array<double>&);
template RawTensor to_raw(const tapegrad::Array<std::int64_t>&);
template tapegrad::Array<float> from_raw(const RawTensor&, const std::string&);
template tapegrad::Array<double> from_raw(const RawTensor&, const std::string&);

}  // namespace train_lm
