// POP-before-SMTP logins: the log patterns (successful logins only, IPv4 and
// IPv6, never a line a client's text could forge, never a crash on a long
// line), the log follower across rotation and truncation, and the admin
// socket's requests through a real engine.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "harness.h"
#include "conf/config.h"
#include "plugin/ops/admin_server.h"
#include "plugin/ops/login_log_follower.h"
#include "policy/log_line.h"
#include "policy/login_pattern.h"

using namespace relayguard;
using namespace relayguard::test;

namespace {

std::vector<LoginPattern> defaults() {
    std::vector<LoginPattern> out;
    for (const auto& text : default_login_patterns()) out.push_back(*LoginPattern::compile(text));
    return out;
}

std::optional<LoginSeen> first_match(const std::string& line) {
    for (const auto& p : defaults()) {
        if (auto seen = p.match(line)) return seen;
    }
    return std::nullopt;
}

struct TempFile {
    std::string dir = std::filesystem::temp_directory_path() / ("rg-follow-" + std::to_string(getpid()));
    std::string path = dir + "/mail.log";
    TempFile() { std::filesystem::create_directories(dir); }
    ~TempFile() { std::filesystem::remove_all(dir); }
    void append(const std::string& text) const {
        std::ofstream out(path, std::ios::app);
        out << text;
    }
};

const char* dovecot_login(const char* user, const char* ip) {
    static std::string line;
    line = std::string("Nov 22 19:48:08 pop3-login: Info: Login: user=<") + user + ">, method=PLAIN, rip=" + ip +
           ", lip=127.0.0.1, mpid=11911, secured, session=<abc>\n";
    return line.c_str();
}

// Real lines, as Dovecot 2.3, Courier and Cyrus write them (the fail2ban
// test corpus and Dovecot's own log give the shapes), with documentation
// addresses. Each success line is given in every header form a log file
// has: syslog (RFC 3164), journalctl's short, short-precise and short-iso,
// rsyslog's high-precision RFC 3339 timestamps.
const std::vector<std::string> headers = {
    "Dec  3 15:51:43 mail ",
    "Dec 03 15:51:43 mail ",
    "Dec 03 15:51:43.123456 mail ",
    "2026-12-03T15:51:43+0000 mail ",
    "2026-12-03T15:51:43.123456+00:00 mail ",
};

struct Success {
    std::string tag_and_message;  // after the host
    std::string user;
    std::string address;          // as IpAddress::to_string gives it
};

const std::vector<Success> successes = {
    {"dovecot: imap-login: Login: user=<bob@example.test>, method=PLAIN, rip=192.0.2.5, lip=192.0.2.1, mpid=4242, "
     "TLS, session=<lJx0Oo7WXti3b7xe>",
     "bob@example.test", "192.0.2.5"},
    {"dovecot[442]: pop3-login: Login: user=<u1>, method=PLAIN, rip=2001:db8::7, lip=2001:db8::1, mpid=11911, "
     "secured, session=<YADINsQCDs5BH8Pg>",
     "u1", "2001:db8::7"},
    {"dovecot[442]: imap-login: Login: user=<carol>, method=SCRAM-SHA-256, rip=192.0.2.8, lip=192.0.2.1, mpid=7, "
     "TLS, session=<g3ZKeDECFqlWWMbU>",
     "carol", "192.0.2.8"},
    {"pop3d: LOGIN, user=carol, ip=[::ffff:192.0.2.9], port=[41234], protocol=POP3", "carol", "192.0.2.9"},
    {"imapd-ssl: LOGIN, user=carol@example.test, ip=[::ffff:192.0.2.10], port=[50012], protocol=IMAP",
     "carol@example.test", "192.0.2.10"},
    {"courierpop3login: LOGIN, user=carol, ip=[::ffff:192.0.2.9], port=[41234], protocol=POP3, stls=1", "carol",
     "192.0.2.9"},
    {"cyrus/pop3[4242]: login: client.example [192.0.2.11] dave plaintext User logged in "
     "SESSIONID=<cyrus-4242-1764777103-1-1234>",
     "dave", "192.0.2.11"},
    {"cyrus/imaps[4243]: login: [2001:db8::11] dave@example.test PLAIN+TLS User logged in "
     "SESSIONID=<cyrus-4243-1764777103-1-99>",
     "dave@example.test", "2001:db8::11"},
    {"imap[4480]: login: example.com [198.51.100.45] dave DIGEST-MD5 User logged in", "dave", "198.51.100.45"},
};

std::string opened_by(const std::string& line) {
    auto seen = first_match(line);
    if (!seen) return "";
    auto address = IpAddress::parse(seen->address);
    return seen->user + "@" + (address ? address->to_string() : "unparsable:" + seen->address);
}

}  // namespace

