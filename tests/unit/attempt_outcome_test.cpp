// What an attempt's results mean for a queued message: expiry, the one
// delay warning, which reports the sender gets, and the next attempt's
// time; and how long a POP-before-SMTP login is reused. Time is set by
// hand: no queue, no SMTP, no sleeping.
#include <catch2/catch.hpp>

#include "delivery/attempt_outcome.h"
#include "delivery/pop3_client.h"

using namespace relayguard;
using namespace std::chrono_literals;

namespace {

TimePoint t0() { return TimePoint(Duration(1'700'000'000'000)); }

QueuedMessage message(std::vector<std::string> rcpts, std::string sender = "alice@example.org") {
    QueuedMessage m;
    m.id = "q1";
    m.arrival = t0();
    m.sender = std::move(sender);
    m.warned_offset = 100;  // the file has room to record the warning
    m.size = 1000;
    for (auto& address : rcpts) {
        QueuedRecipient r;
        r.address = address;
        m.recipients.push_back(r);
    }
    return m;
}

RecipientOutcome deferred(std::string why = "451 4.3.0 try later") {
    return RecipientOutcome{RecipientState::pending, why, "mx.example[192.0.2.1]:25", false, false, true};
}
RecipientOutcome delivered(bool dsn_passed = false) {
    return RecipientOutcome{RecipientState::delivered, "250 2.0.0 ok", "mx.example[192.0.2.1]:25", dsn_passed, false,
                            true};
}
RecipientOutcome failed(std::string reply = "550 5.1.1 no such user") {
    return RecipientOutcome{RecipientState::failed, reply, "mx.example[192.0.2.1]:25", false, false, true};
}

const DeliveryReport* report_of(const ReportsDue& due, ReportKind kind) {
    for (const auto& r : due.reports) {
        if (r.kind == kind) return &r;
    }
    return nullptr;
}

}  // namespace

TEST_CASE("an attempt that delivers everyone leaves nothing to retry", "[delivery]") {
    DeliverySettings s;
    auto m = message({"a@x.example", "b@x.example"});
    std::vector<RecipientOutcome> out{delivered(), failed()};
    auto st = settle_attempt(m, out, {0, 1}, s, t0() + 1s, next_retry(m, s, t0() + 1s));
    REQUIRE(st.pending == 0);
    REQUIRE(st.settled == std::vector<std::size_t>{0, 1});
    REQUIRE_FALSE(st.next());
    REQUIRE_FALSE(st.warning_due);
}

TEST_CASE("a deferred recipient is retried later the longer the message has waited", "[delivery]") {
    DeliverySettings s;  // retry 5 min, at most 4000 s
    auto m = message({"a@x.example"});
    std::vector<RecipientOutcome> out{deferred()};
    auto early = settle_attempt(m, out, {0}, s, t0() + 10s, next_retry(m, s, t0() + 10s));
    REQUIRE(early.pending == 1);
    REQUIRE(early.next() == t0() + 10s + 300s);
    auto later = settle_attempt(m, out, {0}, s, t0() + 2000s, next_retry(m, s, t0() + 2000s));
    REQUIRE(later.next() == t0() + 2000s + 2000s);
    auto old = settle_attempt(m, out, {0}, s, t0() + 30h, next_retry(m, s, t0() + 30h));
    REQUIRE(old.next() == t0() + 30h + 4000s);
    // A resting destination that is due sooner brings the attempt forward.
    auto sooner = settle_attempt(m, out, {0}, s, t0() + 2000s, t0() + 2060s);
    REQUIRE(sooner.next() == t0() + 2060s);
}

TEST_CASE("past the message lifetime a deferred recipient fails as expired, with a 4.4.7 bounce", "[delivery]") {
    DeliverySettings s;
    auto m = message({"a@x.example", "b@x.example"});
    std::vector<RecipientOutcome> out{deferred("451 4.3.0 mailbox busy"), delivered()};
    TimePoint now = t0() + s.message_lifetime;
    auto st = settle_attempt(m, out, {0, 1}, s, now, next_retry(m, s, now));
    REQUIRE(out[0].state == RecipientState::failed);
    REQUIRE(out[0].expired);
    REQUIRE(st.pending == 0);
    REQUIRE_FALSE(st.next());
    auto due = reports_due(m, out, st, s, "relay.example", now);
    auto* bounce = report_of(due, ReportKind::failure);
    REQUIRE(bounce);
    REQUIRE(bounce->recipients.size() == 1);
    REQUIRE(bounce->recipients[0].address == "a@x.example");
    REQUIRE(bounce->recipients[0].status == "4.4.7");
    REQUIRE(bounce->recipients[0].reason == "message lifetime expired; last problem: 451 4.3.0 mailbox busy");
    REQUIRE(bounce->recipients[0].remote_mta == "mx.example");
    REQUIRE(bounce->reporting_mta == "relay.example");
    // One second earlier it was still only deferred.
    std::vector<RecipientOutcome> before{deferred(), delivered()};
    auto st2 = settle_attempt(m, before, {0, 1}, s, now - 1s, next_retry(m, s, now - 1s));
    REQUIRE(before[0].state == RecipientState::pending);
    REQUIRE(st2.pending == 1);
}

