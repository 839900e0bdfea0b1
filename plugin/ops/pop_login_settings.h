// [pop_before_smtp]: where POP3/IMAP logins are learnt from.
#pragma once

#include <string>
#include <vector>

#include "policy/login_pattern.h"

namespace relayguard {

// Besides the admin socket.
struct PopLoginSettings {
    std::string log_file;  // followed for login lines ("" = off)
    std::vector<std::string> log_patterns = default_login_patterns();
};

}  // namespace relayguard
