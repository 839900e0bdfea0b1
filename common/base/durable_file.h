// Files that must be whole after a crash or power loss: written under a
// staging name, fsynced, renamed into place, and the directory fsynced, so a
// reader finds the old file or the new one, never half of either.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "common/base/result.h"

namespace relayguard {

// Makes the entries of `path` (a directory) durable.
bool sync_directory(const std::string& path);

// `path` (absolute) now holds `body`, with `mode`; "PATH.new" is the staging
// name (a leftover of a crash is replaced).
Status replace_file_durably(const std::string& path, std::string_view body, mode_t mode);

}  // namespace relayguard
