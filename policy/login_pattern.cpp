// Login patterns; see the header.
#include "policy/login_pattern.h"

#include <re2/re2.h>

#include <algorithm>

namespace relayguard {

namespace {

// What %u and %a become. A user name is any text: Dovecot, Courier and
// Cyrus print what the client sent (Dovecot replaces control characters and
// cuts at 80), '>', ',' and spaces included, so no character class can tell
// where it ends; only the structure after it can, hence "longest". An
// address is matched loosely (IPv4, IPv6, v4-mapped) and parsed afterwards,
// so a bad one is dropped, not trusted.
constexpr std::string_view user_group = "rg_user";
constexpr std::string_view address_group = "rg_address";
constexpr std::string_view user_regex = "(?P<rg_user>.+)";
constexpr std::string_view address_regex = "(?P<rg_address>[0-9A-Fa-f:.]+)";

// Where the program part of "PROGRAM: MESSAGE" ends: the first ": " outside
// any group, character class or escape. npos when there is none.
std::size_t program_end(std::string_view pattern) {
    int depth = 0;
    bool in_class = false;
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        char c = pattern[i];
        if (c == '\\') {
            ++i;
        } else if (in_class) {
            if (c == ']') in_class = false;
        } else if (c == '[') {
            in_class = true;
        } else if (c == '(') {
            ++depth;
        } else if (c == ')') {
            --depth;
        } else if (c == ':' && depth == 0 && i + 1 < pattern.size() && pattern[i + 1] == ' ') {
            return i;
        }
    }
    return std::string_view::npos;
}

struct Placeholders {
    std::string regex;
    bool user = false;
    bool address = false;
    std::string error;
};

// The admin's text with %u and %a replaced by their groups; a '%' that is
// escaped or inside a character class stays a '%'.
Placeholders expand(std::string_view pattern) {
    Placeholders out;
    bool in_class = false;
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        char c = pattern[i];
        if (c == '\\' && i + 1 < pattern.size()) {
            out.regex += c;
            out.regex += pattern[++i];
            continue;
        }
        if (in_class) {
            if (c == ']') in_class = false;
            out.regex += c;
            continue;
        }
        if (c == '[') in_class = true;
        if (c == '%' && i + 1 < pattern.size() && (pattern[i + 1] == 'u' || pattern[i + 1] == 'a')) {
            bool user = pattern[++i] == 'u';
            bool& seen = user ? out.user : out.address;
            if (seen) {
                out.error = std::string("%") + (user ? "u" : "a") + " appears twice";
                return out;
            }
            seen = true;
            out.regex += user ? user_regex : address_regex;
            continue;
        }
        out.regex += c;
    }
    return out;
}

RE2::Options pattern_options() {
    RE2::Options options;
    // Log lines are bytes, not always UTF-8 (Courier and Cyrus print a user
    // name as the client sent it): in Latin-1, '.' matches every byte but
    // the newline, so a stray byte cannot end %u early or stop a match.
    options.set_encoding(RE2::Options::EncodingLatin1);
    options.set_log_errors(false);  // the error is returned to the config check
    return options;
}

}  // namespace

struct LoginPattern::Compiled {
    RE2 program;
    RE2 message;
    int user_index = 0;  // 0: no %u
    int address_index = 0;
    Compiled(const std::string& program_regex, const std::string& message_regex)
        : program(program_regex, pattern_options()), message(message_regex, pattern_options()) {}
};

const std::vector<std::string>& default_auth_failure_patterns() {
    static const std::vector<std::string> patterns = {
        // Postfix smtpd under any syslog_name (postfix/submission/smtpd,
        // postfix-out/smtpd), Cyrus or Dovecot SASL; the host name is the
        // verified one or "unknown", never the client's own text:
        //   "postfix/smtpd[4242]: warning: unknown[192.0.2.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
        // Postfix 3.x adds ", sasl_username=NAME" where the SASL server named the user.
        R"(postfix[-\w.]*(?:/[-\w.]+)*/smtpd: warning: [-\w.]+\[%a\]: SASL [-\w]+ authentication failed: [^,]*(?:, sasl_username=%u)?)",
        // Sendmail (sm-mta on Debian) with Cyrus SASL; "relay=" is
        // Sendmail's own, at the end of the line, after any text the client
        // chose:
        //   "sm-mta[4242]: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): ..., relay=client.example [192.0.2.7]"
        R"((?:sm-mta|sendmail): (?:\w+: )?AUTH failure \([-\w]+\): .*, relay=(?:[-\w.]+ )?\[(?:IPv6:)?%a\])",
    };
    return patterns;
}

