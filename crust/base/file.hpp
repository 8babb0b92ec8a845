// Small file helpers for state that must survive crashes (keys, the
// bootstrap cache).
#pragma once

#include "crust/base/error.hpp"

#include <filesystem>
#include <string>
#include <string_view>

namespace crust {

// Replaces `path` with `contents` so that a crash at any moment leaves the
// old file or the new one, never a mix: write `path`.tmp, fsync it, rename
// it over `path`, fsync the directory. The file gets `mode` (0600 default).
// One writer per path at a time. Errors: the failing system call's errno.
result<void> write_file_atomically(const std::filesystem::path& path, std::string_view contents,
                                   unsigned mode = 0600);

// The whole file. Errors: the open/read errno (no_such_file_or_directory
// when it does not exist).
result<std::string> read_file(const std::filesystem::path& path);

}  // namespace crust
