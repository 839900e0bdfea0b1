// Per-client limits at their edges: the Nth allowed, the N+1th refused;
// sliding windows moved by the manual clock; exemptions; warn mode; IPv6
// aggregation; failed commands closing the session.
#include <catch2/catch.hpp>

#include "harness.h"

using namespace relayguard;
using namespace relayguard::test;
using namespace std::chrono_literals;

TEST_CASE("message rate: the Nth message passes, the N+1th is refused", "[limits][rate]") {
    auto settings = base_settings();
    settings.limits.message_rate.max = 3;
    Harness h(settings);
    auto s = h.connect("192.0.2.1");
    for (int i = 0; i < 3; ++i) {
        INFO("message " << i + 1);
        REQUIRE_FALSE(h.message(s).refused());
        h.clock.advance(1min);
    }
    Decision d = h.message(s);
    REQUIRE(d.verdict == Verdict::tempfail);
    REQUIRE(d.rule == "message_rate");
    REQUIRE(d.reply == SmtpReply{450, "4.7.1", "Too many messages from this client; try again later"});
    REQUIRE(d.detail.find("count=3 limit=3") != std::string::npos);
    // Another client is counted apart.
    auto other = h.connect("192.0.2.2");
    REQUIRE_FALSE(h.message(other).refused());
}

TEST_CASE("message rate: the window slides, one message at a time", "[limits][rate]") {
    auto settings = base_settings();
    settings.limits.message_rate.max = 2;
    Harness h(settings);
    auto s = h.connect("192.0.2.1");
    REQUIRE_FALSE(h.message(s).refused());  // t = 0
    h.clock.advance(30min);
    REQUIRE_FALSE(h.message(s).refused());  // t = 30m
    h.clock.advance(29min);
    REQUIRE(h.message(s).refused());  // t = 59m: both still in the last hour
    h.clock.advance(1min);
    REQUIRE_FALSE(h.message(s).refused());  // t = 60m: the first has left
    REQUIRE(h.message(s).refused());
}

TEST_CASE("message rate counts accepted messages or attempts, as configured", "[limits][rate]") {
    auto settings = base_settings();
    settings.limits.message_rate.max = 2;
    SECTION("accepted: transactions that never finish do not count") {
        Harness h(settings);
        auto s = h.connect("192.0.2.1");
        for (int i = 0; i < 5; ++i) {
            REQUIRE_FALSE(h.mail(s).refused());
            h.engine.on_abort(s);
        }
        REQUIRE_FALSE(h.message(s).refused());
        REQUIRE_FALSE(h.message(s).refused());
        REQUIRE(h.message(s).refused());
    }
    SECTION("attempts: every MAIL FROM below the limit counts") {
        settings.limits.message_rate.count = CountMode::attempts;
        Harness h(settings);
        auto s = h.connect("192.0.2.1");
        REQUIRE_FALSE(h.mail(s).refused());
        h.engine.on_abort(s);
        REQUIRE_FALSE(h.mail(s).refused());
        h.engine.on_abort(s);
        REQUIRE(h.mail(s).refused());
    }
}

TEST_CASE("message rate: transactions open at once cannot all pass one check", "[limits][rate]") {
    // Spam software opens parallel sessions: all of them reach MAIL before
    // any reaches end of data. The limit must still hold, whichever way it counts.
    auto settings = base_settings();
    settings.limits.message_rate.max = 5;
    settings.limits.message_rate.count = GENERATE(CountMode::accepted, CountMode::attempts);
    Harness h(settings);
    std::vector<SessionState> passed;
    for (int i = 0; i < 20; ++i) {
        auto s = h.connect("192.0.2.1");
        if (!h.mail(s).refused() && !h.rcpt(s, "user@example.test").refused()) passed.push_back(std::move(s));
    }
    REQUIRE(passed.size() == 5);
    for (auto& s : passed) REQUIRE_FALSE(h.engine.on_eom(s, EomFacts{}).refused());
    auto late = h.connect("192.0.2.1");
    REQUIRE(h.message(late).rule == "message_rate");
}

