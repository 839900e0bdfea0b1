// libFuzzer target: the login log follower's matching (syslog header parser
// and the default login patterns of Dovecot, Courier and Cyrus), and the
// compilation of an admin's pattern. Besides not crashing or stalling on any
// line, it asserts what keeps relay closed to an attacker:
//   - a failed-login line, from each server's real template, with the input
//     as the user name, matches no default pattern: a user name cannot forge
//     a login;
//   - a successful-login line with the input as the user name matches, with
//     the server's own address and the whole name: a user name cannot move
//     the address taken;
//   - every line of the input that matches is one whose message starts with
//     a server's own success words.
// Servers replace control characters in a user name (Dovecot with '?',
// Courier with '.'), and the follower cuts lines at '\n', so the name used
// in a template has its newlines replaced the same way.
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/log_line.h"
#include "policy/login_pattern.h"

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

const std::vector<relayguard::LoginPattern>& defaults() {
    static const std::vector<relayguard::LoginPattern> patterns = [] {
        std::vector<relayguard::LoginPattern> out;
        for (const auto& text : relayguard::default_login_patterns()) {
            out.push_back(*relayguard::LoginPattern::compile(text));
        }
        return out;
    }();
    return patterns;
}

std::optional<relayguard::LoginSeen> first_match(std::string_view line) {
    auto parsed = relayguard::parse_log_line(line);
    if (!parsed) return std::nullopt;
    for (const auto& p : defaults()) {
        if (auto seen = p.match(*parsed)) return seen;
    }
    return std::nullopt;
}

struct Template {
    std::string before;  // the line up to the user name
    std::string after;   // the line after it
};

// Failed logins, as each server logs them (header forms vary on purpose).
const std::vector<Template> failed = {
    {"Dec  3 15:51:43 mail dovecot: pop3-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<",
     ">, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, session=<q454Xu/vMwBZApgg>"},
    {"Dec 03 15:51:43 imap-login: Info: Aborted login (auth failed, 1 attempts in 2 secs): user=<",
     ">, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, TLS, session=<YADINsQCDs5BH8Pg>"},
    {"2026-12-03T15:51:43.123456+00:00 mail dovecot[442]: imap-login: Disconnected: Connection closed "
     "(auth failed, 1 attempts in 2 secs): user=<",
     ">, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, TLS, session=<g3ZKeDECFqlWWMbU>"},
    {"Dec  3 15:51:43 mail imapd-ssl: LOGIN FAILED, user=", ", ip=[::ffff:198.51.100.7]"},
    {"Dec  3 15:51:43 mail pop3d: LOGIN FAILED, user=", ", ip=[::ffff:198.51.100.7], port=[41234]"},
    {"Dec  3 15:51:43 mail cyrus/imap[5355]: badlogin: client.example [198.51.100.7] plaintext ",
     " SASL(-13): authentication failure: checkpass failed"},
};

// Successful logins: the address is always 198.51.100.7.
const std::vector<Template> succeeded = {
    {"Dec  3 15:51:43 mail dovecot: imap-login: Login: user=<",
     ">, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, mpid=4242, TLS, session=<lJx0Oo7WXti3b7xe>"},
    {"Dec 03 15:51:43 pop3-login: Info: Login: user=<",
     ">, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, mpid=11911, secured, session=<abc>"},
    {"Dec  3 15:51:43 mail pop3d: LOGIN, user=", ", ip=[::ffff:198.51.100.7], port=[41234], protocol=POP3"},
    {"Dec  3 15:51:43 mail cyrus/pop3[4242]: login: client.example [198.51.100.7] ",
     " plaintext User logged in SESSIONID=<cyrus-4242-1764777103-1-1234>"},
};

bool starts_with_success_words(std::string_view message) {
    for (std::string_view words : {"pop3-login: Login: ", "imap-login: Login: ", "Info: Login: ", "LOGIN, user=",
                                   "login: "}) {
        if (message.substr(0, words.size()) == words) return true;
    }
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);

    // The input as a piece of a log: each line, as the follower reads it.
    for (std::size_t start = 0; start <= input.size();) {
        std::size_t end = input.find('\n', start);
        if (end == std::string_view::npos) end = input.size();
        std::string_view line = input.substr(start, end - start);
        if (auto parsed = relayguard::parse_log_line(line)) {
            // Views into the line, in order.
            require(parsed->message.data() + parsed->message.size() == line.data() + line.size());
            require(parsed->tag.substr(0, parsed->program.size()) == parsed->program);
            if (first_match(line)) require(starts_with_success_words(parsed->message));
        }
        start = end + 1;
    }

    // The input as a user name.
    std::string user(input.substr(0, 4096));
    for (char& c : user) {
        if (c == '\n') c = '?';
    }
    for (const auto& t : failed) require(!first_match(t.before + user + t.after));
    if (!user.empty()) {
        for (const auto& t : succeeded) {
            auto seen = first_match(t.before + user + t.after);
            require(seen.has_value());
            require(seen->address == "198.51.100.7" || seen->address == "::ffff:198.51.100.7");
            require(seen->user == user);
        }
    }

    // The input as an admin's pattern: compiles or says why, never crashes.
    if (size <= 512) {
        auto compiled = relayguard::LoginPattern::compile(std::string(input));
        if (compiled) {
            (void)compiled->match("Dec  3 15:51:43 mail dovecot: imap-login: Login: user=<u1>, method=PLAIN, "
                                 "rip=198.51.100.7, lip=192.0.2.1");
            (void)compiled->match(input);
        }
    }
    return 0;
}
