// train_lm/output_dir.hpp — checking, before any work, that results can be written.
#pragma once

#include <filesystem>
#include <string>

namespace train_lm {

// Checks that a file can be created in `dir` ("" = the current directory), by
// creating and removing a probe file; std::runtime_error "<what>: <reason>" otherwise.
void check_writable_directory(const std::filesystem::path& dir, const std::string& what);

}  // namespace train_lm
