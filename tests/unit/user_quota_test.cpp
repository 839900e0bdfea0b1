// Sending quotas of authenticated accounts: each quota at its edge, parallel
// transactions of one account, the override file's precedence, warn mode,
// and the file's errors naming their line.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>

#include "conf/config.h"
#include "harness.h"

using namespace relayguard;
using namespace relayguard::test;
using namespace std::chrono_literals;

namespace {

// One message by `user`; answers the first refusal or end of data's answer.
Decision send_as(Harness& h, SessionState& s, const std::string& user, int recipients = 1) {
    Decision d = h.engine.on_mail(s, MailFacts{user + "@example.test", std::nullopt, user});
    if (d.refused()) return d;
    for (int i = 0; i < recipients; ++i) {
        d = h.rcpt(s, "friend" + std::to_string(i) + "@elsewhere.example");
        if (d.refused()) return d;
    }
    return h.engine.on_eom(s, EomFacts{});
}

PolicySettings quota_settings() {
    auto s = base_settings();
    s.limits.user_quotas.defaults.messages_per_hour = 3;
    return s;
}

}  // namespace

TEST_CASE("user quota: the Nth message of an hour passes, the N+1th is refused with the quota named", "[quota]") {
    Harness h(quota_settings());
    auto s = h.connect("192.0.2.1");
    for (int i = 0; i < 3; ++i) REQUIRE(send_as(h, s, "u1").verdict == Verdict::proceed);
    Decision d = send_as(h, s, "u1");
    REQUIRE(d.verdict == Verdict::tempfail);
    REQUIRE(d.rule == "user_quota");
    REQUIRE(d.reply == SmtpReply{450, "4.7.1", "Sending quota exceeded: 3 messages per hour"});
    REQUIRE(d.detail == "user=u1 quota=messages_per_hour count=3 limit=3");
    // From another client too: the account is what is counted.
    auto elsewhere = h.connect("198.51.100.9");
    REQUIRE(send_as(h, elsewhere, "U1").rule == "user_quota");
    // Another account is not touched, nor mail without AUTH.
    REQUIRE_FALSE(send_as(h, s, "u2").refused());
    auto anonymous = h.connect("192.0.2.2");
    REQUIRE_FALSE(h.message(anonymous).refused());
    // An hour later the first has left the window.
    h.clock.advance(1h);
    REQUIRE_FALSE(send_as(h, s, "u1").refused());
}

TEST_CASE("user quota: aborted transactions give their slot back; parallel ones cannot pass one check", "[quota]") {
    Harness h(quota_settings());
    std::vector<SessionState> sessions;
    for (int i = 0; i < 5; ++i) sessions.push_back(h.connect("192.0.2." + std::to_string(i + 1)));
    int admitted = 0;
    for (auto& s : sessions) {
        if (!h.engine.on_mail(s, MailFacts{"u1@example.test", std::nullopt, "u1"}).refused()) ++admitted;
    }
    REQUIRE(admitted == 3);  // three slots, five transactions open at once
    h.engine.on_abort(sessions[0]);
    h.engine.on_close(sessions[1]);
    auto late = h.connect("192.0.2.9");
    REQUIRE_FALSE(h.engine.on_mail(late, MailFacts{"u1@example.test", std::nullopt, "u1"}).refused());
}

TEST_CASE("user quota: messages per day and recipients per day", "[quota]") {
    auto settings = base_settings();
    settings.limits.user_quotas.defaults.messages_per_day = 2;
    settings.limits.user_quotas.defaults.recipients_per_day = 5;
    Harness h(settings);
    auto s = h.connect("192.0.2.1");
    REQUIRE_FALSE(send_as(h, s, "u1", 3).refused());
    h.clock.advance(2h);
    Decision d = send_as(h, s, "u1", 3);  // recipients 4 and 5 pass, the 6th does not
    REQUIRE(d.rule == "user_quota");
    REQUIRE(d.reply.text == "Sending quota exceeded: 5 recipients per day");
    h.engine.on_eom(s, EomFacts{});  // the 2 accepted recipients go
    h.clock.advance(2h);
    d = send_as(h, s, "u1", 0);
    REQUIRE(d.reply.text == "Sending quota exceeded: 2 messages per day");
    h.clock.advance(20h + 1s);
    REQUIRE_FALSE(send_as(h, s, "u1", 1).refused());
}

TEST_CASE("user quota: an account's line beats its domain's, which beats the defaults", "[quota]") {
    auto settings = quota_settings();
    auto& q = settings.limits.user_quotas;
    q.domains["big.example"] = UserQuota{10, std::nullopt, std::nullopt};
    q.users["vip@big.example"] = UserQuota{std::nullopt, std::nullopt, std::nullopt};
    q.users["tiny"] = UserQuota{1, std::nullopt, std::nullopt};
    Harness h(settings);
    auto s = h.connect("192.0.2.1");
    for (int i = 0; i < 10; ++i) REQUIRE_FALSE(send_as(h, s, "someone@big.example").refused());
    REQUIRE(send_as(h, s, "someone@big.example").refused());
    for (int i = 0; i < 20; ++i) REQUIRE_FALSE(send_as(h, s, "VIP@big.example").refused());
    REQUIRE_FALSE(send_as(h, s, "tiny").refused());
    REQUIRE(send_as(h, s, "tiny").refused());
}

