// Recipients per message: counts the recipients accepted so far in the
// transaction; the one past the limit gets 452 (RFC 5321 4.5.3.1.10), so a
// legitimate client sends the rest in a new transaction.
#pragma once

#include <optional>
#include <string>

#include "policy/decision.h"
#include "policy/policy_settings.h"
#include "policy/rules/refusal.h"
#include "policy/session.h"

namespace relayguard {

class RecipientLimit {
public:
    explicit RecipientLimit(const RecipientLimitSettings& settings) : settings_(settings) {}
    LimitMode mode() const { return settings_.mode; }

    std::optional<Decision> check(const Transaction& tx) const {
        if (!settings_.max || tx.recipients < *settings_.max) return std::nullopt;
        return refusal("recipients", settings_.reply,
                       "recipients=" + std::to_string(tx.recipients + 1) + " limit=" + std::to_string(*settings_.max));
    }

private:
    const RecipientLimitSettings& settings_;
};

}  // namespace relayguard
