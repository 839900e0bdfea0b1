// Compromised accounts: marked after logins from too many networks or a
// quota tried many times over, their mail held (not refused) from then on,
// the observer told once, and the admin's clear.
#include <catch2/catch.hpp>

#include "harness.h"

using namespace relayguard;
using namespace relayguard::test;
using namespace std::chrono_literals;

namespace {

struct Told final : AccountObserver {
    std::vector<std::string> marks;
    void account_compromised(const std::string& user, const std::string& reason, const IpAddress&) override {
        marks.push_back(user + ": " + reason);
    }
};

// A harness whose engine also keeps accounts.
struct AccountHarness {
    explicit AccountHarness(PolicySettings settings)
        : engine(std::move(settings), store, clock, &pop, nullptr, &accounts, &told) {}
    MemoryCounterStore store;
    MemoryPopWindowStore pop;
    MemoryAccountStore accounts;
    Told told;
    ManualClock clock;
    DecisionEngine engine;
    int next = 0;

    SessionState connect(const std::string& addr) {
        SessionState s;
        engine.on_connect(s, ConnectFacts{ip(addr), "", "c" + std::to_string(++next)});
        return s;
    }
    // MAIL, one RCPT, end of data, as `user`; the decisions at RCPT and end of data.
    std::pair<Decision, Decision> send(SessionState& s, const std::string& user) {
        Decision mail = engine.on_mail(s, MailFacts{user + "@example.test", std::nullopt, user});
        if (mail.refused()) return {mail, mail};
        Decision rcpt = engine.on_rcpt(s, RcptFacts{"friend@elsewhere.example", false, "", ""});
        return {rcpt, engine.on_eom(s, EomFacts{})};
    }
};

PolicySettings watched(std::uint32_t max_networks) {
    auto s = base_settings();
    s.limits.compromised_accounts.max_networks = max_networks;
    return s;
}

}  // namespace

TEST_CASE("logins from more networks than allowed mark the account; its mail is held from then on", "[compromised]") {
    AccountHarness h(watched(3));
    for (const char* addr : {"192.0.2.1", "198.51.100.1", "203.0.113.1", "192.0.2.77"}) {
        auto s = h.connect(addr);
        auto [rcpt, eom] = h.send(s, "u1");
        REQUIRE(rcpt.verdict == Verdict::permit);  // 192.0.2.77 is the /24 of the first
        REQUIRE(eom.verdict == Verdict::proceed);
    }
    REQUIRE(h.told.marks.empty());
    auto fourth = h.connect("100.64.0.1");
    auto [rcpt, eom] = h.send(fourth, "u1");
    REQUIRE(h.told.marks == std::vector<std::string>{"u1: logged in from 4 networks within 3600s (limit 3)"});
    REQUIRE(rcpt.verdict == Verdict::permit);  // relay stays open; the message is held at end of data
    REQUIRE(eom.verdict == Verdict::hold);
    // A local recipient is answered "hold" at once.
    auto local = h.connect("100.64.0.1");
    h.engine.on_mail(local, MailFacts{"u1@example.test", std::nullopt, "u1"});
    REQUIRE(h.engine.on_rcpt(local, RcptFacts{"someone@example.test", false, "", ""}).verdict == Verdict::hold);
    h.engine.on_abort(local);
    REQUIRE(eom.rule == "compromised_account");
    h.engine.note_held(fourth, "4Q1XYZ");
    // Every later message of the account is held, from anywhere; the observer is not told again.
    auto home = h.connect("192.0.2.1");
    REQUIRE(h.send(home, "U1").second.verdict == Verdict::hold);
    h.engine.note_held(home, "4Q2XYZ");
    REQUIRE(h.told.marks.size() == 1);
    // Another account is not touched.
    REQUIRE(h.send(home, "u2").second.verdict == Verdict::proceed);

    auto report = h.engine.inspect_account("u1");
    REQUIRE(report);
    REQUIRE(report->mark);
    REQUIRE(report->mark->held == std::vector<std::string>{"4Q1XYZ", "4Q2XYZ"});
    REQUIRE(report->login_networks.size() == 4);

    // Only a plain queue id is listed: a forged "ALL" would release every held message.
    REQUIRE_FALSE(h.engine.note_held(home, "ALL"));
    REQUIRE_FALSE(h.engine.note_held(home, "-"));
    REQUIRE_FALSE(h.engine.note_held(home, "4Q3 XY"));
    auto cleared = h.engine.clear_account("u1");
    REQUIRE(cleared);
    REQUIRE((*cleared)->held.size() == 2);
    REQUIRE(h.send(home, "u1").second.verdict == Verdict::proceed);
    REQUIRE_FALSE(*h.engine.clear_account("u1"));
}

