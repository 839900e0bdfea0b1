// The wiring traps `relayguard doctor` looks for, as pure functions of the
// MTA's effective configuration and relayguard's own: each finding says
// what is wrong, what it costs, and the line that mends it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/mta/mta_domains.h"
#include "common/mta/postfix_config.h"
#include "conf/config.h"

namespace relayguard {

enum class Severity { warning, error };

struct Finding {
    Severity severity = Severity::warning;
    std::string id;       // stable, for configuration management: "milter-fails-open"
    std::string message;  // what is wrong and what it costs
    std::string fix;      // what to change, in words or as the line to write
    std::string command;  // a postconf command that applies the fix, when there is one
};

// `domains`: Postfix's own domains (read_mta_domains), or nullptr when they
// could not be read.
std::vector<Finding> check_postfix(const PostfixConfig& postfix, const Config& config, const MtaDomains* domains);

// sendmail.cf's text; `domains` as above, from Sendmail's classes w and R.
std::vector<Finding> check_sendmail(std::string_view sendmail_cf, const Config& config, const MtaDomains* domains);

// `s` as one shell word, for the commands the doctor prints.
std::string shell_quoted(const std::string& s);

// The pure helpers, for tests.
// A Postfix time value ("30s", "5m", "100", "1h") in seconds; -1 if unreadable.
long postfix_seconds(std::string_view value);
// Whether a socket as Postfix names it ("inet:localhost:8893",
// "unix:/run/x.sock") is relayguard's ("inet:127.0.0.1:8893", "unix:/run/x.sock").
bool same_socket(std::string_view postfix_name, std::string_view relayguard_name);
// Sendmail's notation ("inet:8893@127.0.0.1", "local:/run/x.sock") against relayguard's.
bool same_sendmail_socket(std::string_view sendmail_name, std::string_view relayguard_name);

}  // namespace relayguard
