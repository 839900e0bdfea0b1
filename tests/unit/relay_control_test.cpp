// Relay control: local domains for everyone, relaying only for trusted
// groups, AUTH users and POP-before-SMTP windows, or everyone in open mode.
#include <catch2/catch.hpp>

#include "harness.h"

using namespace relayguard;
using namespace relayguard::test;
using namespace std::chrono_literals;

TEST_CASE("anyone may send to a local domain and nobody unknown may relay", "[relay]") {
    Harness h(base_settings());
    auto s = h.connect("192.0.2.1");
    REQUIRE(h.mail(s).verdict == Verdict::proceed);
    Decision local = h.rcpt(s, "<user@EXAMPLE.test>");
    REQUIRE(local.verdict == Verdict::proceed);
    Decision relay = h.rcpt(s, "victim@elsewhere.example");
    REQUIRE(relay.verdict == Verdict::reject);
    REQUIRE(relay.rule == "relay");
    REQUIRE(relay.reply == SmtpReply{554, "5.7.1", "Relay access denied"});
    // A subdomain is not local unless configured so.
    REQUIRE(h.rcpt(s, "user@sub.example.test").verdict == Verdict::reject);
}

TEST_CASE("relay tricks through a local domain are treated as relaying", "[relay]") {
    Harness h(base_settings());
    auto s = h.connect("192.0.2.1");
    h.mail(s);
    for (const char* trick : {"victim%elsewhere.example@example.test", "elsewhere.example!victim@example.test",
                              "\"victim@elsewhere.example\"@example.test", "@example.test:victim@elsewhere.example"}) {
        INFO(trick);
        REQUIRE(h.rcpt(s, trick).verdict == Verdict::reject);
    }
    // A bare local part stays here.
    REQUIRE(h.rcpt(s, "postmaster").verdict == Verdict::proceed);
}

TEST_CASE("trusted groups relay, IPv4 and IPv6", "[relay]") {
    Harness h(base_settings());
    auto v4 = h.connect("10.9.8.7");
    h.mail(v4);
    Decision d = h.rcpt(v4, "a@elsewhere.example");
    REQUIRE(d.verdict == Verdict::permit);
    REQUIRE(d.detail.find("internal") != std::string::npos);
    auto v6 = h.connect("2001:db8:1:abcd::25");
    h.mail(v6);
    REQUIRE(h.rcpt(v6, "a@elsewhere.example").verdict == Verdict::permit);
    auto outside = h.connect("2001:db8:2::25");
    h.mail(outside);
    REQUIRE(h.rcpt(outside, "a@elsewhere.example").verdict == Verdict::reject);
}

TEST_CASE("SMTP-AUTH users relay when allowed", "[relay]") {
    auto settings = base_settings();
    Harness h(settings);
    auto s = h.connect("192.0.2.1");
    h.engine.on_mail(s, MailFacts{"alice@example.org", std::nullopt, "alice"});
    Decision d = h.rcpt(s, "a@elsewhere.example");
    REQUIRE(d.verdict == Verdict::permit);
    REQUIRE(d.detail == "sasl user alice");

    settings.relay.allow_sasl = false;
    Harness no_sasl(settings);
    auto t = no_sasl.connect("192.0.2.1");
    no_sasl.engine.on_mail(t, MailFacts{"alice@example.org", std::nullopt, "alice"});
    REQUIRE(no_sasl.rcpt(t, "a@elsewhere.example").verdict == Verdict::reject);
}

TEST_CASE("a failed AUTH stops the trusted group from being consulted", "[relay]") {
    auto settings = base_settings();
    Harness h(settings);
    auto s = h.connect("10.0.0.5");
    h.engine.on_auth(s, AuthFacts{false, "mallory", "PLAIN"});
    h.mail(s);
    Decision d = h.rcpt(s, "a@elsewhere.example");
    REQUIRE(d.verdict == Verdict::reject);
    REQUIRE(d.detail.find("failed AUTH") != std::string::npos);
    // A later success in the same session restores relay, by AUTH.
    h.engine.on_auth(s, AuthFacts{true, "alice", "PLAIN"});
    REQUIRE(h.rcpt(s, "a@elsewhere.example").verdict == Verdict::permit);

    settings.relay.auth_failure_disables_groups = false;
    Harness lenient(settings);
    auto t = lenient.connect("10.0.0.5");
    lenient.engine.on_auth(t, AuthFacts{false, "mallory", "PLAIN"});
    lenient.mail(t);
    REQUIRE(lenient.rcpt(t, "a@elsewhere.example").verdict == Verdict::permit);

    // When AUTH may not relay at all, a failed attempt is no reason to distrust the group.
    settings.relay.auth_failure_disables_groups = true;
    settings.relay.allow_sasl = false;
    Harness groups_only(settings);
    auto u = groups_only.connect("10.0.0.5");
    groups_only.engine.on_auth(u, AuthFacts{false, "x", "PLAIN"});
    groups_only.mail(u);
    REQUIRE(groups_only.rcpt(u, "a@elsewhere.example").verdict == Verdict::permit);
}

TEST_CASE("POP-before-SMTP opens relay for the window only", "[relay]") {
    auto settings = base_settings();
    settings.relay.allow_pop_before_smtp = true;
    Harness h(settings);
    h.pop.grant("192.0.2.44", "bob", h.clock.now() + 30min, h.clock.now());
    auto s = h.connect("192.0.2.44");
    h.mail(s);
    Decision d = h.rcpt(s, "a@elsewhere.example");
    REQUIRE(d.verdict == Verdict::permit);
    REQUIRE(d.detail.find("bob") != std::string::npos);
    h.clock.advance(30min);
    REQUIRE(h.rcpt(s, "a@elsewhere.example").verdict == Verdict::reject);

    settings.relay.allow_pop_before_smtp = false;
    Harness off(settings);
    off.pop.grant("192.0.2.44", "bob", off.clock.now() + 30min, off.clock.now());
    auto t = off.connect("192.0.2.44");
    off.mail(t);
    REQUIRE(off.rcpt(t, "a@elsewhere.example").verdict == Verdict::reject);
}

TEST_CASE("open mode relays for everyone", "[relay]") {
    auto settings = base_settings();
    settings.relay.mode = RelayMode::open;
    Harness h(settings);
    auto s = h.connect("198.51.100.1");
    h.mail(s);
    REQUIRE(h.rcpt(s, "a@elsewhere.example").verdict == Verdict::permit);
}
