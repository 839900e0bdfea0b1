// Which front end counts a message when Postfix asks both. An admin may wire
// the milter and the policy service together, and the policy service at RCPT
// and at END-OF-MESSAGE as postfwd and policyd-rate-limit document it; each
// front end then reports the same transaction to the engine. The ledger lets
// the first report count and makes the others read only:
//   - at MAIL, the milter checks (and with count = "attempts" records) the
//     message rate; the policy service's first request of the transaction
//     (its `instance`) finds that mark and skips the rate rule. Postfix asks
//     the milter at MAIL FROM, always before the policy service at RCPT.
//   - at end of data both front ends know Postfix's queue id (the milter's
//     {i}, the policy request's queue_id): the first to report a queue id
//     counts the message, whichever order Postfix asks them in.
//   - the policy service's refusals are noted for the session, so that the
//     milter's connection-log line counts every refusal of the session.
// An SMTP session is named by client address and port, which both front ends
// see; both must therefore talk to the same relayguard process (the shipped
// wiring: both on loopback). Entries age out, so sessions whose close the
// ledger never hears of (the policy protocol has none) cannot fill memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/base/clock.h"

namespace relayguard {

class TransactionLedger {
public:
    explicit TransactionLedger(Duration max_age = std::chrono::hours(1), std::size_t max_entries = 100000)
        : max_age_(max_age), max_entries_(max_entries) {}

    // The milter saw MAIL FROM of a new transaction: `let_through`, it
    // checked the message rate and passed it; otherwise it refused, and the
    // policy service must not rely on it.
    void milter_mail(const std::string& session, bool let_through, TimePoint now);
    // The policy service's first request of transaction `instance`: true when
    // the milter has already checked this transaction's MAIL FROM (the policy
    // service then skips the rate rule). Answers the same for every request
    // of one instance.
    bool mail_checked_elsewhere(const std::string& session, const std::string& instance, TimePoint now);
    // End of data of `queue_id`: true for the first front end that reports
    // it, which counts the message; false for any later one. An empty queue
    // id is never a duplicate.
    bool first_to_count(const std::string& session, const std::string& queue_id, TimePoint now);
    // The policy service refused something in the session under `rule`:
    // the milter's connection-log line for the session counts it.
    void policy_refused(const std::string& session, const std::string& rule, TimePoint now);
    // The milter saw the session end: what the policy service refused in it
    // (count, last rule), and the session forgotten.
    struct Refusals {
        std::uint32_t count = 0;
        std::string last_rule;
    };
    Refusals session_closed(const std::string& session);

    std::size_t size() const;

private:
    struct Entry {
        TimePoint touched;
        bool milter_mail = false;    // the milter checked the current transaction's MAIL
        std::string instance;        // the policy transaction that took that check over
        std::string counted_queue_id;
        Refusals policy_refusals;
        std::list<std::string>::iterator age;  // position in order_
    };
    Entry& touch(const std::string& session, TimePoint now);
    void expire(TimePoint now);

    const Duration max_age_;
    const std::size_t max_entries_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, Entry> entries_;
    std::list<std::string> order_;  // least recently touched first
};

}  // namespace relayguard
