// The daemon's pid file (daemon.pid_file), as Postfix-style daemons keep
// one: written once the sockets are bound and privileges dropped, so the
// daemon's own user owns it and can remove it; removed at a clean exit.
#pragma once

#include <string>

#include "common/base/result.h"

namespace relayguard {

class PidFile {
public:
    // Writes "<pid>\n" to `path` (created or truncated, mode 0644 whatever
    // the umask, so monitoring can read it); answers why not.
    static Result<PidFile> write(const std::string& path);

    PidFile(PidFile&& o) noexcept;
    PidFile& operator=(PidFile&&) = delete;
    PidFile(const PidFile&) = delete;
    PidFile& operator=(const PidFile&) = delete;
    // Removes the file, but only while it still holds this process's pid:
    // a second instance that took over the path keeps its file.
    ~PidFile();

private:
    explicit PidFile(std::string path) : path_(std::move(path)) {}
    std::string path_;  // "" once moved from
};

}  // namespace relayguard
