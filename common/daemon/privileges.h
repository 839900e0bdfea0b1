// Dropping root after the sockets are bound, as Postfix's daemons do.
#pragma once

#include <string>

namespace relayguard {

// Becomes `user` (and `group`, or the user's primary group). Answers an
// error message, or "" on success. An empty user changes nothing.
std::string drop_privileges(const std::string& user, const std::string& group);

}  // namespace relayguard
