// Durable file replacement; see the header.
#include "common/base/durable_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/base/unique_fd.h"

namespace relayguard {

bool sync_directory(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    return fd && ::fsync(fd.get()) == 0;
}

Status replace_file_durably(const std::string& path, std::string_view body, mode_t mode) {
    std::string staging = path + ".new";
    ::unlink(staging.c_str());  // a leftover of a crash between write and rename
    UniqueFd fd(::open(staging.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
    if (!fd) return Status::failure("cannot create " + staging + ": " + std::strerror(errno));
    bool ok = ::fchmod(fd.get(), mode) == 0 && write_all(fd.get(), body) && ::fsync(fd.get()) == 0;
    if (!ok) {
        std::string why = std::strerror(errno);
        ::unlink(staging.c_str());
        return Status::failure("cannot write " + staging + ": " + why);
    }
    if (::rename(staging.c_str(), path.c_str()) != 0) {
        std::string why = std::strerror(errno);
        ::unlink(staging.c_str());
        return Status::failure("cannot rename " + staging + " to " + path + ": " + why);
    }
    std::string dir = path.substr(0, path.rfind('/'));
    if (dir.empty()) dir = "/";
    if (!sync_directory(dir)) return Status::failure("cannot fsync " + dir + ": " + std::strerror(errno));
    return Done{};
}

}  // namespace relayguard