TEST_CASE("syslog, journald and Dovecot headers give the program and its message", "[pop]") {
    auto dovecot = parse_log_line("Dec  3 15:51:43 mail dovecot[442]: imap-login: Login: user=<u1>");
    REQUIRE(dovecot);
    REQUIRE(dovecot->program == "dovecot");
    REQUIRE(dovecot->tag == "dovecot[442]");
    REQUIRE(dovecot->message == "imap-login: Login: user=<u1>");
    auto iso = parse_log_line("2026-12-03T15:51:43.123456+00:00 2001:db8::25 cyrus/imap[7]: login: x");
    REQUIRE(iso);
    REQUIRE(iso->program == "cyrus/imap");
    REQUIRE(iso->message == "login: x");
    // Dovecot's own log_path: no host, the login process is the program.
    auto own = parse_log_line("Dec 03 15:51:43 pop3-login: Info: Login: user=<u1>");
    REQUIRE(own);
    REQUIRE(own->program == "pop3-login");
    REQUIRE(own->message == "Info: Login: user=<u1>");
    REQUIRE(parse_log_line("2026-12-03 15:51:43 imap-login: Info: Login: x")->program == "imap-login");
    REQUIRE(parse_log_line("imap-login: Info: Login: x")->program == "imap-login");
    // Not a header: the rest of a line cut short, a dump, a mail process's
    // line (its first token holds the user name: never a program).
    REQUIRE_FALSE(parse_log_line("user=<u1>, method=PLAIN, rip=192.0.2.5, lip=192.0.2.1"));
    REQUIRE_FALSE(parse_log_line(""));
    REQUIRE_FALSE(parse_log_line("Dec 03 15:51:43 imap(u1 x)<4242><abc>: Info: Logged out"));
    REQUIRE_FALSE(parse_log_line("Dec 03 15:51:43 auth-worker(22401): Info: sql(u1,192.0.2.5): unknown user"));
    REQUIRE_FALSE(parse_log_line("Dec 33 15:51:43"));
}

TEST_CASE("the default patterns read successful logins of Dovecot, Courier and Cyrus in every log format", "[pop]") {
    for (const auto& header : headers) {
        for (const auto& s : successes) {
            std::string line = header + s.tag_and_message;
            INFO(line);
            REQUIRE(opened_by(line) == s.user + "@" + s.address);
        }
    }
    // Dovecot's own log file (log_path), as the e2e fixture's Dovecot writes it.
    REQUIRE(opened_by(dovecot_login("u1", "192.0.2.5")) == "u1@192.0.2.5");
    REQUIRE(opened_by("2026-12-03 15:51:43 imap-login: Info: Login: user=<u2>, method=PLAIN, rip=192.0.2.6, "
                      "lip=192.0.2.1, mpid=3, TLS, session=<x>") == "u2@192.0.2.6");
}

TEST_CASE("the example config lists the default patterns", "[pop][config]") {
    auto file = load_config_file(std::string(RELAYGUARD_SOURCE_DIR) + "/conf/relayguard.toml");
    REQUIRE(file.config);
    REQUIRE(file.config->pop_before_smtp.log_patterns == default_login_patterns());
}