TEST_CASE("message rate: a slot held at MAIL is given back by an abort, a refusal or a close", "[limits][rate]") {
    auto settings = base_settings();
    settings.limits.message_rate.max = 1;
    settings.limits.message_size.max = 1000;
    Harness h(settings);
    auto a = h.connect("192.0.2.1");
    REQUIRE_FALSE(h.mail(a).refused());
    auto b = h.connect("192.0.2.1");
    REQUIRE(h.mail(b).rule == "message_rate");  // a's transaction holds the only slot
    SECTION("RSET or abort") { h.engine.on_abort(a); }
    SECTION("a refusal at end of data") {
        h.rcpt(a, "user@example.test");
        REQUIRE(h.engine.on_eom(a, EomFacts{5000, 1}).rule == "message_size");
    }
    SECTION("the connection lost") { h.engine.on_close(a); }
    SECTION("a new MAIL FROM in the same session") {
        REQUIRE_FALSE(h.mail(a).refused());  // takes the slot again: one transaction, one slot
        h.engine.on_abort(a);
    }
    REQUIRE_FALSE(h.mail(b).refused());
    REQUIRE_FALSE(h.engine.on_eom(b, EomFacts{}).refused());
    // Now counted: the slot stays taken after end of data.
    auto c = h.connect("192.0.2.1");
    REQUIRE(h.mail(c).rule == "message_rate");
}

TEST_CASE("a message another front end already checked or counted is not counted again", "[limits][rate]") {
    auto settings = base_settings();
    settings.limits.message_rate.max = 2;
    auto whole = [](Harness& h, SessionState& s, bool mail_elsewhere, bool eom_elsewhere) {
        MailFacts mail{"sender@example.org", std::nullopt, ""};
        mail.rate_checked_elsewhere = mail_elsewhere;
        Decision d = h.engine.on_mail(s, mail);
        if (d.refused()) return d;
        if ((d = h.rcpt(s, "user@example.test")).refused()) return d;
        EomFacts eom;
        eom.counted_elsewhere = eom_elsewhere;
        return h.engine.on_eom(s, eom);
    };
    SECTION("accepted: the second report of one message's end reads only") {
        Harness h(settings);
        auto s = h.connect("192.0.2.1");
        for (int i = 0; i < 2; ++i) {
            REQUIRE_FALSE(whole(h, s, false, false).refused());  // the first front end counts
            REQUIRE_FALSE(whole(h, s, true, true).refused());    // the second one, same message: no count
        }
        REQUIRE(h.mail(s).refused());
    }
    SECTION("attempts: a MAIL checked elsewhere is neither checked nor counted") {
        settings.limits.message_rate.count = CountMode::attempts;
        Harness h(settings);
        auto s = h.connect("192.0.2.1");
        REQUIRE_FALSE(h.mail(s).refused());
        h.engine.on_abort(s);
        REQUIRE_FALSE(h.mail(s).refused());
        // The other front end's view of this second transaction: the count
        // is at the limit now, yet this transaction was allowed and counted.
        REQUIRE_FALSE(whole(h, s, true, true).refused());
        REQUIRE(h.mail(s).refused());
    }
}

TEST_CASE("the exempt group is never limited", "[limits]") {
    auto settings = base_settings();
    settings.limits.message_rate.max = 1;
    settings.limits.recipients.max = 1;
    settings.limits.exempt = group("exempt", {"192.0.2.128/25", "2001:db8:ff::/48"});
    Harness h(settings);
    for (const char* addr : {"192.0.2.200", "2001:db8:ff::1"}) {
        auto s = h.connect(addr);
        for (int i = 0; i < 10; ++i) REQUIRE_FALSE(h.message(s).refused());
        h.mail(s);
        REQUIRE_FALSE(h.rcpt(s, "a@example.test").refused());
        REQUIRE_FALSE(h.rcpt(s, "b@example.test").refused());
    }
    auto limited = h.connect("192.0.2.127");
    REQUIRE_FALSE(h.message(limited).refused());
    REQUIRE(h.message(limited).refused());
}

