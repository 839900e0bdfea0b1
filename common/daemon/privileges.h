// Dropping root after the sockets are bound, as Postfix's daemons do.
#pragma once

#include "common/base/result.h"

#include <string>

namespace relayguard {

// Becomes `user` (and `group`, or the user's primary group), or says why it
// cannot. An empty user changes nothing.
Status drop_privileges(const std::string& user, const std::string& group);

}  // namespace relayguard
