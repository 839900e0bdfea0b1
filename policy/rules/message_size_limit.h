// Message size: the size a client declares with SIZE= at MAIL FROM is
// refused before any byte is sent; the body actually received is checked
// as it arrives and at end of data, whatever was declared.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "policy/decision.h"
#include "policy/policy_settings.h"
#include "policy/rules/refusal.h"

namespace relayguard {

class MessageSizeLimit {
public:
    explicit MessageSizeLimit(const MessageSizeSettings& settings) : settings_(settings) {}
    LimitMode mode() const { return settings_.mode; }

    std::optional<Decision> check(std::uint64_t bytes, const char* what) const {
        if (!settings_.max || bytes <= *settings_.max) return std::nullopt;
        return refusal("message_size", settings_.reply,
                       std::string(what) + "=" + std::to_string(bytes) + " limit=" + std::to_string(*settings_.max));
    }

private:
    const MessageSizeSettings& settings_;
};

}  // namespace relayguard