TEST_CASE("warn mode logs what it would refuse and refuses nothing", "[limits][warn]") {
    auto settings = base_settings();
    settings.limits.message_rate.max = 1;
    settings.limits.message_rate.mode = LimitMode::warn;
    Harness h(settings);
    auto s = h.connect("192.0.2.1");
    REQUIRE_FALSE(h.message(s).refused());
    Decision d = h.mail(s);
    REQUIRE(d.verdict == Verdict::proceed);
    REQUIRE(d.warnings.size() == 1);
    REQUIRE(d.warnings[0].rule == "message_rate");
    REQUIRE(d.warnings[0].verdict == Verdict::tempfail);
    // A warning is no failed command.
    REQUIRE(s.failed_commands == 0);
}

TEST_CASE("IPv6 clients are counted per /64 by default", "[limits][ipv6]") {
    auto settings = base_settings();
    settings.limits.message_rate.max = 2;
    Harness h(settings);
    auto a = h.connect("2001:db8:5:1::1");
    auto b = h.connect("2001:db8:5:1:ffff::2");
    REQUIRE(a.client_key == "2001:db8:5:1::/64");
    REQUIRE_FALSE(h.message(a).refused());
    REQUIRE_FALSE(h.message(b).refused());
    REQUIRE(h.message(a).refused());  // the third from the same /64
    auto other_net = h.connect("2001:db8:5:2::1");
    REQUIRE_FALSE(h.message(other_net).refused());

    settings.limits.ipv6_prefix = 128;
    settings.limits.ipv4_prefix = 24;
    Harness per_address(settings);
    REQUIRE(per_address.connect("2001:db8:5:1::1").client_key == "2001:db8:5:1::1");
    REQUIRE(per_address.connect("192.0.2.77").client_key == "192.0.2.0/24");
}

TEST_CASE("concurrent connections: N held, the N+1th refused, freed on close", "[limits][connections]") {
    auto settings = base_settings();
    settings.limits.connections.max = 2;
    Harness h(settings);
    Decision d1, d2, d3;
    auto s1 = h.connect("192.0.2.1", &d1);
    auto s2 = h.connect("192.0.2.1", &d2);
    auto s3 = h.connect("192.0.2.1", &d3);
    REQUIRE_FALSE(d1.refused());
    REQUIRE_FALSE(d2.refused());
    REQUIRE(d3.verdict == Verdict::close);
    REQUIRE(d3.reply.code == 421);
    REQUIRE(d3.detail == "concurrent=3 limit=2");
    h.engine.on_close(s3);  // the refused one held nothing
    Decision d4;
    h.connect("192.0.2.1", &d4);
    REQUIRE(d4.refused());
    h.engine.on_close(s1);
    h.engine.on_close(s1);  // closing twice gives back one slot only
    Decision d5, d6;
    auto s5 = h.connect("192.0.2.1", &d5);
    h.connect("192.0.2.1", &d6);
    REQUIRE_FALSE(d5.refused());
    REQUIRE(d6.refused());
}

TEST_CASE("unknown recipients: distinct addresses counted, then the client is blocked", "[limits][harvest]") {
    auto settings = base_settings();
    settings.limits.unknown_recipients.max = 3;
    settings.limits.unknown_recipients.block_time = 1h;
    Harness h(settings);
    auto s = h.connect("192.0.2.1");
    h.mail(s);
    // One address retried many times is one guess.
    for (int i = 0; i < 10; ++i) REQUIRE_FALSE(h.unknown_rcpt(s, "typo@example.test").refused());
    REQUIRE_FALSE(h.unknown_rcpt(s, "b@example.test").refused());
    REQUIRE_FALSE(h.rcpt(s, "valid@example.test").refused());
    Decision third = h.unknown_rcpt(s, "C@example.test");
    REQUIRE(third.refused());
    REQUIRE(third.rule == "unknown_recipients");
    // Blocked now, valid recipients included, on this and new connections.
    REQUIRE(h.rcpt(s, "valid@example.test").reply.status == "4.7.1");
    Decision at_connect;
    auto again = h.connect("192.0.2.1", &at_connect);
    REQUIRE(at_connect.refused());
    REQUIRE(at_connect.rule == "unknown_recipients");
    h.clock.advance(59min);
    REQUIRE(h.rcpt(again, "valid@example.test").refused());
    h.clock.advance(1min);
    h.mail(again);
    REQUIRE_FALSE(h.rcpt(again, "valid@example.test").refused());
}