TEST_CASE("logins counted for compromise leave the window; the feature off holds nothing", "[compromised]") {
    AccountHarness h(watched(2));
    for (const char* addr : {"192.0.2.1", "198.51.100.1"}) {
        auto s = h.connect(addr);
        h.send(s, "u1");
    }
    h.clock.advance(1h);
    auto s = h.connect("203.0.113.1");
    REQUIRE(h.send(s, "u1").second.verdict == Verdict::proceed);
    REQUIRE(h.told.marks.empty());

    AccountHarness off(base_settings());
    for (const char* addr : {"192.0.2.1", "198.51.100.1", "203.0.113.1", "100.64.0.1"}) {
        auto t = off.connect(addr);
        REQUIRE(off.send(t, "u1").second.verdict == Verdict::proceed);
    }
    REQUIRE(off.told.marks.empty());
}

TEST_CASE("POP3 and IMAP logins reported by Dovecot count towards the networks", "[compromised][auth]") {
    AccountHarness h(watched(2));
    h.engine.on_auth_report(AuthReport{ip("192.0.2.1"), "u1", "h", "imap", true});
    h.engine.on_auth_report(AuthReport{ip("198.51.100.1"), "u1", "h", "pop3", true});
    REQUIRE(h.told.marks.empty());
    h.engine.on_auth_report(AuthReport{ip("203.0.113.1"), "u1", "h", "smtp", true});
    REQUIRE(h.told.marks.size() == 1);
}

TEST_CASE("an account trying its quota many times over is marked", "[compromised][quota]") {
    auto settings = base_settings();
    settings.limits.user_quotas.defaults.messages_per_hour = 2;
    settings.limits.compromised_accounts.quota_factor = 3;
    AccountHarness h(settings);
    auto s = h.connect("192.0.2.1");
    int refused = 0;
    for (int i = 0; i < 5; ++i) refused += h.send(s, "u1").first.refused() ? 1 : 0;
    REQUIRE(refused == 3);  // 2 sent, 3 refused: 5 tried of 6
    REQUIRE(h.told.marks.empty());
    REQUIRE(h.send(s, "u1").first.refused());  // the 6th try: 3 times the quota
    REQUIRE(h.told.marks == std::vector<std::string>{"u1: tried 3 times its quota messages_per_hour"});
    // An hour later its quota lets a message through, and it is held.
    h.clock.advance(1h);
    REQUIRE(h.send(s, "u1").second.verdict == Verdict::hold);
    // Lifting the mark starts the tries afresh: the next refusal marks nothing.
    REQUIRE(*h.engine.clear_account("u1"));
    h.send(s, "u1");
    REQUIRE(h.send(s, "u1").first.refused());
    REQUIRE(h.told.marks.size() == 1);
}

TEST_CASE("quota warn mode marks no account", "[compromised][quota]") {
    auto settings = base_settings();
    settings.limits.user_quotas.defaults.messages_per_hour = 1;
    settings.limits.user_quotas.mode = LimitMode::warn;
    settings.limits.compromised_accounts.quota_factor = 2;
    AccountHarness h(settings);
    auto s = h.connect("192.0.2.1");
    for (int i = 0; i < 5; ++i) REQUIRE(h.send(s, "u1").second.verdict == Verdict::proceed);
    REQUIRE(h.told.marks.empty());
}
