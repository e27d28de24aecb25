// tapegrad/io/atomic_file.hpp — replace a file's contents all at once or not at all.
//
// write_file_atomically(path, bytes) writes `bytes` to a fresh temporary file in
// the directory of `path` (named ".<file name>.tmp-<pid>-<n>"), flushes and fsyncs
// it, renames it over `path` and fsyncs the directory. A reader, or a crash at any
// moment, sees the old file or the new one, never a mix. The new file keeps the
// permission bits of the file it replaces (a 0600 checkpoint stays 0600). If
// anything fails before the rename, the temporary file is removed, `path` is
// untouched, and a SystemError (core/error.hpp) names the path, the step that failed and
// the system's reason.
//
// A process killed mid-write leaves its temporary file behind;
// remove_stale_temporary_files(path) removes those whose process is gone. POSIX only.
#pragma once

#include "../core/error.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace tapegrad::io {
namespace detail {

// `step` is a literal, so reading errno as the default argument sees the failed call's error.
[[noreturn]] inline void throw_io_error(const std::filesystem::path& path, std::string_view step, int error = errno) {
  const std::error_code code(error, std::generic_category());
  throw SystemError("write_file_atomically: " + path.string() + ": " + std::string(step) + ": " + code.message(), code);
}

inline std::filesystem::path directory_of(const std::filesystem::path& path) {
  return path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
}

// Temporary files for `target` are named "<temporary_prefix(target)><pid>-<n>".
inline std::string temporary_prefix(const std::filesystem::path& target) {
  std::string prefix = ".";  // appended, not "." + string: GCC 12's -Wrestrict misfires on operator+(const char*, string&&)
  prefix += target.filename().string() + ".tmp-";
  return prefix;
}

// A new file beside `target`; removed again unless it was renamed over `target`.
// Errors name `target`, the file the caller asked for.
class TempFile {
 public:
  explicit TempFile(std::filesystem::path target) : target_(std::move(target)) {
    static std::atomic<unsigned> counter{0};
    const std::filesystem::path directory = directory_of(target_);
    const std::string prefix = temporary_prefix(target_) + std::to_string(::getpid()) + "-";
    for (int attempt = 0; attempt < 100; ++attempt) {
      path_ = directory / (prefix + std::to_string(counter++));
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0) return;
      if (errno != EEXIST) throw_io_error(target_, "cannot create a temporary file in its directory");
    }
    throw_io_error(target_, "cannot find an unused temporary file name", EEXIST);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!renamed_) ::unlink(path_.c_str());
  }

  void write_all(std::string_view bytes) {
    while (!bytes.empty()) {
      const ::ssize_t n = ::write(fd_, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw_io_error(target_, "writing the temporary file failed", n < 0 ? errno : EIO);
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  // Gives the file the permission bits of the target it will replace, if there is one.
  void copy_mode_of_target() {
    struct stat target {};
    if (::stat(target_.c_str(), &target) != 0) return;  // no previous file: the umask decides
    if (::fchmod(fd_, target.st_mode & 07777) != 0) throw_io_error(target_, "cannot give the temporary file its mode");
  }
  void sync_and_close() {
    if (::fsync(fd_) != 0) throw_io_error(target_, "fsync of the temporary file failed");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw_io_error(target_, "closing the temporary file failed");
  }
  void rename_over_target() {
    if (::rename(path_.c_str(), target_.c_str()) != 0)
      throw_io_error(target_, "renaming the temporary file over it failed");
    renamed_ = true;
  }

 private:
  std::filesystem::path target_;
  std::filesystem::path path_;
  int fd_ = -1;
  bool renamed_ = false;
};

// Makes a rename in `directory` durable.
inline void fsync_directory(const std::filesystem::path& directory, const std::filesystem::path& target) {
  const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_io_error(target, "written, but opening its directory for fsync failed");
  const int result = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (result != 0) throw_io_error(target, "written, but fsync of its directory failed", error);
}

}  // namespace detail

inline void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  detail::TempFile temp(path);
  temp.copy_mode_of_target();
  temp.write_all(bytes);
  temp.sync_and_close();
  temp.rename_over_target();
  detail::fsync_directory(detail::directory_of(path), path);
}

// Removes the temporary files write_file_atomically(target, ...) left in target's
// directory when its process was killed (their process id names no running process).
// Returns how many it removed.
inline std::size_t remove_stale_temporary_files(const std::filesystem::path& target) {
  const std::string prefix = detail::temporary_prefix(target);
  std::size_t removed = 0;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(detail::directory_of(target), error)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(prefix)) continue;
    ::pid_t pid = 0;
    const char* digits = name.data() + prefix.size();
    const auto [end, ec] = std::from_chars(digits, name.data() + name.size(), pid);
    if (ec != std::errc() || end == digits || *end != '-' || pid <= 0) continue;  // not one of ours
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;                          // its writer may still run
    if (::unlink(entry.path().c_str()) == 0) ++removed;
  }
  return removed;
}

}  // namespace tapegrad::io
