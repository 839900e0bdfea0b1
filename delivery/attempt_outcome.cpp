// What one attempt's results mean for the message (see attempt_outcome.h).
#include "delivery/attempt_outcome.h"

#include "delivery/destination_state.h"

namespace relayguard {

TimePoint next_retry(const QueuedMessage& m, const DeliverySettings& s, TimePoint now) {
    return now + retry_delay(now - m.arrival, s.retry_interval, s.max_retry_interval);
}

AttemptSettlement settle_attempt(const QueuedMessage& m, std::vector<RecipientOutcome>& out,
                                 const std::vector<std::size_t>& attempted, const DeliverySettings& s, TimePoint now,
                                 TimePoint retry_at) {
    AttemptSettlement settlement;
    settlement.retry_at = retry_at;
    bool expired = now - m.arrival >= s.message_lifetime;
    for (auto i : attempted) {
        auto& o = out[i];
        if (o.state == RecipientState::pending && expired) {
            o.state = RecipientState::failed;
            o.expired = true;
        }
        if (o.state == RecipientState::pending) ++settlement.pending;
        else settlement.settled.push_back(i);
    }
    // warned_offset 0: a file without room to record the warning, which
    // would then be sent at every attempt.
    settlement.warning_due = settlement.pending > 0 && !m.warned && m.warned_offset != 0 &&
                             s.warning_delay.count() > 0 && now - m.arrival >= s.warning_delay;
    return settlement;
}

void hold_unannounced_failures(AttemptSettlement& settlement, std::vector<RecipientOutcome>& out) {
    std::vector<std::size_t> still_settled;
    for (auto i : settlement.settled) {
        if (out[i].state == RecipientState::failed) {
            out[i].state = RecipientState::pending;
            ++settlement.pending;
        } else {
            still_settled.push_back(i);
        }
    }
    settlement.settled = std::move(still_settled);
}

namespace {

ReportRecipient report_entry(const QueuedRecipient& r, const RecipientOutcome& o, bool permanent) {
    std::string reason = o.expired ? "message lifetime expired; last problem: " + o.reply : o.reply;
    std::string status = o.expired ? "4.4.7" : enhanced_status(o.from_server ? o.reply : "", permanent);
    std::string remote = o.relay.substr(0, o.relay.find('['));
    // The remote server's own words when it answered; ours otherwise.
    return ReportRecipient{r.address, r.orcpt, status, remote, o.from_server ? o.reply : "", reason};
}

}  // namespace

ReportsDue reports_due(const QueuedMessage& m, const std::vector<RecipientOutcome>& out,
                       const AttemptSettlement& settlement, const DeliverySettings& s,
                       const std::string& reporting_mta, TimePoint now) {
    DeliveryReport base;
    base.reporting_mta = reporting_mta;
    base.queue_id = m.id;
    base.sender = m.sender;
    base.envid = m.envid;
    base.arrival = m.arrival;
    base.now = now;
    base.retry_until = m.arrival + s.message_lifetime;
    DeliveryReport failure = base, relayed = base, delay = base;
    failure.kind = ReportKind::failure;
    failure.full_message = m.ret != "HDRS" && m.size <= s.bounce_size_limit;
    relayed.kind = ReportKind::relayed;
    delay.kind = ReportKind::delay;
    for (auto i : settlement.settled) {
        const auto& r = m.recipients[i];
        if (out[i].state == RecipientState::failed && notify_wants(r, "FAILURE")) {
            failure.recipients.push_back(report_entry(r, out[i], true));
        }
        if (out[i].state == RecipientState::delivered && !out[i].dsn_passed && notify_wants(r, "SUCCESS")) {
            auto e = report_entry(r, out[i], false);
            e.status = "2.0.0";
            relayed.recipients.push_back(e);
        }
    }
    if (settlement.warning_due) {
        for (std::size_t i = 0; i < m.recipients.size(); ++i) {
            const auto& r = m.recipients[i];
            if (r.state == RecipientState::pending && out[i].state == RecipientState::pending &&
                notify_wants(r, "DELAY")) {
                delay.recipients.push_back(report_entry(r, out[i], false));
            }
        }
    }
    ReportsDue due;
    if (m.sender.empty()) {
        due.dropped_failures = failure.recipients.size();
        return due;
    }
    for (auto* report : {&failure, &relayed, &delay}) {
        if (!report->recipients.empty()) due.reports.push_back(std::move(*report));
    }
    return due;
}

}  // namespace relayguard
