// Dovecot's auth policy server protocol, as data: the JSON request Dovecot
// POSTs before (?command=allow) and after (?command=report) each
// authentication, and the JSON answer. Parsing is apart from the HTTP
// server so it can be fuzzed and unit-tested without sockets.
//
// A request (Dovecot 2.3's default auth_policy_request_attributes):
//   {"login":"u1","pwhash":"a3f","remote":"192.0.2.7","device_id":"",
//    "protocol":"smtp","session_id":"...","success":false,"policy_reject":false}
// "success" and "policy_reject" come with reports only. The answer's
// "status" is -1 to refuse, 0 to let the login go on (a positive number
// would delay it that many seconds; relayguard refuses instead).
#pragma once

#include <string>
#include <string_view>

#include "common/base/result.h"
#include "policy/decision.h"
#include "policy/ip_address.h"

namespace relayguard {

struct DovecotPolicyRequest {
    enum class Command { allow, report };
    Command command = Command::allow;
    IpAddress remote;
    std::string login;     // what the client typed as its user name
    std::string pwhash;    // Dovecot's salted, truncated hash of the password tried
    std::string protocol;  // "pop3", "imap", "smtp", ...
    bool success = false;        // reports only
    bool policy_reject = false;  // reports only: the failure was our own refusal
};

// The request, from the URL's `command` parameter and the body; a failure
// says what was wrong, in words safe to log.
Result<DovecotPolicyRequest> parse_dovecot_policy_request(std::string_view command, std::string_view body);

// The JSON answer to Dovecot: a refusal becomes status -1 with the reply's
// text as its message; anything else status 0.
std::string dovecot_policy_answer(const Decision& d);

}  // namespace relayguard
