// Syslog headers; see the header. Hand-written rather than a regular
// expression: the forms are few and fixed, and a parser that only walks
// forward costs one pass over the header whatever the line holds.
#include "policy/log_line.h"

#include <algorithm>
#include <array>

namespace relayguard {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// A syslog tag as programs choose it: "dovecot", "cyrus/imap", "imapd-ssl",
// "pop3-login". No '(' or '<': Dovecot's mail processes log as
// "imap(USER)<pid><session>:", with a user name a client chose in the very
// first token, and such a token must never pass for a program.
bool is_tag_char(char c) { return is_alnum(c) || c == '_' || c == '-' || c == '.' || c == '/'; }

// A host name, or an IPv4/IPv6 address where syslog found no name.
bool is_host_char(char c) { return is_alnum(c) || c == '_' || c == '-' || c == '.' || c == ':' || c == '%'; }

// Each consumes what it reads from the front of `s` when it returns true;
// on false `s` may be partly consumed, so callers try them on a copy.
bool digits(std::string_view& s, std::size_t n) {
    if (s.size() < n || !std::all_of(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(n), is_digit)) return false;
    s.remove_prefix(n);
    return true;
}

bool literal(std::string_view& s, char c) {
    if (s.empty() || s.front() != c) return false;
    s.remove_prefix(1);
    return true;
}

// "15:51:43", "15:51:43.123456"
bool clock_time(std::string_view& s) {
    if (!(digits(s, 2) && literal(s, ':') && digits(s, 2) && literal(s, ':') && digits(s, 2))) return false;
    if (literal(s, '.')) {
        std::size_t n = 0;
        while (n < s.size() && n < 9 && is_digit(s[n])) ++n;
        if (n == 0) return false;
        s.remove_prefix(n);
    }
    return true;
}

// "Dec  3 15:51:43" (syslog pads the day with a space), "Dec 03 15:51:43"
// (journalctl, Dovecot), "Dec 3 15:51:43".
bool bsd_timestamp(std::string_view& s) {
    static constexpr std::array<std::string_view, 12> months = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    if (s.size() < 4 || std::find(months.begin(), months.end(), s.substr(0, 3)) == months.end() || s[3] != ' ') {
        return false;
    }
    s.remove_prefix(4);
    if (literal(s, ' ')) {
        if (!digits(s, 1)) return false;
    } else if (!digits(s, 2) && !digits(s, 1)) {
        return false;
    }
    return literal(s, ' ') && clock_time(s);
}

// "2026-12-03T15:51:43.123456+00:00", "2026-12-03T15:51:43+0000",
// "2026-12-03T15:51:43Z", "2026-12-03 15:51:43"
bool iso_timestamp(std::string_view& s) {
    if (!(digits(s, 4) && literal(s, '-') && digits(s, 2) && literal(s, '-') && digits(s, 2))) return false;
    if (!literal(s, 'T') && !literal(s, ' ')) return false;
    if (!clock_time(s)) return false;
    if (literal(s, 'Z')) return true;
    if (literal(s, '+') || literal(s, '-')) {
        if (!digits(s, 2)) return false;
        literal(s, ':');
        return digits(s, 2);
    }
    return true;
}

// "prog[pid]: message" or "prog: message" at the start of `s`.
std::optional<LogLine> tagged_message(std::string_view s) {
    std::size_t end = 0;
    while (end < s.size() && is_tag_char(s[end])) ++end;
    if (end == 0) return std::nullopt;
    LogLine line;
    line.program = s.substr(0, end);
    if (end < s.size() && s[end] == '[') {
        std::size_t close = end + 1;
        while (close < s.size() && is_digit(s[close])) ++close;
        if (close == end + 1 || close >= s.size() || s[close] != ']') return std::nullopt;
        end = close + 1;
    }
    line.tag = s.substr(0, end);
    if (s.substr(end, 2) != ": ") return std::nullopt;
    line.message = s.substr(end + 2);
    return line;
}

}  // namespace

std::optional<LogLine> parse_log_line(std::string_view line) {
    std::string_view rest = line;
    bool stamped = false;
    for (auto timestamp : {bsd_timestamp, iso_timestamp}) {
        std::string_view attempt = rest;
        if (timestamp(attempt)) {
            rest = attempt;
            stamped = true;
            break;
        }
    }
    if (stamped && !literal(rest, ' ')) return std::nullopt;
    // Dovecot's own log file has no host: the program comes right after the
    // timestamp (or first of all, with an empty log_timestamp).
    if (auto hostless = tagged_message(rest)) return hostless;
    if (!stamped) return std::nullopt;
    std::size_t host = 0;
    while (host < rest.size() && is_host_char(rest[host])) ++host;
    if (host == 0 || host >= rest.size() || rest[host] != ' ') return std::nullopt;
    return tagged_message(rest.substr(host + 1));
}

}  // namespace relayguard
