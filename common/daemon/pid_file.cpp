// The pid file; see the header.
#include "common/daemon/pid_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "common/base/unique_fd.h"

namespace relayguard {

Result<PidFile> PidFile::write(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
    auto failed = [&](const char* what) {
        return Result<PidFile>::failure("cannot " + std::string(what) + " " + path + ": " + std::strerror(errno));
    };
    if (!fd) return failed("create");
    // The service's UMask (0027) would leave it 0640; a pid file is read by
    // monitoring and init scripts that are not in the daemon's group.
    if (::fchmod(fd.get(), 0644) != 0) return failed("set the mode of");
    std::string text = std::to_string(::getpid()) + "\n";
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) return failed("write");
    return PidFile(path);
}

PidFile::PidFile(PidFile&& o) noexcept : path_(std::exchange(o.path_, std::string())) {}

PidFile::~PidFile() {
    if (path_.empty()) return;
    std::ifstream in(path_);
    long pid = 0;
    if (in >> pid && pid == ::getpid()) ::unlink(path_.c_str());
}

}  // namespace relayguard