TEST_CASE("failed logins match no default pattern", "[pop]") {
    const std::vector<std::string> failed = {
        "Dec  3 15:51:43 mail dovecot: pop3-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<u1>, "
        "method=PLAIN, rip=192.0.2.6, lip=192.0.2.1, session=<q454Xu/vMwBZApgg>",
        "Jul 02 13:49:31 mail dovecot[442]: pop3-login: Aborted login (auth failed, 1 attempts in 17 secs): "
        "user=<test>, method=PLAIN, rip=192.0.2.13, lip=203.0.113.17, session=<YADINsQCDs5BH8Pg>",
        "Dec 03 15:51:43 pop3-login: Info: Disconnected: Connection closed (auth failed, 1 attempts in 2 secs): "
        "user=<u1>, method=PLAIN, rip=192.0.2.6, lip=127.0.0.1, session=<x>",
        "Apr 23 21:59:01 mail imapd: LOGIN FAILED, user=sales@example.com, ip=[::ffff:192.0.2.4]",
        "Apr 17 19:17:12 mail imapd-ssl: LOGIN FAILED, method=PLAIN, ip=[::ffff:192.0.2.4]",
        "Apr 27 09:00:00 mail pop3d: LOGIN FAILED, user=tester, ip=[::ffff:192.0.2.5], port=[255]",
        "Jan  4 21:51:05 mail cyrus/imap[5355]: badlogin: client.example [192.0.2.11] plaintext dave "
        "SASL(-13): authentication failure: checkpass failed",
        "Mar  8 05:25:21 mail imap[22130]: badlogin: [192.0.2.4] plain [SASL(-13): authentication failure: "
        "Password verification failed]",
    };
    for (const auto& line : failed) {
        INFO(line);
        REQUIRE(opened_by(line).empty());
    }
}