TEST_CASE("only permanent unknown-user refusals count as harvest guesses", "[limits][harvest]") {
    // Postfix's reject_unverified_recipient while the backend is down.
    CHECK_FALSE(HarvestGuard::means_unknown_user("4.1.1", "Recipient address rejected: unverified address: "
                                                          "connect to backend[192.0.2.7]:25: Connection refused"));
    CHECK_FALSE(HarvestGuard::means_unknown_user("450", "user unknown"));
    CHECK(HarvestGuard::means_unknown_user("5.1.1", "Recipient address rejected: User unknown in local recipient table"));
    CHECK_FALSE(HarvestGuard::means_unknown_user("5.7.1", "Relay access denied"));
    CHECK_FALSE(HarvestGuard::means_unknown_user("5.1.10", "null MX"));
    // A bare reply code: only 550/553 whose text names an unknown user.
    CHECK(HarvestGuard::means_unknown_user("550", "No such user here"));
    CHECK(HarvestGuard::means_unknown_user("553", "sorry, User Unknown"));
    CHECK_FALSE(HarvestGuard::means_unknown_user("550", "Relaying denied"));
    CHECK_FALSE(HarvestGuard::means_unknown_user("554", "user unknown"));
    CHECK_FALSE(HarvestGuard::means_unknown_user("", "user unknown"));
}

TEST_CASE("unknown recipients: many temporary 4.1.1 refusals never block", "[limits][harvest]") {
    auto settings = base_settings();
    settings.limits.unknown_recipients.max = 3;
    settings.limits.unknown_recipients.block_time = 1h;
    Harness h(settings);
    auto s = h.connect("192.0.2.1");
    h.mail(s);
    for (int i = 0; i < 20; ++i) {
        RcptFacts f{"user" + std::to_string(i) + "@example.test", true, "4.1.1",
                    "Recipient address rejected: unverified address: host backend said: 451 try later"};
        REQUIRE_FALSE(h.engine.on_rcpt(s, f).refused());
    }
    REQUIRE_FALSE(h.rcpt(s, "valid@example.test").refused());
    Decision at_connect;
    h.connect("192.0.2.1", &at_connect);
    REQUIRE_FALSE(at_connect.refused());
}

TEST_CASE("unknown recipients in warn mode never block", "[limits][harvest][warn]") {
    auto settings = base_settings();
    settings.limits.unknown_recipients.max = 1;
    settings.limits.unknown_recipients.mode = LimitMode::warn;
    Harness h(settings);
    auto s = h.connect("192.0.2.1");
    h.mail(s);
    Decision d = h.unknown_rcpt(s, "a@example.test");
    REQUIRE_FALSE(d.refused());
    REQUIRE(d.warnings.size() == 1);
    REQUIRE_FALSE(h.rcpt(s, "valid@example.test").refused());
}

TEST_CASE("recipients per message: the N+1th is refused with 452", "[limits][recipients]") {
    auto settings = base_settings();
    settings.limits.recipients.max = 2;
    Harness h(settings);
    auto s = h.connect("192.0.2.1");
    h.mail(s);
    REQUIRE_FALSE(h.rcpt(s, "a@example.test").refused());
    REQUIRE_FALSE(h.rcpt(s, "b@example.test").refused());
    Decision d = h.rcpt(s, "c@example.test");
    REQUIRE(d.verdict == Verdict::tempfail);
    REQUIRE(d.reply == SmtpReply{452, "4.5.3", "Too many recipients"});
    // Refused recipients do not use up the allowance; a new message starts again.
    h.engine.on_eom(s, EomFacts{});
    h.mail(s);
    REQUIRE_FALSE(h.rcpt(s, "c@example.test").refused());
}

