// Authentications reported from outside the SMTP session (Dovecot's auth
// policy requests, an MTA's log): the brute-force block, the failed-AUTH
// bar on trusted groups across sessions, account alerts and POP-before-SMTP
// windows from mailbox logins.
#include <catch2/catch.hpp>

#include "harness.h"
#include "policy/login_pattern.h"

using namespace relayguard;
using namespace relayguard::test;
using namespace std::chrono_literals;

namespace {

AuthReport failure(const std::string& addr, const std::string& user, const std::string& pwhash,
                   const std::string& protocol = "smtp") {
    return AuthReport{ip(addr), user, pwhash, protocol, false};
}

PolicySettings guard_settings(std::uint32_t max) {
    auto s = base_settings();
    s.limits.auth_failures.reported = true;  // a source is configured
    s.limits.auth_failures.max = max;
    s.limits.auth_failures.block_time = 1h;
    return s;
}

}  // namespace

TEST_CASE("failed logins: the Nth distinct one blocks the client at connect, RCPT and login", "[auth]") {
    Harness h(guard_settings(5));
    for (int i = 0; i < 4; ++i) {
        auto out = h.engine.on_auth_report(failure("192.0.2.9", "u1", "hash" + std::to_string(i)));
        REQUIRE(out.counted);
        REQUIRE_FALSE(out.decision.refused());
    }
    auto open = h.connect("192.0.2.9");
    h.mail(open);
    auto fifth = h.engine.on_auth_report(failure("192.0.2.9", "u2", "hash0"));
    REQUIRE(fifth.decision.refused());
    REQUIRE(fifth.decision.rule == "auth_failures");
    REQUIRE(fifth.decision.detail == "failed_logins=5 limit=5 blocked_for=3600s");

    Decision at_connect;
    h.connect("192.0.2.9", &at_connect);
    REQUIRE(at_connect.verdict == Verdict::tempfail);
    REQUIRE(at_connect.rule == "auth_failures");
    REQUIRE(at_connect.reply == SmtpReply{450, "4.7.1", "Client blocked: too many failed logins; try again later"});
    // A session already open is refused at its next recipient.
    REQUIRE(h.rcpt(open, "user@example.test").rule == "auth_failures");
    REQUIRE(h.engine.on_auth_attempt(ip("192.0.2.9")).rule == "auth_failures");
    // Another address is untouched, at connect and at login.
    Decision other;
    h.connect("192.0.2.10", &other);
    REQUIRE_FALSE(other.refused());
    REQUIRE_FALSE(h.engine.on_auth_attempt(ip("192.0.2.10")).refused());
    // The block ends after block_time.
    h.clock.advance(1h);
    REQUIRE_FALSE(h.engine.on_auth_attempt(ip("192.0.2.9")).refused());
}

TEST_CASE("failed logins: one stale password retried is one failure; without a hash each counts", "[auth]") {
    Harness h(guard_settings(3));
    for (int i = 0; i < 20; ++i) {
        REQUIRE_FALSE(h.engine.on_auth_report(failure("192.0.2.9", "phone-user", "stale")).decision.refused());
    }
    REQUIRE_FALSE(h.engine.on_auth_attempt(ip("192.0.2.9")).refused());
    // Case does not make another account.
    h.engine.on_auth_report(failure("192.0.2.9", "Phone-User", "stale"));
    REQUIRE_FALSE(h.engine.on_auth_attempt(ip("192.0.2.9")).refused());
    // A source that gives no password hash (a Cyrus SASL log line): each failure is one.
    for (int i = 0; i < 2; ++i) REQUIRE_FALSE(h.engine.on_auth_report(failure("192.0.2.20", "", "")).decision.refused());
    REQUIRE(h.engine.on_auth_report(failure("192.0.2.20", "", "")).decision.refused());
}

TEST_CASE("failed logins: trusted and exempt clients are never blocked, warn mode only logs", "[auth]") {
    auto settings = guard_settings(2);
    settings.limits.exempt = group("exempt", {"198.51.100.0/24"});
    SECTION("trusted group") {
        Harness h(settings);
        for (int i = 0; i < 5; ++i) h.engine.on_auth_report(failure("10.0.0.5", "u", std::to_string(i)));
        REQUIRE_FALSE(h.engine.on_auth_attempt(ip("10.0.0.5")).refused());
        Decision d;
        h.connect("10.0.0.5", &d);
        REQUIRE_FALSE(d.refused());
    }
    SECTION("exempt group") {
        Harness h(settings);
        for (int i = 0; i < 5; ++i) REQUIRE_FALSE(h.engine.on_auth_report(failure("198.51.100.3", "u", std::to_string(i))).counted);
        REQUIRE_FALSE(h.engine.on_auth_attempt(ip("198.51.100.3")).refused());
    }
    SECTION("warn mode") {
        settings.limits.auth_failures.mode = LimitMode::warn;
        Harness h(settings);
        h.engine.on_auth_report(failure("192.0.2.9", "u", "a"));
        auto out = h.engine.on_auth_report(failure("192.0.2.9", "u", "b"));
        REQUIRE_FALSE(out.decision.refused());
        REQUIRE(out.decision.warnings.size() == 1);
        REQUIRE(out.decision.warnings[0].rule == "auth_failures");
        REQUIRE_FALSE(h.engine.on_auth_attempt(ip("192.0.2.9")).refused());
    }
    SECTION("off") {
        settings.limits.auth_failures.max.reset();
        Harness h(settings);
        for (int i = 0; i < 5; ++i) REQUIRE_FALSE(h.engine.on_auth_report(failure("192.0.2.9", "u", std::to_string(i))).counted);
        Decision d;
        h.connect("192.0.2.9", &d);
        REQUIRE_FALSE(d.refused());
    }
}