TEST_CASE("a user name cannot forge a login or move the address taken", "[pop][hostile]") {
    // Failed logins whose user name holds the very text of a successful one.
    // Matching anywhere in the line (the old patterns) opened relay for
    // 203.0.113.66, the attacker's own address, with any password.
    const std::string injected = "pop3-login: Login: user=<x>, method=PLAIN, rip=203.0.113.66, lip=192.0.2.1";
    const std::vector<std::string> forged = {
        // What Dovecot 2.3.19 wrote for a client that sent this name (e2e_pop_log_follower).
        "Dec 03 16:36:25 pop3-login: Info: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 1 "
        "secs): user=<pop3-login: Info: Login: user=<x>, method=PLAIN, rip=127.0.0.66, lip=127.0.0.1>, method=PLAIN, "
        "rip=127.0.0.67, lip=127.0.0.1, session=<dtpCXL1hObV/AABD>",
        "Dec  3 15:51:43 mail dovecot: pop3-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<" +
            injected + ">, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, session=<q454Xu/vMwBZApgg>",
        "Dec 03 15:51:43 pop3-login: Info: Aborted login (auth failed, 1 attempts in 2 secs): user=<pop3-login: "
        "Info: Login: user=<x>, method=PLAIN, rip=203.0.113.66, lip=1>, method=PLAIN, rip=198.51.100.7, "
        "lip=192.0.2.1, session=<x>",
        // The user name of the brief: ">, method=PLAIN, rip=1.2.3.4, lip=" inside a failed line.
        "Dec  3 15:51:43 mail dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<u1>, "
        "method=PLAIN, rip=1.2.3.4, lip=>, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, session=<x>",
        "Dec  3 15:51:43 mail pop3d: LOGIN FAILED, user=courierpop3login: LOGIN, user=x, ip=[203.0.113.66], "
        "port=[1], ip=[::ffff:198.51.100.7]",
        "Dec  3 15:51:43 mail imapd: LOGIN FAILED, user=x pop3d: LOGIN, user=x, ip=[203.0.113.66], port=[1], "
        "ip=[::ffff:198.51.100.7], port=[41234]",
        "Jan  4 21:51:05 mail cyrus/pop3[5355]: badlogin: client.example [198.51.100.7] plaintext pop3[1]: login: h "
        "[203.0.113.66] x plaintext User logged in SASL(-13): authentication failure: checkpass failed",
        // A Dovecot mail process's line names the user first of all; with
        // a space in the name, what follows could look like a header.
        "Dec 03 15:51:43 imap(x pop3-login: Info: Login: user=<y>, method=PLAIN, rip=203.0.113.66, lip=1, z)"
        "<4242><lJx0Oo7WXti3b7xe>: Info: Disconnected: Logged out in=10 out=20",
        // Another program logging a client's words (a HELO name).
        "Dec  3 15:51:43 mail postfix/smtpd[1234]: NOQUEUE: reject: RCPT from unknown[198.51.100.7]: 554 5.7.1 "
        "<x@example.org>: Relay access denied; helo=<dovecot: imap-login: Login: user=<x>, method=PLAIN, "
        "rip=203.0.113.66, lip=1>",
    };
    for (const auto& line : forged) {
        INFO(line);
        REQUIRE(opened_by(line).empty());
    }

    // A successful login under such a name (where the server allows one):
    // the address is the server's rip at the end, never one inside the name.
    REQUIRE(opened_by("Dec  3 15:51:43 mail dovecot: pop3-login: Login: user=<u1>, method=PLAIN, rip=1.2.3.4, "
                      "lip=>, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, mpid=1, secured, session=<x>") ==
            "u1>, method=PLAIN, rip=1.2.3.4, lip=@198.51.100.7");
    REQUIRE(opened_by("Dec 03 15:51:43 pop3-login: Info: Login: user=<x>, method=PLAIN, rip=203.0.113.66, lip=1, "
                      "mpid=1, secured, session=<a>>, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1, mpid=2, "
                      "secured, session=<b>")
                .ends_with("@198.51.100.7"));
    REQUIRE(opened_by("Dec  3 15:51:43 mail pop3d: LOGIN, user=x, ip=[203.0.113.66], port=[1], ip=[::ffff:198.51.100.7], "
                      "port=[41234], protocol=POP3") == "x, ip=[203.0.113.66], port=[1]@198.51.100.7");
    REQUIRE(opened_by("Dec  3 15:51:43 mail cyrus/imap[7]: login: [198.51.100.7] x [203.0.113.66] y plaintext "
                      "User logged in SESSIONID=<s>") == "x [203.0.113.66] y@198.51.100.7");
}

TEST_CASE("lines of 30,000 bytes and of 1 MB are read without a crash", "[pop][hostile]") {
    // std::regex recursed once per character here and overflowed the stack
    // (SIGSEGV: the whole daemon, milter and policy service with it).
    std::string crafted = "Dec  3 15:51:43 mail dovecot: pop3-login: Login: user=<" + std::string(30000, 'a');
    REQUIRE(opened_by(crafted).empty());
    REQUIRE(opened_by(crafted + ">, method=PLAIN, rip=198.51.100.1, lip=192.0.2.1").ends_with("@198.51.100.1"));
    std::string spaces = "Dec  3 15:51:43 mail cyrus/pop3[1]: login: h [198.51.100.1] " + std::string(30000, ' ');
    REQUIRE(opened_by(spaces).empty());

    TempFile f;
    std::vector<std::string> seen;
    LoginLogFollower follower(f.path, defaults(), [&](const LoginSeen& s) { seen.push_back(s.user + "@" + s.address); });
    follower.poll_once();
    // 1 MB in one line, its end a success line: skipped whole, the tail
    // after the first 8 KB never read as a line of its own.
    std::string tail = "Dec  3 15:51:43 mail dovecot: imap-login: Login: user=<x>, method=PLAIN, rip=203.0.113.66, "
                       "lip=192.0.2.1, mpid=1, TLS, session=<a>";
    f.append(std::string((1 << 20) - tail.size(), 'b') + tail + "\n");
    f.append(crafted + "\n");
    f.append(dovecot_login("after", "192.0.2.20"));
    follower.poll_once();
    REQUIRE(seen == std::vector<std::string>{"after@192.0.2.20"});
    REQUIRE(follower.long_lines_skipped() == 2);
    // A line just at the limit is still read.
    std::string at_limit = dovecot_login("edge", "192.0.2.21");
    at_limit.insert(at_limit.find("edge"), LoginLogFollower::max_line_bytes - at_limit.size() + 1, 'e');
    f.append(at_limit);
    follower.poll_once();
    REQUIRE(seen.size() == 2);
    REQUIRE(seen.back().ends_with("@192.0.2.21"));
    REQUIRE(follower.long_lines_skipped() == 2);
}