TEST_CASE("a bounce carries the server's enhanced status and words; our own words get a generic code",
          "[delivery]") {
    DeliverySettings s;
    auto m = message({"a@x.example", "b@y.example"});
    std::vector<RecipientOutcome> out{failed("550 5.1.1 <a@x.example>: no such user"),
                                      RecipientOutcome{RecipientState::failed,
                                                       "550 5.1.2 recipient domain y.example does not exist", "",
                                                       false, false, false}};
    auto st = settle_attempt(m, out, {0, 1}, s, t0() + 1s, next_retry(m, s, t0() + 1s));
    auto due = reports_due(m, out, st, s, "relay.example", t0() + 1s);
    REQUIRE(due.reports.size() == 1);
    const auto& r = due.reports[0].recipients;
    REQUIRE(r[0].status == "5.1.1");
    REQUIRE(r[0].diagnostic == "550 5.1.1 <a@x.example>: no such user");
    REQUIRE(r[1].status == "5.0.0");
    REQUIRE(r[1].diagnostic.empty());
    REQUIRE(r[1].reason == "550 5.1.2 recipient domain y.example does not exist");
    // The whole message goes back while it is small, only headers past the limit or when RET=HDRS.
    REQUIRE(due.reports[0].full_message);
    m.ret = "HDRS";
    REQUIRE_FALSE(report_of(reports_due(m, out, st, s, "relay.example", t0()), ReportKind::failure)->full_message);
    m.ret = "";
    m.size = s.bounce_size_limit + 1;
    REQUIRE_FALSE(report_of(reports_due(m, out, st, s, "relay.example", t0()), ReportKind::failure)->full_message);
}

TEST_CASE("one delay warning, after the warning delay, for recipients that asked for one", "[delivery]") {
    DeliverySettings s;  // warning after 4 h
    auto m = message({"a@x.example", "b@x.example", "c@x.example"});
    m.recipients[1].notify = "FAILURE";  // did not ask for delays
    m.recipients[2].state = RecipientState::delivered;  // done in an earlier attempt
    std::vector<RecipientOutcome> out{deferred(), deferred(), RecipientOutcome{}};
    auto before = settle_attempt(m, out, {0, 1}, s, t0() + 4h - 1s, t0() + 5h);
    REQUIRE_FALSE(before.warning_due);
    REQUIRE(reports_due(m, out, before, s, "relay.example", t0() + 4h - 1s).reports.empty());
    auto at = settle_attempt(m, out, {0, 1}, s, t0() + 4h, t0() + 5h);
    REQUIRE(at.warning_due);
    auto due = reports_due(m, out, at, s, "relay.example", t0() + 4h);
    auto* delay = report_of(due, ReportKind::delay);
    REQUIRE(delay);
    REQUIRE(delay->recipients.size() == 1);
    REQUIRE(delay->recipients[0].address == "a@x.example");
    REQUIRE(delay->retry_until == t0() + s.message_lifetime);
    SECTION("never twice") {
        m.warned = true;
        REQUIRE_FALSE(settle_attempt(m, out, {0, 1}, s, t0() + 5h, t0() + 6h).warning_due);
    }
    SECTION("never where the file cannot record that it went out") {
        m.warned_offset = 0;
        REQUIRE_FALSE(settle_attempt(m, out, {0, 1}, s, t0() + 5h, t0() + 6h).warning_due);
    }
    SECTION("never when warnings are off") {
        s.warning_delay = 0s;
        REQUIRE_FALSE(settle_attempt(m, out, {0, 1}, s, t0() + 5h, t0() + 6h).warning_due);
    }
    SECTION("never once nothing is pending") {
        std::vector<RecipientOutcome> all_done{delivered(), delivered(), RecipientOutcome{}};
        REQUIRE_FALSE(settle_attempt(m, all_done, {0, 1}, s, t0() + 5h, t0() + 6h).warning_due);
    }
}

