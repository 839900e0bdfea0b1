// Failed commands per session: every command refused in the session (by
// relayguard or by the MTA, unknown commands included) counts; the failure
// past the limit ends the session with 421.
#pragma once

#include <optional>
#include <string>

#include "policy/decision.h"
#include "policy/policy_settings.h"
#include "policy/rules/refusal.h"
#include "policy/session.h"

namespace relayguard {

class FailedCommandLimit {
public:
    explicit FailedCommandLimit(const FailedCommandSettings& settings) : settings_(settings) {}
    LimitMode mode() const { return settings_.mode; }

    // Counts one failure; answers the closing refusal when it is one too many.
    std::optional<Decision> count_failure(SessionState& s) const {
        ++s.failed_commands;
        if (!settings_.max || s.failed_commands <= *settings_.max) return std::nullopt;
        return refusal("failed_commands", settings_.reply,
                       "failed=" + std::to_string(s.failed_commands) + " limit=" + std::to_string(*settings_.max));
    }

private:
    const FailedCommandSettings& settings_;
};

}  // namespace relayguard