TEST_CASE("failed logins are counted per network when the limits aggregate", "[auth]") {
    auto settings = guard_settings(3);
    settings.limits.ipv4_prefix = 24;
    Harness h(settings);
    h.engine.on_auth_report(failure("192.0.2.1", "u", "a"));
    h.engine.on_auth_report(failure("192.0.2.2", "u", "b"));
    REQUIRE(h.engine.on_auth_report(failure("192.0.2.3", "u", "c")).decision.refused());
    REQUIRE(h.engine.on_auth_attempt(ip("192.0.2.200")).refused());
    REQUIRE_FALSE(h.engine.on_auth_attempt(ip("192.0.3.1")).refused());
}

TEST_CASE("an account failing from many networks raises one alert and blocks no one", "[auth]") {
    auto settings = guard_settings(10);
    settings.limits.auth_failures.account_networks = 3;
    Harness h(settings);
    std::vector<bool> alerts;
    for (int i = 1; i <= 5; ++i) {
        auto out = h.engine.on_auth_report(failure("203.0.113." + std::to_string(i), "ceo", "guess" + std::to_string(i)));
        REQUIRE(out.account_networks == static_cast<std::uint32_t>(std::min(i, 3)));
        alerts.push_back(out.account_alert);
        REQUIRE_FALSE(out.decision.refused());
    }
    REQUIRE(alerts == std::vector<bool>{false, false, true, false, false});
    // The owner still logs in from home.
    REQUIRE_FALSE(h.engine.on_auth_attempt(ip("192.0.2.50")).refused());
}

TEST_CASE("without a source of logins no store is asked for blocks or bars", "[auth]") {
    auto settings = base_settings();
    settings.limits.auth_failures.max = 10;
    settings.limits.auth_failures.reported = false;
    // Limits that count per client make entries of their own.
    settings.limits.connections.max.reset();
    settings.limits.unknown_recipients.max.reset();
    Harness h(settings);
    auto before = h.store.client_count();
    auto s = h.connect("192.0.2.1");
    h.mail(s);
    h.rcpt(s, "a@example.test");
    REQUIRE(h.store.client_count() == before);  // not even an entry made
}

TEST_CASE("a reported failed AUTH bars the client's trusted group for the window", "[auth][relay]") {
    auto settings = base_settings();
    settings.limits.auth_failures.reported = true;
    settings.relay.auth_failure_window = 10min;
    Harness h(settings);
    auto before = h.connect("10.0.0.5");
    h.mail(before);
    REQUIRE(h.rcpt(before, "a@elsewhere.example").verdict == Verdict::permit);

    auto out = h.engine.on_auth_report(failure("10.0.0.5", "mallory", "x"));
    REQUIRE(out.groups_barred_until == h.clock.now() + 10min);
    auto s = h.connect("10.0.0.5");
    h.mail(s);
    REQUIRE(h.rcpt(s, "local@example.test").verdict == Verdict::proceed);  // local mail still goes
    Decision d = h.rcpt(s, "a@elsewhere.example");
    REQUIRE(d.verdict == Verdict::reject);
    REQUIRE(d.detail.find("failed AUTH disables trusted group internal") != std::string::npos);
    // Another address of the group still relays.
    auto neighbour = h.connect("10.0.0.6");
    h.mail(neighbour);
    REQUIRE(h.rcpt(neighbour, "a@elsewhere.example").verdict == Verdict::permit);
    // A successful AUTH in the session relays as an SMTP-AUTH user.
    auto authed = h.connect("10.0.0.5");
    h.engine.on_auth(authed, AuthFacts{true, "alice", "PLAIN"});
    h.mail(authed);
    REQUIRE(h.rcpt(authed, "a@elsewhere.example").verdict == Verdict::permit);
    // After the window the group counts again.
    h.clock.advance(10min);
    auto later = h.connect("10.0.0.5");
    h.mail(later);
    REQUIRE(h.rcpt(later, "a@elsewhere.example").verdict == Verdict::permit);

    SECTION("a failed IMAP or POP3 login bars nothing: the rule is about SMTP AUTH") {
        Harness office(settings);
        REQUIRE_FALSE(office.engine.on_auth_report(failure("10.0.0.7", "m", "x", "imap")).groups_barred_until);
        auto t = office.connect("10.0.0.7");
        office.mail(t);
        REQUIRE(office.rcpt(t, "a@elsewhere.example").verdict == Verdict::permit);
    }
    SECTION("not when failed AUTH may not bar groups") {
        settings.relay.auth_failure_disables_groups = false;
        Harness lenient(settings);
        REQUIRE_FALSE(lenient.engine.on_auth_report(failure("10.0.0.5", "m", "x")).groups_barred_until);
        auto t = lenient.connect("10.0.0.5");
        lenient.mail(t);
        REQUIRE(lenient.rcpt(t, "a@elsewhere.example").verdict == Verdict::permit);
    }
}

