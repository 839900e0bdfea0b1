// A line of a POP3/IMAP server's log that says a login succeeded, as the
// admin writes it in the config: a regular expression (ECMAScript) in which
// %u stands for the user name and %a for the client address. Only lines of
// successful logins should match; a failed login must never open relay.
#pragma once

#include <optional>
#include <regex>
#include <string>
#include <variant>

namespace relayguard {

struct LoginSeen {
    std::string user;
    std::string address;  // as logged; the caller parses it
};

class LoginPattern {
public:
    // The pattern, or why it is not one (no %a, a bad regex).
    static std::variant<LoginPattern, std::string> compile(const std::string& pattern);
    std::optional<LoginSeen> match(const std::string& line) const;
    const std::string& text() const { return text_; }

private:
    std::string text_;
    std::regex regex_;
    std::size_t user_group_ = 0;  // 0: no %u
    std::size_t address_group_ = 0;
};

// Patterns for Dovecot, Courier and Cyrus, the default of pop_before_smtp.log_patterns.
const std::vector<std::string>& default_login_patterns();

}  // namespace relayguard
