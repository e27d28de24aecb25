// train_lm/output_dir.hpp — checking, before any work, that results can be written.
#pragma once

#include <filesystem>
#include <string>

namespace train_lm {

// Checks that a file can be created in `dir` ("" = the current directory), by
// creating and removing a probe file; std::runtime_error "<what>: <reason>" otherwise.
void check_writable_directory(const std::filesystem::path& dir, const std::string& what);

// Checks that `file` can be written as a file: it names a file (not "dir/" or ""), is
// not an existing directory, and its directory is writable; std::runtime_error
// "<what>: <reason>" otherwise.
void check_writable_file(const std::filesystem::path& file, const std::string& what);

// std::runtime_error "<output_what> <output> is the same file as <input_what> <input>: ..."
// when `output` exists and is `input` (the same device and inode, whatever the paths, hard
// or symbolic links); nothing when it does not exist.
void refuse_same_file(const std::filesystem::path& output, const std::string& output_what,
                      const std::filesystem::path& input, const std::string& input_what);

}  // namespace train_lm
