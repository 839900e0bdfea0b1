// [log]: level, targets, the security log and the connection log.
#pragma once

#include <string>
#include <vector>

namespace relayguard {

struct LogSettings {
    std::string level = "info";
    std::vector<std::string> targets{"stderr"};  // "stderr", "syslog" or a file path
    std::string security_log;                    // refusals also go to this file
    bool connection_log = false;                 // one line per SMTP session, at its close
    std::string connection_log_file;             // also into this file ("" = the main log only)
};

}  // namespace relayguard
