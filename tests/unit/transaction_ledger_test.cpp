// The ledger that lets one message be counted once when Postfix asks the
// milter and the policy service (at RCPT and at END-OF-MESSAGE) about it.
#include <catch2/catch.hpp>

#include "plugin/frontends/transaction_ledger.h"

using namespace relayguard;
using namespace std::chrono_literals;

namespace {
const TimePoint t0{std::chrono::milliseconds(1'700'000'000'000)};
}

TEST_CASE("ledger: the policy service takes over the milter's MAIL check for its transaction", "[ledger]") {
    TransactionLedger ledger;
    // No milter: the policy service checks itself.
    CHECK_FALSE(ledger.mail_checked_elsewhere("192.0.2.1/40000", "A1", t0));
    ledger.milter_mail("192.0.2.1/40000", true, t0);
    CHECK(ledger.mail_checked_elsewhere("192.0.2.1/40000", "A2", t0));
    CHECK(ledger.mail_checked_elsewhere("192.0.2.1/40000", "A2", t0 + 1s));  // its 2nd RCPT
    // Another session of the same client (another port) is not this one.
    CHECK_FALSE(ledger.mail_checked_elsewhere("192.0.2.1/40001", "B1", t0));
    // A later transaction the milter did not see (no new MAIL FROM mark).
    CHECK_FALSE(ledger.mail_checked_elsewhere("192.0.2.1/40000", "A3", t0 + 2s));
    // The milter's next MAIL FROM starts the next transaction.
    ledger.milter_mail("192.0.2.1/40000", true, t0 + 3s);
    CHECK(ledger.mail_checked_elsewhere("192.0.2.1/40000", "A4", t0 + 3s));
    CHECK_FALSE(ledger.mail_checked_elsewhere("192.0.2.1/40000", "", t0 + 3s));
    // A MAIL FROM the milter refused is no check the policy service may
    // rely on, even with an unclaimed mark from before.
    ledger.milter_mail("192.0.2.1/40000", true, t0 + 4s);
    ledger.milter_mail("192.0.2.1/40000", false, t0 + 5s);
    CHECK_FALSE(ledger.mail_checked_elsewhere("192.0.2.1/40000", "A5", t0 + 5s));
}

TEST_CASE("ledger: the first front end to report a queue id counts it", "[ledger]") {
    TransactionLedger ledger;
    CHECK(ledger.first_to_count("192.0.2.1/40000", "4QxYz1", t0));
    CHECK_FALSE(ledger.first_to_count("192.0.2.1/40000", "4QxYz1", t0));  // the other front end
    CHECK(ledger.first_to_count("192.0.2.1/40000", "4QxYz2", t0));        // the next message
    CHECK(ledger.first_to_count("192.0.2.1/40000", "", t0));             // no queue id: never a duplicate
    CHECK(ledger.first_to_count("192.0.2.1/40000", "", t0));
}

TEST_CASE("ledger: closed sessions are forgotten, old ones age out, the size is bounded", "[ledger]") {
    TransactionLedger ledger(1h, 100);
    ledger.milter_mail("192.0.2.1/1", true, t0);
    ledger.session_closed("192.0.2.1/1");
    CHECK_FALSE(ledger.mail_checked_elsewhere("192.0.2.1/1", "X", t0));
    CHECK(ledger.size() == 0);

    ledger.milter_mail("192.0.2.1/2", true, t0);
    CHECK_FALSE(ledger.mail_checked_elsewhere("192.0.2.1/2", "Y", t0 + 2h));
    CHECK(ledger.size() == 0);

    // The policy protocol never says a session ended: a million sessions
    // seen only by it leave at most the bound.
    for (int i = 0; i < 1'000'000; ++i) ledger.first_to_count("198.51.100.1/" + std::to_string(i), "Q", t0);
    CHECK(ledger.size() == 100);
    // The most recent are the ones kept.
    CHECK_FALSE(ledger.first_to_count("198.51.100.1/999999", "Q", t0));
}
