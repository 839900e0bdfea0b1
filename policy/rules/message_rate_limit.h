// Messages per client over a sliding window (the last hour by default, not
// a clock-hour bucket). Checked at MAIL FROM; counted there (attempts) or at
// end of data (accepted), as the `count` setting says.
#pragma once

#include <optional>

#include "policy/counter_store.h"
#include "policy/decision.h"
#include "policy/policy_settings.h"
#include "policy/session.h"

namespace relayguard {

class MessageRateLimit {
public:
    MessageRateLimit(const MessageRateSettings& settings, CounterStore& store) : settings_(settings), store_(store) {}

    bool enabled() const { return settings_.max.has_value(); }
    LimitMode mode() const { return settings_.mode; }
    // Outer optional: store unreachable. Inner: a refusal.
    // `record`: count this message now, below the limit, whatever the
    // counting rule (it is always so when counting attempts).
    std::optional<std::optional<Decision>> check(const SessionState& s, TimePoint now, bool record = false);
    // At end of data in `accepted` mode; false when the store is unreachable.
    bool record_accepted(const SessionState& s, TimePoint now);

private:
    const MessageRateSettings& settings_;
    CounterStore& store_;
};

}  // namespace relayguard
