// Privilege dropping; see the header. The order matters: supplementary
// groups and gid must go while we are still root.
#include "common/daemon/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace relayguard {

Status drop_privileges(const std::string& user, const std::string& group) {
    if (user.empty()) return Done{};
    passwd* pw = ::getpwnam(user.c_str());
    if (pw == nullptr) return Status::failure("no such user \"" + user + "\"");
    gid_t gid = pw->pw_gid;
    if (!group.empty()) {
        struct group* g = ::getgrnam(group.c_str());
        if (g == nullptr) return Status::failure("no such group \"" + group + "\"");
        gid = g->gr_gid;
    }
    // Already that user (systemd's User= started us so): nothing to drop.
    if (::getuid() == pw->pw_uid && ::geteuid() == pw->pw_uid && ::getgid() == gid && ::getegid() == gid) return Done{};
    if (::setgroups(1, &gid) != 0 || ::setgid(gid) != 0 || ::setuid(pw->pw_uid) != 0) {
        return Status::failure(std::string("cannot become ") + user + ": " + std::strerror(errno));
    }
    if (::setuid(0) == 0) return Status::failure("privileges could be regained after dropping them");
    return Done{};
}

}  // namespace relayguard
