// Concurrent connections per client. A slot is taken at connect and given
// back at close on every path; only a front end that sees both (the milter)
// can enforce it.
#pragma once

#include <optional>

#include "policy/counter_store.h"
#include "policy/decision.h"
#include "policy/policy_settings.h"
#include "policy/rules/refusal.h"
#include "policy/session.h"

namespace relayguard {

class ConnectionLimit {
public:
    ConnectionLimit(const ConnectionLimitSettings& settings, CounterStore& store) : settings_(settings), store_(store) {}

    LimitMode mode() const { return settings_.mode; }
    // Takes the slot and reports any block of the client, in one store call.
    RuleCheck open(SessionState& s, TimePoint now, std::optional<ClientBlock>& block);
    void close(SessionState& s);

private:
    const ConnectionLimitSettings& settings_;
    CounterStore& store_;
};

}  // namespace relayguard