const std::vector<std::string>& default_login_patterns() {
    static const std::vector<std::string> patterns = {
        // Dovecot through syslog or journald:
        //   "dovecot: imap-login: Login: user=<u1>, method=PLAIN, rip=192.0.2.5, lip=192.0.2.1, mpid=4242, TLS, ..."
        R"(dovecot: (?:pop3|imap)-login: Login: user=<%u>, method=[-\w]+, rip=%a, lip=)",
        // Dovecot's own log_path, where the login process is the program:
        //   "pop3-login: Info: Login: user=<u1>, method=PLAIN, rip=192.0.2.5, lip=..."
        R"((?:pop3|imap)-login: Info: Login: user=<%u>, method=[-\w]+, rip=%a, lip=)",
        // Courier (courierlogger names the program after its -name, the
        // daemon's name in older releases):
        //   "pop3d: LOGIN, user=carol, ip=[::ffff:192.0.2.9], port=[41234], protocol=POP3"
        R"((?:pop3|imap)d(?:-ssl)?|courier(?:pop3|imap)login: LOGIN, user=%u, ip=\[%a\], port=\[)",
        // Cyrus 2.5 and later log as "cyrus/SERVICE", older ones as SERVICE:
        //   "cyrus/pop3[4242]: login: client.example [192.0.2.11] dave plaintext User logged in SESSIONID=<...>"
        // The host name (from a checked PTR lookup) is absent when there is none.
        R"((?:cyrus/)?(?:pop3|imap)s?d?: login: (?:[^\s\[\]]+ )?\[%a\] %u [-\w]+(?:\+TLS)? User logged in)",
    };
    return patterns;
}

Result<LoginPattern> LoginPattern::compile(const std::string& pattern) {
    using R = Result<LoginPattern>;
    std::size_t colon = program_end(pattern);
    if (colon == std::string::npos || colon == 0) {
        return R::failure("no program: write PROGRAM: MESSAGE, as in 'dovecot: imap-login: Login: user=<%u>, "
                          "method=\\S+, rip=%a, lip='");
    }
    std::string_view text(pattern);
    std::string_view program = text.substr(0, colon);
    if (program.find("%u") != std::string_view::npos || program.find("%a") != std::string_view::npos) {
        return R::failure("%u and %a belong in the message, after 'PROGRAM: '");
    }
    Placeholders message = expand(text.substr(colon + 2));
    if (!message.error.empty()) return R::failure(message.error);
    if (!message.address) return R::failure("no %a: the pattern must capture the client address");

    // The program is matched whole, so alternatives in it are grouped first.
    auto compiled = std::make_shared<Compiled>("(?:" + std::string(program) + ")", message.regex);
    if (!compiled->program.ok()) return R::failure("not a regular expression (program): " + compiled->program.error());
    if (!compiled->message.ok()) return R::failure("not a regular expression: " + compiled->message.error());
    const auto& names = compiled->message.NamedCapturingGroups();
    auto index_of = [&](std::string_view name) {
        auto it = names.find(std::string(name));
        return it == names.end() ? 0 : it->second;
    };
    compiled->address_index = index_of(address_group);
    if (message.user) compiled->user_index = index_of(user_group);

    LoginPattern p;
    p.text_ = pattern;
    p.compiled_ = std::move(compiled);
    return p;
}

std::optional<LoginSeen> LoginPattern::match(std::string_view line) const {
    auto parsed = parse_log_line(line);
    if (!parsed) return std::nullopt;
    return match(*parsed);
}

std::optional<LoginSeen> LoginPattern::match(const LogLine& line) const {
    if (!compiled_) return std::nullopt;  // only compile() makes a pattern that matches
    const Compiled& c = *compiled_;
    // With its [pid] too, so that a pattern written as "pop3\[\d+\]: ..." works.
    bool program_matches = RE2::FullMatch(line.program, c.program) ||
                           (line.tag != line.program && RE2::FullMatch(line.tag, c.program));
    if (!program_matches) return std::nullopt;
    std::vector<re2::StringPiece> groups(static_cast<std::size_t>(std::max(c.address_index, c.user_index)) + 1);
    if (!c.message.Match(line.message, 0, line.message.size(), RE2::ANCHOR_START, groups.data(),
                         static_cast<int>(groups.size()))) {
        return std::nullopt;
    }
    LoginSeen seen;
    seen.address = std::string(groups[static_cast<std::size_t>(c.address_index)]);
    if (c.user_index != 0) seen.user = std::string(groups[static_cast<std::size_t>(c.user_index)]);
    return seen;
}

}  // namespace relayguard