TEST_CASE("failed commands: the failure past the limit closes the session", "[limits][failed]") {
    auto settings = base_settings();
    settings.limits.failed_commands.max = 2;
    Harness h(settings);
    auto s = h.connect("192.0.2.1");
    h.mail(s);
    REQUIRE(h.rcpt(s, "a@elsewhere.example").verdict == Verdict::reject);  // 1
    REQUIRE(h.engine.on_unknown_command(s).verdict == Verdict::proceed);   // 2
    Decision d = h.unknown_rcpt(s, "nobody@example.test");                 // 3: one too many
    REQUIRE(d.verdict == Verdict::close);
    REQUIRE(d.reply.code == 421);
    REQUIRE(d.rule == "failed_commands");
    // Whatever comes next on this session is closed too.
    REQUIRE(h.rcpt(s, "user@example.test").verdict == Verdict::close);
    // A new session starts with a clean count.
    auto fresh = h.connect("192.0.2.1");
    h.mail(fresh);
    REQUIRE_FALSE(h.rcpt(fresh, "user@example.test").refused());
}

TEST_CASE("message size: declared SIZE and the actual body", "[limits][size]") {
    auto settings = base_settings();
    settings.limits.message_size.max = 1000;
    Harness h(settings);
    auto s = h.connect("192.0.2.1");
    REQUIRE_FALSE(h.mail(s, "a@example.org", 1000).refused());
    Decision declared = h.mail(s, "a@example.org", 1001);
    REQUIRE(declared.verdict == Verdict::reject);
    REQUIRE(declared.reply == SmtpReply{552, "5.3.4", "Message size exceeds fixed limit"});
    // A client that declares nothing (or lies) is caught by what it sends.
    h.mail(s);
    h.rcpt(s, "a@example.test");
    REQUIRE_FALSE(h.engine.on_body(s, 600).refused());
    Decision body = h.engine.on_body(s, 401);
    REQUIRE(body.verdict == Verdict::reject);
    REQUIRE(body.detail == "body_bytes=1001 limit=1000");
    // The policy front end knows only the final size, at end of message.
    h.mail(s);
    h.rcpt(s, "a@example.test");
    REQUIRE(h.engine.on_eom(s, EomFacts{5000, 1}).refused());
}

TEST_CASE("hop count: more Received headers than the limit is a loop", "[limits][hops]") {
    auto settings = base_settings();
    settings.limits.hops.max = 3;
    Harness h(settings);
    auto s = h.connect("192.0.2.1");
    h.mail(s);
    h.rcpt(s, "a@example.test");
    for (int i = 0; i < 3; ++i) REQUIRE_FALSE(h.engine.on_header(s, "Received", "from x").refused());
    REQUIRE_FALSE(h.engine.on_header(s, "Subject", "hi").refused());
    Decision d = h.engine.on_header(s, "RECEIVED", "from y");
    REQUIRE(d.verdict == Verdict::reject);
    REQUIRE(d.reply == SmtpReply{554, "5.4.6", "Too many hops: mail loop detected"});
}