TEST_CASE("a relayed notice for NOTIFY=SUCCESS only where the next hop did not take the DSN request", "[delivery]") {
    DeliverySettings s;
    auto m = message({"a@x.example", "b@x.example", "c@x.example"});
    m.recipients[0].notify = "SUCCESS";
    m.recipients[1].notify = "SUCCESS,FAILURE";
    std::vector<RecipientOutcome> out{delivered(false), delivered(true), delivered(false)};
    auto st = settle_attempt(m, out, {0, 1, 2}, s, t0() + 1s, t0() + 300s);
    auto due = reports_due(m, out, st, s, "relay.example", t0() + 1s);
    REQUIRE(due.reports.size() == 1);
    REQUIRE(due.reports[0].kind == ReportKind::relayed);
    REQUIRE(due.reports[0].recipients.size() == 1);
    REQUIRE(due.reports[0].recipients[0].address == "a@x.example");
    REQUIRE(due.reports[0].recipients[0].status == "2.0.0");
}

TEST_CASE("no report ever goes to the null sender; the failures are counted instead", "[delivery]") {
    DeliverySettings s;
    auto m = message({"a@x.example", "b@x.example"}, "");
    std::vector<RecipientOutcome> out{failed(), failed()};
    auto st = settle_attempt(m, out, {0, 1}, s, t0() + 5h, t0() + 6h);
    auto due = reports_due(m, out, st, s, "relay.example", t0() + 5h);
    REQUIRE(due.reports.empty());
    REQUIRE(due.dropped_failures == 2);
}

TEST_CASE("a bounce that could not be queued keeps its recipients for the next attempt", "[delivery]") {
    DeliverySettings s;
    auto m = message({"a@x.example", "b@x.example"});
    std::vector<RecipientOutcome> out{failed(), delivered()};
    auto st = settle_attempt(m, out, {0, 1}, s, t0() + 1s, t0() + 301s);
    REQUIRE_FALSE(st.next());
    hold_unannounced_failures(st, out);
    REQUIRE(out[0].state == RecipientState::pending);
    REQUIRE(out[1].state == RecipientState::delivered);
    REQUIRE(st.settled == std::vector<std::size_t>{1});
    REQUIRE(st.pending == 1);
    REQUIRE(st.next() == t0() + 301s);
}

TEST_CASE("POP-before-SMTP: one login serves pop_login_interval; new settings or a failure log in again",
          "[delivery][pop]") {
    ManualClock clock;
    int logins = 0;
    bool server_refuses = false;
    PopBeforeSmtp pop(clock, [&](const std::string& address, int port, const DeliverySettings&, const TlsOptions&,
                                 Deadline) {
        ++logins;
        PopLogin l;
        l.status = server_refuses ? PopLogin::Status::failed : PopLogin::Status::logged_in;
        l.problem = server_refuses ? "-ERR [AUTH] invalid password" : "";
        l.fresh = true;
        l.server = address + ":" + std::to_string(port);
        return l;
    });
    DeliverySettings s;
    s.pop_server = "pop.parent.example:110";
    s.username = "relay";
    s.pop_login_interval = std::chrono::minutes(5);
    auto ensure = [&] { return pop.ensure(s, "pop.parent.example", {"192.0.2.7"}, 110, clock.steady_now() + 10s); };
    auto first = ensure();
    REQUIRE(first.status == PopLogin::Status::logged_in);
    REQUIRE(first.fresh);
    REQUIRE(logins == 1);
    clock.advance(4min + 59s);
    auto reused = ensure();
    REQUIRE(reused.status == PopLogin::Status::logged_in);
    REQUIRE_FALSE(reused.fresh);
    REQUIRE(logins == 1);
    clock.advance(1s);  // the interval has passed
    REQUIRE(ensure().fresh);
    REQUIRE(logins == 2);
    s.username = "other";  // another account is another login
    REQUIRE(ensure().fresh);
    REQUIRE(logins == 3);
    server_refuses = true;
    clock.advance(6min);
    REQUIRE(ensure().status == PopLogin::Status::failed);
    REQUIRE(logins == 4);
    server_refuses = false;
    REQUIRE(ensure().fresh);  // a failure is never reused
    REQUIRE(logins == 5);
}
