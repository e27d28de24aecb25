// tapegrad/io/file.hpp — reading a file that may be hostile: regular files only, bounded.
//
//   std::string text = read_regular_file(path, {.max_bytes = 256 << 20, .what = "a text file"});
//   RegularFile file(path, {.follow_links = false});   // opened and checked; read it in pieces
//   file.read_exactly(buffer);                          // the next buffer.size() bytes
//
// Every error is a FormatError "<path>: <reason>", one line, naming what the path is:
//  - no such file, or it cannot be opened (the errno's text);
//  - a symbolic link when follow_links is false (opened with O_NOFOLLOW);
//  - not a regular file: a directory, a FIFO, a character or block device, a socket (the
//    file is opened with O_NONBLOCK and its type taken from fstat on the open descriptor,
//    so a FIFO never blocks and a file swapped after a check is still seen);
//  - a file that reports size 0 but has content (files under /proc and /sys do): it cannot
//    be bounded by its size; pass pseudo_file to read such a file up to max_bytes;
//  - over max_bytes, checked on the size before anything is allocated.
// A file that grows while read is cut at the size it had when opened; read_exactly fails
// on one that shrinks.
#pragma once

#include "../core/error.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <utility>

namespace tapegrad::io {

struct ReadOptions {
  std::uint64_t max_bytes = std::numeric_limits<std::uint64_t>::max();
  bool follow_links = true;     // false: a symbolic link at the path is refused, not followed
  bool pseudo_file = false;     // a file reporting size 0 (/proc, /sys) is read up to max_bytes
  std::string what = "a file";  // in the over-the-limit error: "... over the limit of 256 MiB for a text file"
};

// "256 MiB", "1.5 GiB", "300 bytes"
inline std::string readable_byte_count(double bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  std::size_t u = 0;
  while (bytes >= 1024 && u + 1 < std::size(units)) bytes /= 1024, ++u;
  char text[64];
  std::snprintf(text, sizeof text, u == 0 || bytes == std::floor(bytes) ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return text;
}

// An open regular file, checked as the top of this file says.
class RegularFile {
 public:
  RegularFile(std::filesystem::path path, const ReadOptions& options = {}) : path_(std::move(path)) {
    const int flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | (options.follow_links ? 0 : O_NOFOLLOW);
    fd_ = ::open(path_.c_str(), flags);
    if (fd_ < 0) {
      const int error = errno;
      if (error == ENOENT) fail("no such file");
      if (error == ELOOP && !options.follow_links)
        fail("is a symbolic link, which is not followed here: put the file itself there");
      fail(std::string("cannot read: the file cannot be opened (") + std::strerror(error) + ")");
    }
    struct stat info {};
    if (::fstat(fd_, &info) != 0) fail(std::string("cannot read: ") + std::strerror(errno));
    if (!S_ISREG(info.st_mode)) fail("not a regular file (" + kind_of(info.st_mode) + ")");
    size_ = std::uint64_t(info.st_size);
    if (size_ == 0 && !options.pseudo_file) {
      std::byte probe{};
      if (read_some(&probe, 1) > 0)
        fail(
            "reports size 0 but has content (as files under /proc and /sys do), so its size cannot be checked "
            "before it is read: copy it to a regular file");
    }
    if (size_ > options.max_bytes) over_limit(size_, options);
  }
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;
  ~RegularFile() { ::close(fd_); }

  const std::filesystem::path& path() const { return path_; }
  // The size fstat reported when the file was opened.
  std::uint64_t size() const { return size_; }

  // Up to `count` bytes at the current position; fewer only at the end of the file.
  std::size_t read_some(std::byte* out, std::size_t count) {
    std::size_t done = 0;
    while (done < count) {
      const ::ssize_t n = ::read(fd_, out + done, count - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail(std::string("read error: ") + std::strerror(errno));
      if (n == 0) break;
      done += std::size_t(n);
    }
    return done;
  }
  // Exactly out.size() bytes at the current position.
  void read_exactly(std::span<std::byte> out) {
    if (read_some(out.data(), out.size()) != out.size())
      fail("cannot read: the file ended early (changed while reading?)");
  }

  [[noreturn]] void fail(const std::string& reason) const { throw FormatError(path_, reason); }
  [[noreturn]] void over_limit(std::uint64_t bytes, const ReadOptions& options) const {
    fail(std::to_string(bytes) + " bytes is over the limit of " + readable_byte_count(double(options.max_bytes)) +
         " for " + options.what);
  }

 private:
  static std::string kind_of(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a file";
  }

  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

// The whole file as bytes, checked and bounded as the top of this file says.
inline std::string read_regular_file(const std::filesystem::path& path, const ReadOptions& options = {}) {
  RegularFile file(path, options);
  if (file.size() == 0 && options.pseudo_file) {  // read to the end, one byte past the limit to see it passed
    const std::uint64_t past_limit = options.max_bytes + (options.max_bytes < UINT64_MAX ? 1 : 0);
    std::string bytes(std::size_t(std::min<std::uint64_t>(past_limit, 1u << 16)), '\0');
    std::size_t done = 0;
    for (;;) {
      done += file.read_some(reinterpret_cast<std::byte*>(bytes.data()) + done, bytes.size() - done);
      if (done < bytes.size()) break;
      if (done > options.max_bytes) file.over_limit(done, options);
      bytes.resize(std::size_t(std::min<std::uint64_t>(past_limit, 2 * std::uint64_t(bytes.size()))));
    }
    bytes.resize(done);
    return bytes;
  }
  std::string bytes(std::size_t(file.size()), '\0');
  bytes.resize(file.read_some(reinterpret_cast<std::byte*>(bytes.data()), bytes.size()));  // a shrunk file ends early
  return bytes;
}

}  // namespace tapegrad::io
