// POP-before-SMTP logins: the log patterns (successful logins only, IPv4 and
// IPv6), the log follower across rotation and truncation, and the admin
// socket's requests through a real engine.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "harness.h"
#include "plugin/admin_server.h"
#include "plugin/login_log_follower.h"
#include "policy/login_pattern.h"

using namespace relayguard;
using namespace relayguard::test;

namespace {

std::vector<LoginPattern> defaults() {
    std::vector<LoginPattern> out;
    for (const auto& text : default_login_patterns()) out.push_back(std::get<LoginPattern>(LoginPattern::compile(text)));
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

}  // namespace

TEST_CASE("the default patterns read successful logins of Dovecot, Courier and Cyrus", "[pop]") {
    auto dovecot = first_match(dovecot_login("u1", "192.0.2.5"));
    REQUIRE(dovecot);
    REQUIRE(dovecot->user == "u1");
    REQUIRE(dovecot->address == "192.0.2.5");
    auto imap6 = first_match("imap-login: Login: user=<bob@example.test>, method=PLAIN, rip=2001:db8::7, lip=::1, mpid=1");
    REQUIRE(imap6);
    REQUIRE(imap6->user == "bob@example.test");
    REQUIRE(imap6->address == "2001:db8::7");
    auto courier = first_match("courierpop3login: LOGIN, user=carol, ip=[::ffff:192.0.2.9], port=[41234]");
    REQUIRE(courier);
    REQUIRE(courier->user == "carol");
    REQUIRE(IpAddress::parse(courier->address)->to_string() == "192.0.2.9");
    auto cyrus = first_match("pop3[4242]: login: client.example [192.0.2.11] dave plaintext User logged in SESSIONID=<x>");
    REQUIRE(cyrus);
    REQUIRE(cyrus->user == "dave");
    REQUIRE(cyrus->address == "192.0.2.11");
}

TEST_CASE("failed logins match no default pattern", "[pop]") {
    REQUIRE_FALSE(first_match("pop3-login: Info: Disconnected: Connection closed (auth failed, 1 attempts in 2 secs): "
                              "user=<u1>, method=PLAIN, rip=192.0.2.6, lip=127.0.0.1, session=<x>"));
    REQUIRE_FALSE(first_match("pop3-login: Info: Aborted login (auth failed, 1 attempts in 2 secs): user=<u1>, "
                              "method=PLAIN, rip=192.0.2.6, lip=127.0.0.1"));
    REQUIRE_FALSE(first_match("courierpop3login: LOGIN FAILED, user=carol, ip=[::ffff:192.0.2.9]"));
    REQUIRE_FALSE(first_match("pop3[4242]: badlogin: client.example [192.0.2.11] plaintext dave SASL(-13): authentication failure"));
}

TEST_CASE("an admin's pattern needs %a and must be a regular expression", "[pop]") {
    REQUIRE(std::holds_alternative<std::string>(LoginPattern::compile("Login: user=<%u>")));
    REQUIRE(std::holds_alternative<std::string>(LoginPattern::compile("rip=%a (unclosed")));
    REQUIRE(std::holds_alternative<std::string>(LoginPattern::compile("%a %a")));
    // Groups of the admin's own come before the placeholders and are counted.
    auto p = std::get<LoginPattern>(LoginPattern::compile(R"((pop3|imap)d: ok (user|login)=%u from \[(x)?%a\])"));
    auto seen = p.match("imapd: ok login=erin from [192.0.2.44]");
    REQUIRE(seen);
    REQUIRE(seen->user == "erin");
    REQUIRE(seen->address == "192.0.2.44");
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
    hooks.reload = [&] { return ++reloads == 1 ? std::string() : std::string("f.toml:3: key 'x': bad"); };
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
    REQUIRE(ok("reload"));
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
