// Directory-harvest guard: a client that tries too many distinct unknown
// recipients is blocked for a while, for every recipient, valid or not.
// Distinct addresses are counted, so a client retrying one mistyped
// address does not count as ten.
#pragma once

#include <optional>
#include <string_view>

#include "policy/counter_store.h"
#include "policy/decision.h"
#include "policy/policy_settings.h"
#include "policy/rules/refusal.h"
#include "policy/session.h"

namespace relayguard {

class HarvestGuard {
public:
    HarvestGuard(const UnknownRecipientSettings& settings, CounterStore& store) : settings_(settings), store_(store) {}

    bool enabled() const { return settings_.max.has_value(); }
    LimitMode mode() const { return settings_.mode; }
    // The refusal for a client blocked until `until`.
    Decision blocked(TimePoint until, TimePoint now) const;
    // Did the MTA refuse the recipient for good as an unknown user? See the
    // .cpp for the rule.
    static bool means_unknown_user(std::string_view status, std::string_view text);
    // Records an unknown recipient. Outer optional: store unreachable;
    // inner: the refusal when this one crossed the threshold.
    RuleCheck record(const SessionState& s, std::string_view recipient, TimePoint now);

private:
    const UnknownRecipientSettings& settings_;
    CounterStore& store_;
};

}  // namespace relayguard
