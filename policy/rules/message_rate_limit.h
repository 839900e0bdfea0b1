// Messages per client over a sliding window (the last hour by default, not
// a clock-hour bucket). Checked at MAIL FROM; counted there (attempts) or at
// end of data (accepted), as the `count` setting says. Counting accepted
// mail, the check reserves a slot in the same atomic step, which end of data
// commits and an abort, a refusal or a close releases: with a limit of N, N
// transactions open at once take every slot and the next is refused, so
// parallel sessions cannot all pass one check.
#pragma once

#include <optional>

#include "policy/counter_store.h"
#include "policy/decision.h"
#include "policy/policy_settings.h"
#include "policy/rules/refusal.h"
#include "policy/session.h"

namespace relayguard {

class MessageRateLimit {
public:
    MessageRateLimit(const MessageRateSettings& settings, CounterStore& store) : settings_(settings), store_(store) {}

    bool enabled() const { return settings_.max.has_value(); }
    LimitMode mode() const { return settings_.mode; }
    // Counting attempts, counts this message now, below the limit;
    // counting accepted mail, reserves a slot for the transaction
    // (s.tx.reservation), in the same atomic step as the check.
    RuleCheck check(SessionState& s, TimePoint now);
    // At end of data of a message the MTA accepts: counting accepted mail,
    // the transaction's slot becomes a counted message (one is counted when
    // it holds none: a limit in warn mode past its limit). Never waits.
    void commit(SessionState& s, TimePoint now);
    // Gives the transaction's slot back, if it holds one. Never waits.
    void release(SessionState& s);

private:
    const MessageRateSettings& settings_;
    CounterStore& store_;
};

}  // namespace relayguard
