// [auth_events]: where relayguard hears of logins it does not see itself
// (POP3, IMAP, and SMTP AUTH, which neither MTA protocol reports when it fails).
#pragma once

#include <string>
#include <vector>

#include "policy/login_pattern.h"

namespace relayguard {

struct AuthEventSettings {
    // "IP:PORT" on loopback for Dovecot's auth_policy_server_url ("" = off).
    std::string dovecot_policy;
    // The header Dovecot sends with each request
    // (auth_policy_server_api_header), "Name: value"; a request without it
    // is refused. A secret: never logged.
    std::string dovecot_api_header;
    // MTA logs followed for failed SMTP AUTH, for set-ups whose SASL
    // server is not Dovecot (Cyrus); each match is one failure.
    std::vector<std::string> log_files;
    std::vector<std::string> log_patterns = default_auth_failure_patterns();
};

}  // namespace relayguard
