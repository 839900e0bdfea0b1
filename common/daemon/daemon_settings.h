// [daemon]: the user to run as once the sockets are bound, and the pid file.
#pragma once

#include <string>

namespace relayguard {

struct DaemonSettings {
    std::string user;  // drop privileges to this user after binding ("" = stay)
    std::string group;
    std::string pid_file;
};

}  // namespace relayguard