TEST_CASE("an admin's pattern names its program, needs %a and must be a regular expression", "[pop]") {
    auto error_of = [](const std::string& text) {
        auto compiled = LoginPattern::compile(text);
        return compiled ? std::string() : compiled.error();
    };
    REQUIRE(error_of("myimapd: Login: user=<%u>").find("no %a") == 0);
    REQUIRE(error_of("myimapd: rip=%a (unclosed").find("not a regular expression") == 0);
    REQUIRE(error_of("myimapd: %a %a") == "%a appears twice");
    REQUIRE(error_of("Login user=%u rip=%a").find("no program") == 0);
    REQUIRE(error_of(": rip=%a").find("no program") == 0);
    REQUIRE(error_of("my%a: ok").find("%u and %a belong in the message") == 0);
    REQUIRE(error_of("imap{2,1}d: ok %a").find("not a regular expression (program)") == 0);

    // Groups of the admin's own, and alternatives in the program.
    auto p = *LoginPattern::compile(R"(myimapd|(pop3|imap)d: ok (user|login)=%u from \[(x)?%a\])");
    auto seen = p.match("Dec  3 15:51:43 mail imapd[77]: ok login=erin from [192.0.2.44]");
    REQUIRE(seen);
    REQUIRE(seen->user == "erin");
    REQUIRE(seen->address == "192.0.2.44");
    REQUIRE(p.match("Dec  3 15:51:43 mail myimapd: ok user=erin from [192.0.2.44]"));
    // The program is matched whole: "imapd" is not "xmyimapd"; and the
    // message from its start: a prefix of the admin's does not match.
    REQUIRE_FALSE(p.match("Dec  3 15:51:43 mail xmyimapd: ok user=erin from [192.0.2.44]"));
    REQUIRE_FALSE(p.match("Dec  3 15:51:43 mail imapd: not ok login=erin from [192.0.2.44]"));
    // A program written with its [pid], as in the old Cyrus pattern.
    auto pid = *LoginPattern::compile(R"(pop3\[\d+\]: login: \S+ \[%a\] %u \S+ User logged in)");
    REQUIRE(pid.match("Dec  3 15:51:43 mail pop3[4242]: login: h.example [192.0.2.11] dave plaintext User logged in")
                ->user == "dave");
}

TEST_CASE("a bad pattern in the config names the file, the line and the key", "[pop][config]") {
    auto l = load_config_text("[relay]\nlocal_domains = [\"example.test\"]\nallow_pop_before_smtp = true\n"
                              "[pop_before_smtp]\nlog_file = \"/var/log/mail.log\"\n"
                              "log_patterns = ['dovecot: Login: user=<%u>']\n",
                              "test.toml");
    REQUIRE_FALSE(l.config);
    REQUIRE(l.errors.size() == 1);
    std::string e = l.errors[0].to_string();
    INFO(e);
    REQUIRE(e.find("test.toml:6:") == 0);
    REQUIRE(e.find("key 'pop_before_smtp.log_patterns'") != std::string::npos);
    REQUIRE(e.find("no %a") != std::string::npos);
}

