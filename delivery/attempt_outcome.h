// What one delivery attempt's results mean for the message: which
// recipients it settled, which reports the sender is owed, and when the
// next attempt is due. Pure: the recipients' outcomes, the message's
// history (arrival, the warning already sent), the settings and the time go
// in; the decisions come out. The Deliverer speaks SMTP and writes files;
// every "what now" is decided here, and unit-tested with a time set by hand.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "delivery/delivery_settings.h"
#include "delivery/queue/queue_file.h"
#include "delivery/reports/delivery_report.h"

namespace relayguard {

// What happened to one recipient in this attempt.
struct RecipientOutcome {
    RecipientState state = RecipientState::pending;
    std::string reply;  // the remote server's words, or ours
    std::string relay;  // host[address]:port
    bool dsn_passed = false;   // the next hop took NOTIFY/ORCPT (RFC 3461)
    bool expired = false;      // failed because the lifetime ended
    bool from_server = false;  // `reply` is a server's reply, not our words
};

struct AttemptSettlement {
    std::vector<std::size_t> settled;  // delivered or failed in this attempt
    std::size_t pending = 0;           // still to be tried
    bool warning_due = false;          // the one delay warning goes out now
    TimePoint retry_at{};              // the retry time the attempt arrived at
    // When the next attempt is due; std::nullopt when nothing is pending.
    std::optional<TimePoint> next() const { return pending > 0 ? std::optional<TimePoint>(retry_at) : std::nullopt; }
};

// The first retry time of an attempt at `now`: the longer the message has
// waited, the longer the wait, within delivery.retry_interval and
// delivery.max_retry_interval. A resting destination may bring it forward.
TimePoint next_retry(const QueuedMessage& m, const DeliverySettings& s, TimePoint now);

// Settles the attempted recipients (`attempted`, indexes into m.recipients):
// one still pending once the message lifetime has passed fails as expired.
// `retry_at` is the retry time the attempt arrived at (next_retry, or sooner).
AttemptSettlement settle_attempt(const QueuedMessage& m, std::vector<RecipientOutcome>& out,
                                 const std::vector<std::size_t>& attempted, const DeliverySettings& s, TimePoint now,
                                 TimePoint retry_at);

// The bounce could not be queued: its recipients wait for the next attempt
// rather than fail unannounced.
void hold_unannounced_failures(AttemptSettlement& settlement, std::vector<RecipientOutcome>& out);

// The reports this attempt owes the sender (failure, relayed, delay; only
// those with recipients), each recipient as its NOTIFY asks. None for the
// null sender: a report about a report is how bounce loops start; the
// failures such a bounce would have covered are counted instead.
struct ReportsDue {
    std::vector<DeliveryReport> reports;
    std::size_t dropped_failures = 0;
};
ReportsDue reports_due(const QueuedMessage& m, const std::vector<RecipientOutcome>& out,
                                        const AttemptSettlement& settlement, const DeliverySettings& s,
                                        const std::string& reporting_mta, TimePoint now);

}  // namespace relayguard
