// Runs limits.compromised_accounts.command when an account is marked: the
// program with the user and the reason appended as arguments, without a
// shell (a user name is text a client chose), never waited for by the
// deciding thread. A program still running after 60 s is killed.
#pragma once

#include <string>
#include <vector>

namespace relayguard {

void run_account_command(const std::vector<std::string>& command, const std::string& user, const std::string& reason);

}  // namespace relayguard
