// Hop count: a message that already carries more Received: headers than the
// limit is looping between servers and is refused (RFC 5321 6.3).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "policy/decision.h"
#include "policy/policy_settings.h"
#include "policy/rules/refusal.h"

namespace relayguard {

class HopCountLimit {
public:
    explicit HopCountLimit(const HopCountSettings& settings) : settings_(settings) {}
    LimitMode mode() const { return settings_.mode; }

    std::optional<Decision> check(std::uint32_t received_headers) const {
        if (!settings_.max || received_headers <= *settings_.max) return std::nullopt;
        return refusal("hops", settings_.reply,
                       "received_headers=" + std::to_string(received_headers) + " limit=" + std::to_string(*settings_.max));
    }

private:
    const HopCountSettings& settings_;
};

}  // namespace relayguard
