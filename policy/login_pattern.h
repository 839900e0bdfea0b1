// A line of a POP3/IMAP server's log that says a login succeeded, as the
// admin writes it in the config: "PROGRAM: MESSAGE", two regular expressions
// (RE2 syntax) where PROGRAM must match the whole syslog program of the line
// (with or without its [pid]) and MESSAGE must match from the very start of
// what that program said; in MESSAGE, %u stands for the user name and %a for
// the client address. Anchoring both is what keeps a client's text out of
// the server's place: a failed login whose user name holds a success line
// starts with the server's own "Disconnected", so it can never match a
// pattern starting with "Login:". %u takes any text, the longest that still
// lets the rest of the pattern match, so what follows it in the pattern
// (the "rip=%a" of Dovecot) is read from the server's own end of the line,
// never from inside a user name.
//
// RE2 rather than std::regex: RE2 runs in time linear in the line and never
// recurses per character (std::regex crashed the daemon on a 30,000-byte
// line). It stays inside login_pattern.cpp: this header includes nothing of
// it, so policy/ still exposes the standard library only. The exception to
// "policy/ uses the standard library only" is deliberate: the pattern is a
// pure function of two strings, no I/O, no clock, and conf/ must compile it
// to validate the config, which rules out plugin/ or common/ as its home.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"
#include "policy/log_line.h"

namespace relayguard {

struct LoginSeen {
    std::string user;
    std::string address;  // as logged; the caller parses it
};

class LoginPattern {
public:
    // The pattern, or why it is not one (no program, no %a, a bad regex).
    static Result<LoginPattern> compile(const std::string& pattern);
    // A whole line of the log, syslog header included.
    std::optional<LoginSeen> match(std::string_view line) const;
    // A line already split, to parse its header once for every pattern.
    std::optional<LoginSeen> match(const LogLine& line) const;
    const std::string& text() const { return text_; }

private:
    struct Compiled;  // the RE2 programs; immutable, so shared by copies and threads
    std::string text_;
    std::shared_ptr<const Compiled> compiled_;
};

// Patterns for Dovecot, Courier and Cyrus, the default of pop_before_smtp.log_patterns.
const std::vector<std::string>& default_login_patterns();
// Failed SMTP AUTH in Postfix's and Sendmail's logs, the default of
// auth_events.log_patterns (a failure matches; %u is optional).
const std::vector<std::string>& default_auth_failure_patterns();

}  // namespace relayguard
