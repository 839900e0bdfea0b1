// `relayguard doctor`: reads the MTA's effective configuration and
// relayguard's, reports every wiring trap with the line that mends it, and
// prints the postconf commands that apply those mends (the snippet for this
// very Postfix). Exit status 0 nothing found, 1 warnings, 2 errors, 64 bad
// usage, so configuration management can gate on it.
#pragma once

#include <string>
#include <vector>

namespace relayguard {

int run_doctor(const std::vector<std::string>& args);

}  // namespace relayguard