TEST_CASE("the follower reads new logins only, across rename and truncation", "[pop]") {
    TempFile f;
    f.append(dovecot_login("old", "192.0.2.1"));  // before the start: ignored
    std::vector<std::string> seen;
    LoginLogFollower follower(f.path, defaults(), [&](const LoginSeen& s) { seen.push_back(s.user + "@" + s.address); });
    follower.poll_once();
    REQUIRE(seen.empty());

    f.append(dovecot_login("u1", "192.0.2.5"));
    f.append("pop3-login: Info: Login: user=<half");  // a line still being written
    follower.poll_once();
    REQUIRE(seen == std::vector<std::string>{"u1@192.0.2.5"});
    f.append(">, method=PLAIN, rip=192.0.2.6, lip=127.0.0.1\n");
    follower.poll_once();
    REQUIRE(seen.back() == "half@192.0.2.6");

    // Rotation by rename: a line written to the old file just before is not lost.
    f.append(dovecot_login("late", "192.0.2.7"));
    std::filesystem::rename(f.path, f.path + ".1");
    f.append(dovecot_login("new", "192.0.2.8"));
    follower.poll_once();
    REQUIRE(seen.size() == 4);
    REQUIRE(seen[2] == "late@192.0.2.7");
    REQUIRE(seen[3] == "new@192.0.2.8");

    // copytruncate: the file shrinks under the follower.
    std::filesystem::resize_file(f.path, 0);
    f.append(dovecot_login("after", "192.0.2.9"));
    follower.poll_once();
    REQUIRE(seen.back() == "after@192.0.2.9");

    // copytruncate again, noticed late: the new file is already longer than
    // the old one was, and ends with the very same bytes.
    std::filesystem::resize_file(f.path, 0);
    f.append(dovecot_login("first", "192.0.2.10"));
    f.append(dovecot_login("after", "192.0.2.9"));
    follower.poll_once();
    REQUIRE(seen[seen.size() - 2] == "first@192.0.2.10");
    REQUIRE(seen.back() == "after@192.0.2.9");

    // Removed and created again later.
    std::filesystem::remove(f.path);
    follower.poll_once();
    f.append(dovecot_login("again", "2001:db8::9"));
    follower.poll_once();
    REQUIRE(seen.back() == "again@2001:db8::9");
}

TEST_CASE("the admin socket's requests open and show windows, and refuse what is malformed", "[pop]") {
    auto s = base_settings();
    s.relay.allow_pop_before_smtp = true;
    Harness h(s);
    // The harness owns its engine; the holder only points at it.
    EngineHolder holder(std::shared_ptr<DecisionEngine>(&h.engine, [](DecisionEngine*) {}));
    int reloads = 0;
    AdminServer::Hooks hooks;
    hooks.reload = [&] {
        using R = Result<ReloadOutcome>;
        return ++reloads == 1 ? R(ReloadOutcome{{"relay.mode"}, {"listen.policy"}}) : R::failure("f.toml:3: key 'x': bad");
    };
    AdminServer admin(holder, hooks);
    auto ask = [&](const std::string& request) { return nlohmann::json::parse(admin.handle(request)); };
    auto ok = [&](const std::string& request) { return ask(request).value("ok", false); };
    REQUIRE(ok("ping"));
    REQUIRE(ask("pop grant 192.0.2.5 user=u1 for=10m").value("text", "").rfind("window for 192.0.2.5", 0) == 0);
    REQUIRE(ask("pop show 192.0.2.5")["window"]["user"] == "u1");
    REQUIRE(ask("pop show 192.0.2.6")["window"].is_null());
    REQUIRE_FALSE(ok("pop grant not-an-ip"));
    REQUIRE_FALSE(ok("pop grant 192.0.2.5 for=ten"));
    REQUIRE_FALSE(ok("pop grant 192.0.2.5 color=red"));
    REQUIRE(ask("reboot").value("error", "").rfind("unknown command", 0) == 0);
    REQUIRE_FALSE(ok(""));
    auto reloaded = ask("reload");
    REQUIRE(reloaded["ok"] == true);
    REQUIRE(reloaded["applied"] == nlohmann::json{"relay.mode"});
    REQUIRE(reloaded["needs_restart"] == nlohmann::json{"listen.policy"});
    REQUIRE(ask("reload")["error"] == "f.toml:3: key 'x': bad");
    REQUIRE_FALSE(ok("pop list"));  // no list hook here
    // The window opens relay for that client.
    auto c = h.connect("192.0.2.5");
    h.mail(c, "a@example.org");
    REQUIRE(h.rcpt(c, "x@foreign.example").verdict == Verdict::permit);

    Harness h2(base_settings());
    EngineHolder holder2(std::shared_ptr<DecisionEngine>(&h2.engine, [](DecisionEngine*) {}));
    AdminServer admin2(holder2, {});
    REQUIRE(nlohmann::json::parse(admin2.handle("pop grant 192.0.2.5"))["error"].get<std::string>().find(
                "allow_pop_before_smtp") != std::string::npos);
}