TEST_CASE("user quota: counted at the check, a message refused by one quota counts against none", "[quota]") {
    auto settings = base_settings();
    settings.limits.user_quotas.defaults.messages_per_hour = 5;
    settings.limits.user_quotas.defaults.messages_per_day = 2;
    Harness h(settings);
    auto s = h.connect("192.0.2.1");
    auto counted = [&] {
        MailFacts m{"u1@example.test", std::nullopt, "u1"};
        m.count_at_check = true;  // the policy service asked at RCPT only
        Decision d = h.engine.on_mail(s, m);
        h.engine.on_abort(s);
        return d;
    };
    REQUIRE_FALSE(counted().refused());
    REQUIRE_FALSE(counted().refused());
    REQUIRE(counted().reply.text == "Sending quota exceeded: 2 messages per day");
    REQUIRE(counted().refused());
    auto hour = h.store.inspect(UserQuotaLimit::key("messages_per_hour", "u1"), {1h, 1h, 1h}, h.clock.now());
    REQUIRE(hour->messages == 2);  // the two refused did not use the hourly quota
}

TEST_CASE("user quota: a message the account may not send takes no slot of the client's rate", "[quota]") {
    auto settings = quota_settings();
    settings.limits.message_rate.max = 5;
    Harness h(settings);
    auto s = h.connect("192.0.2.1");
    for (int i = 0; i < 3; ++i) send_as(h, s, "u1");
    REQUIRE(send_as(h, s, "u1").rule == "user_quota");
    auto other = h.connect("192.0.2.1");
    // 3 sent, the refused one released: 2 of the client's 5 left.
    REQUIRE_FALSE(h.message(other).refused());
    REQUIRE_FALSE(h.message(other).refused());
    REQUIRE(h.message(other).rule == "message_rate");
}

TEST_CASE("user quota: counted at the check, a quota refusal charges the client's rate nothing", "[quota]") {
    auto settings = quota_settings();  // 3 an hour for the account
    settings.limits.message_rate.max = 5;
    Harness h(settings);
    auto s = h.connect("192.0.2.1");
    auto mail = [&](const std::string& user) {
        MailFacts m{user + "@example.test", std::nullopt, user};
        m.count_at_check = true;
        Decision d = h.engine.on_mail(s, m);
        h.engine.on_abort(s);  // the policy service never hears how it ends
        return d;
    };
    for (int i = 0; i < 3; ++i) REQUIRE_FALSE(mail("u1").refused());
    for (int i = 0; i < 4; ++i) REQUIRE(mail("u1").rule == "user_quota");
    // Counted at the check, aborts do not give them back: 3 of the client's 5 used.
    REQUIRE_FALSE(mail("u2").refused());
    REQUIRE_FALSE(mail("u2").refused());
    REQUIRE(mail("u2").rule == "message_rate");
}

TEST_CASE("user quota: committed by the front end holding the slots, even when the other counted the message first",
          "[quota]") {
    Harness h(quota_settings());
    auto s = h.connect("192.0.2.1");
    for (int i = 0; i < 3; ++i) {
        h.engine.on_mail(s, MailFacts{"u1@example.test", std::nullopt, "u1"});
        h.rcpt(s, "friend@elsewhere.example");
        EomFacts eom;
        eom.counted_elsewhere = true;  // the policy service at END-OF-MESSAGE told Postfix first
        REQUIRE_FALSE(h.engine.on_eom(s, eom).refused());
    }
    REQUIRE(send_as(h, s, "u1").rule == "user_quota");
}

TEST_CASE("user quota: warn mode counts and logs, refuses nothing", "[quota]") {
    auto settings = quota_settings();
    settings.limits.user_quotas.mode = LimitMode::warn;
    Harness h(settings);
    auto s = h.connect("192.0.2.1");
    for (int i = 0; i < 3; ++i) send_as(h, s, "u1");
    Decision d = h.engine.on_mail(s, MailFacts{"u1@example.test", std::nullopt, "u1"});
    REQUIRE_FALSE(d.refused());
    REQUIRE(d.warnings.size() == 1);
    REQUIRE(d.warnings[0].rule == "user_quota");
}

TEST_CASE("the quota overrides file: precedence merged at load, errors name the line", "[quota][config]") {
    char path[] = "/tmp/rg-quota-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    auto write = [&](const std::string& text) { std::ofstream(path) << text; };
    auto load = [&] {
        return load_config_text(std::string("[relay]\nlocal_domains = [\"example.test\"]\n[limits.user_quotas]\n"
                                            "messages_per_hour = 100\nrecipients_per_day = 50\noverrides_file = \"") +
                                    path + "\"\n",
                                "test.toml");
    };
    write("# quotas\n@Example.NET messages_per_day=7\nalice@example.net messages_per_hour=500  # her own\n"
          "bob@example.org messages_per_hour=off\n");
    auto ok = load();
    REQUIRE(ok.config);
    const auto& q = ok.config->policy.limits.user_quotas;
    REQUIRE(q.domains.at("example.net") == UserQuota{100, 7, 50});
    REQUIRE(q.users.at("alice@example.net") == UserQuota{500, 7, 50});
    REQUIRE(q.users.at("bob@example.org") == UserQuota{std::nullopt, std::nullopt, 50});

    write("alice@example.net messages_per_hour=lots\n");
    auto bad = load();
    REQUIRE_FALSE(bad.config);
    REQUIRE(bad.errors.at(0).file == path);
    REQUIRE(bad.errors.at(0).line == 1);
    REQUIRE(bad.errors.at(0).message.find("expected a number") != std::string::npos);
    write("\n\nalice messages_per_week=3\n");
    REQUIRE(load().errors.at(0).line == 3);
    write("alice messages_per_hour=3\nALICE messages_per_day=3\n");
    REQUIRE(load().errors.at(0).message == "\"alice\" has a line already");
    std::remove(path);
    auto missing = load();
    REQUIRE_FALSE(missing.config);
    REQUIRE(missing.errors.at(0).key == "limits.user_quotas.overrides_file");
}
