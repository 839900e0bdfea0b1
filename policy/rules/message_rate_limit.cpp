// Message rate limit; see the header.
#include "policy/rules/message_rate_limit.h"

#include "policy/rules/refusal.h"

namespace relayguard {

std::optional<std::optional<Decision>> MessageRateLimit::check(const SessionState& s, TimePoint now, bool record) {
    std::uint32_t max = *settings_.max;
    bool record_now = record || settings_.count == CountMode::attempts;
    auto r = store_.message_rate(s.client_key, settings_.window, max, record_now, now);
    if (!r) return std::nullopt;
    if (r->count < max) return std::optional<Decision>{};
    return std::optional<Decision>{refusal("message_rate", settings_.reply,
                                           "count=" + std::to_string(r->count) + " limit=" + std::to_string(max) +
                                               " window=" + seconds_text(settings_.window) + " counting=" +
                                               (settings_.count == CountMode::attempts ? "attempts" : "accepted"))};
}

bool MessageRateLimit::record_accepted(const SessionState& s, TimePoint now) {
    if (settings_.count != CountMode::accepted) return true;
    return store_.record_message(s.client_key, settings_.window, *settings_.max, now).has_value();
}

}  // namespace relayguard