TEST_CASE("ip show reports a client's counters and block; ip unblock lifts it", "[pop][admin]") {
    auto s = base_settings();
    s.limits.message_rate.max = 5;
    s.limits.unknown_recipients.max = 2;
    Harness h(s);
    EngineHolder holder(std::shared_ptr<DecisionEngine>(&h.engine, [](DecisionEngine*) {}));
    AdminServer admin(holder, {});
    auto c = h.connect("192.0.2.9");
    h.mail(c, "a@example.org");
    h.engine.on_rcpt(c, RcptFacts{"nobody1@example.test", true, "5.1.1", ""});
    h.engine.on_rcpt(c, RcptFacts{"nobody2@example.test", true, "5.1.1", ""});
    auto shown = nlohmann::json::parse(admin.handle("ip show 192.0.2.9"));
    REQUIRE(shown["ok"] == true);
    REQUIRE(shown["connections"]["count"] == 1);
    REQUIRE(shown["messages"]["limit"] == 5);
    REQUIRE(shown["blocked"]["seconds_left"] == 3600);
    REQUIRE(shown["text"].get<std::string>().find("blocked (directory harvest)") != std::string::npos);
    auto lifted = nlohmann::json::parse(admin.handle("ip unblock 192.0.2.9"));
    REQUIRE(lifted["was_blocked"] == true);
    REQUIRE(nlohmann::json::parse(admin.handle("ip show 192.0.2.9"))["blocked"].is_null());
    REQUIRE(nlohmann::json::parse(admin.handle("ip show nonsense"))["ok"] == false);
}

TEST_CASE("an IPv6 login opens relay for its /64, and a window never lifts the limits", "[pop]") {
    auto s = base_settings();
    s.relay.allow_pop_before_smtp = true;
    s.relay.pop_ipv6_prefix = 64;
    s.limits.message_rate.max = 1;
    Harness h(s);
    REQUIRE(h.engine.open_pop_window(ip("2001:db8:5::1"), "u1", std::nullopt));
    auto same_net = h.connect("2001:db8:5::abcd");
    REQUIRE_FALSE(h.mail(same_net).refused());
    REQUIRE(h.rcpt(same_net, "x@foreign.example").verdict == Verdict::permit);
    h.engine.on_abort(same_net);  // its transaction in flight held the only slot
    auto other_net = h.connect("2001:db8:6::1");
    h.mail(other_net);
    REQUIRE(h.rcpt(other_net, "x@foreign.example").rule == "relay");
    REQUIRE(h.rcpt(other_net, "x@foreign.example").refused());

    auto c = h.connect("2001:db8:5::abcd");
    REQUIRE_FALSE(h.message(c, "x@foreign.example").refused());
    Decision second = h.message(c, "x@foreign.example");
    REQUIRE(second.refused());
    REQUIRE(second.rule == "message_rate");

    // The window lasts relay.pop_window from the login, then relay is closed again.
    h.clock.advance(s.relay.pop_window);
    auto late = h.connect("2001:db8:5::abcd");
    h.mail(late);
    REQUIRE(h.rcpt(late, "x@foreign.example").refused());
}