TEST_CASE("a successful POP3 or IMAP login reported opens the POP-before-SMTP window; SMTP's does not", "[auth][pop]") {
    auto settings = base_settings();
    settings.relay.allow_pop_before_smtp = true;
    settings.relay.pop_window = 5min;
    Harness h(settings);
    auto smtp = h.engine.on_auth_report(AuthReport{ip("192.0.2.30"), "u1", "h", "smtp", true});
    REQUIRE_FALSE(smtp.pop_window_until);
    auto s = h.connect("192.0.2.30");
    h.mail(s);
    REQUIRE(h.rcpt(s, "a@elsewhere.example").verdict == Verdict::reject);
    auto pop = h.engine.on_auth_report(AuthReport{ip("192.0.2.30"), "u1", "h", "pop3", true});
    REQUIRE(pop.pop_window_until == h.clock.now() + 5min);
    auto t = h.connect("192.0.2.30");
    h.mail(t);
    REQUIRE(h.rcpt(t, "a@elsewhere.example").verdict == Verdict::permit);
    // A failed IMAP login opens nothing.
    REQUIRE_FALSE(h.engine.on_auth_report(AuthReport{ip("192.0.2.31"), "u1", "h", "imap", false}).pop_window_until);

    settings.relay.allow_pop_before_smtp = false;
    Harness off(settings);
    REQUIRE_FALSE(off.engine.on_auth_report(AuthReport{ip("192.0.2.30"), "u1", "h", "imap", true}).pop_window_until);
}

TEST_CASE("the default failure patterns read Postfix's and Sendmail's failed AUTH lines, and nothing else", "[auth][log]") {
    std::vector<LoginPattern> patterns;
    for (const auto& text : default_auth_failure_patterns()) patterns.push_back(*LoginPattern::compile(text));
    auto seen = [&](std::string_view line) -> std::optional<LoginSeen> {
        for (const auto& p : patterns) {
            if (auto s = p.match(line)) return s;
        }
        return std::nullopt;
    };
    auto a = seen("Dec  4 08:31:02 mx postfix/smtpd[4242]: warning: unknown[192.0.2.7]: SASL LOGIN authentication "
                  "failed: UGFzc3dvcmQ6");
    REQUIRE(a);
    REQUIRE((a->address == "192.0.2.7" && a->user.empty()));
    auto b = seen("2026-12-04T08:31:02.123456+00:00 mx postfix/submission/smtpd[77]: warning: "
                  "client.example[2001:db8::7]: SASL PLAIN authentication failed: authentication failure, "
                  "sasl_username=carol@example.org");
    REQUIRE(b);
    REQUIRE((b->address == "2001:db8::7" && b->user == "carol@example.org"));
    auto c = seen("Dec  4 08:31:02 mx sm-mta[99]: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): "
                  "authentication failure: checkpass failed, user=eve, relay=client.example [192.0.2.9]");
    REQUIRE(c);
    REQUIRE(c->address == "192.0.2.9");
    auto d = seen("Dec  4 08:31:02 mx sm-mta[99]: 0B48V2aa001234: AUTH failure (PLAIN): authentication failure (-13) "
                  "SASL(-13): user=x, relay=[IPv6:2001:db8::9]");
    REQUIRE(d);
    REQUIRE(d->address == "2001:db8::9");
    // A user name holding ", relay=[...]" does not choose the address: Sendmail's own comes last.
    auto e = seen("Dec  4 08:31:02 mx sm-mta[99]: AUTH failure (LOGIN): failed, user=a, relay=[198.51.100.1], "
                  "relay=[192.0.2.10]");
    REQUIRE(e);
    REQUIRE(e->address == "192.0.2.10");
    REQUIRE_FALSE(seen("Dec  4 08:31:02 mx postfix/smtpd[1]: warning: unknown[192.0.2.7]: SASL LOGIN authentication "
                       "succeeded"));
    REQUIRE_FALSE(seen("Dec  4 08:31:02 mx evil: postfix/smtpd[1]: warning: unknown[192.0.2.7]: SASL LOGIN "
                       "authentication failed: x"));
    REQUIRE_FALSE(seen("Dec  4 08:31:02 mx postfix/smtp[1]: warning: unknown[192.0.2.7]: SASL LOGIN authentication "
                       "failed: x"));
}