TEST_CASE("an unreachable store follows the fail mode", "[limits][store]") {
    // A store that never answers, as Redis does when it is down.
    struct DeadStore : CounterStore {
        std::optional<ConnectionOutcome> open_connection(const std::string&, const std::string&, std::uint32_t,
                                                         TimePoint) override { return std::nullopt; }
        void close_connection(const std::string&, const std::string&) override {}
        std::optional<RateOutcome> message_rate(const std::string&, Duration, std::uint32_t, bool, TimePoint) override {
            return std::nullopt;
        }
        std::optional<RateOutcome> record_message(const std::string&, Duration, std::uint32_t, TimePoint) override {
            return std::nullopt;
        }
        std::optional<RateOutcome> reserve_message(const std::string&, const std::string&, Duration, std::uint32_t,
                                                   TimePoint) override {
            return std::nullopt;
        }
        void commit_message(const std::string&, const std::string&, Duration, std::uint32_t, TimePoint) override {}
        void release_message(const std::string&, const std::string&) override {}
        std::optional<GuessOutcome> record_guess(GuessKind, const std::string&, const std::string&, Duration,
                                                 std::uint32_t, Duration, TimePoint) override {
            return std::nullopt;
        }
        Lookup<ClientBlock> block(const std::string&, TimePoint) override { return Lookup<ClientBlock>::failure("down"); }
        bool unblock(const std::string&) override { return false; }
        void forget_messages(const std::string&) override {}
        std::optional<AccountOutcome> record_account_failure(const std::string&, const std::string&, Duration,
                                                            std::uint32_t, TimePoint) override {
            return std::nullopt;
        }
        bool mark_failed_auth(const std::string&, TimePoint, TimePoint) override { return false; }
        Lookup<TimePoint> failed_auth_until(const std::string&, TimePoint) override {
            return Lookup<TimePoint>::failure("down");
        }
        std::optional<ClientCounters> inspect(const std::string&, const CounterWindows&, TimePoint) override {
            return std::nullopt;
        }
    };
    auto settings = base_settings();
    settings.limits.message_rate.max = 5;
    DeadStore dead;
    ManualClock clock;
    SECTION("tempfail") {
        DecisionEngine e(settings, dead, clock);
        SessionState s;
        e.on_connect(s, ConnectFacts{ip("192.0.2.1"), "", "c1"});
        Decision d = e.on_mail(s, MailFacts{"a@example.org", std::nullopt, ""});
        REQUIRE(d.verdict == Verdict::tempfail);
        REQUIRE(d.reply.code == 451);
        REQUIRE(d.rule == "store");
    }
    SECTION("open") {
        settings.store_fail_mode = StoreFailMode::open;
        DecisionEngine e(settings, dead, clock);
        SessionState s;
        e.on_connect(s, ConnectFacts{ip("192.0.2.1"), "", "c1"});
        Decision d = e.on_mail(s, MailFacts{"a@example.org", std::nullopt, ""});
        REQUIRE(d.verdict == Verdict::proceed);
        REQUIRE(d.warnings.size() == 1);
        REQUIRE(d.warnings[0].detail.find("fail mode open") != std::string::npos);
    }
}

TEST_CASE("a harvester rotating through its /48 cannot flush its own block from a full memory store",
          "[limits][harvest][store]") {
    auto settings = base_settings();
    settings.limits.unknown_recipients.max = 2;
    settings.limits.unknown_recipients.block_time = 10min;
    settings.limits.message_rate.max = 100;
    settings.limits.message_rate.window = 1h;  // each new client's counter outlives the block
    settings.limits.message_rate.count = CountMode::attempts;  // counted at MAIL
    MemoryCounterStore store(100);
    MemoryPopWindowStore pop;
    ManualClock clock;
    DecisionEngine engine(settings, store, clock, &pop, nullptr);
    auto session = [&](const std::string& addr, Decision* at_connect = nullptr) {
        SessionState s;
        Decision d = engine.on_connect(s, ConnectFacts{ip(addr), "", addr});
        if (at_connect) *at_connect = d;
        return s;
    };
    auto s = session("2001:db8:77:1::1");
    engine.on_mail(s, MailFacts{"a@example.org", std::nullopt, ""});
    engine.on_rcpt(s, RcptFacts{"x@example.test", true, "5.1.1", ""});
    REQUIRE(engine.on_rcpt(s, RcptFacts{"y@example.test", true, "5.1.1", ""}).rule == "unknown_recipients");
    engine.on_close(s);  // it hangs up: no connection slot holds its entry any more
    // 1,000 sessions, each from a /64 of its own (limits.ipv6_prefix), ten
    // times what the store holds, each counted by the message rate.
    for (int i = 0; i < 1000; ++i) {
        char addr[64];
        std::snprintf(addr, sizeof addr, "2001:db8:77:%x::1", 0x100 + i);
        auto rotating = session(addr);
        REQUIRE_FALSE(engine.on_mail(rotating, MailFacts{"a@example.org", std::nullopt, ""}).refused());
        engine.on_close(rotating);
        clock.advance(100ms);
    }
    Decision at_connect;
    session("2001:db8:77:1::2", &at_connect);
    REQUIRE(at_connect.refused());
    REQUIRE(at_connect.rule == "unknown_recipients");
}
