// Login patterns; see the header.
#include "policy/login_pattern.h"

namespace relayguard {

namespace {
// What %u and %a become. An address is matched loosely (IPv4, IPv6,
// v4-mapped) and parsed afterwards, so a bad one is dropped, not trusted.
constexpr const char* user_regex = "([^\\s,<>\\]\\[]+)";
constexpr const char* address_regex = "([0-9A-Fa-f:.]+)";
}  // namespace

const std::vector<std::string>& default_login_patterns() {
    static const std::vector<std::string> patterns = {
        // Dovecot: "pop3-login: Login: user=<u1>, method=PLAIN, rip=192.0.2.5, lip=..."
        R"((?:pop3|imap)-login: (?:Info: )?Login: user=<%u>, method=\S+, rip=%a,)",
        // Courier: "courierpop3login: LOGIN, user=u1, ip=[::ffff:192.0.2.5], port=[...]"
        R"(courier(?:pop3|imap)login: LOGIN, user=%u, ip=\[%a\])",
        // Cyrus: "pop3[123]: login: host.example [192.0.2.5] u1 plaintext User logged in"
        R"((?:pop3|imap)s?\[\d+\]: login: \S+ \[%a\] %u \S+ User logged in)",
    };
    return patterns;
}

std::variant<LoginPattern, std::string> LoginPattern::compile(const std::string& pattern) {
    LoginPattern p;
    p.text_ = pattern;
    std::string re;
    std::size_t groups = 0;
    bool in_class = false;
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        char c = pattern[i];
        if (c == '\\' && i + 1 < pattern.size()) {
            re += c;
            re += pattern[++i];
            continue;
        }
        if (in_class) {
            if (c == ']') in_class = false;
            re += c;
            continue;
        }
        if (c == '[') in_class = true;
        // Count capturing groups, so the placeholders' numbers are known.
        if (c == '(' && !(i + 1 < pattern.size() && pattern[i + 1] == '?')) ++groups;
        if (c == '%' && i + 1 < pattern.size() && (pattern[i + 1] == 'u' || pattern[i + 1] == 'a')) {
            bool user = pattern[++i] == 'u';
            std::size_t& slot = user ? p.user_group_ : p.address_group_;
            if (slot != 0) return std::string("%") + (user ? "u" : "a") + " appears twice";
            slot = ++groups;
            re += user ? user_regex : address_regex;
            continue;
        }
        re += c;
    }
    if (p.address_group_ == 0) return std::string("no %a: the pattern must capture the client address");
    try {
        p.regex_ = std::regex(re, std::regex::ECMAScript | std::regex::optimize);
    } catch (const std::regex_error& e) {
        return std::string("not a regular expression: ") + e.what();
    }
    return p;
}

std::optional<LoginSeen> LoginPattern::match(const std::string& line) const {
    std::smatch m;
    if (!std::regex_search(line, m, regex_)) return std::nullopt;
    LoginSeen seen;
    seen.address = m[address_group_].str();
    if (user_group_ != 0) seen.user = m[user_group_].str();
    return seen;
}

}  // namespace relayguard
