// Message rate limit; see the header.
#include "policy/rules/message_rate_limit.h"

#include "policy/rules/refusal.h"

namespace relayguard {

RuleCheck MessageRateLimit::check(SessionState& s, TimePoint now) {
    std::uint32_t max = *settings_.max;
    std::optional<RateOutcome> r;
    if (settings_.count == CountMode::attempts) {
        r = store_.message_rate(s.client_key, settings_.window, max, true, now);
    } else {
        std::string name = s.connection_id + "#" + std::to_string(s.transactions);
        r = store_.reserve_message(s.client_key, name, settings_.window, max, now);
        if (r && r->recorded) s.tx.reservation = std::move(name);
    }
    if (!r) return RuleCheck::unreachable();
    if (r->count < max) return RuleCheck::passed();
    return RuleCheck::refusing(refusal("message_rate", settings_.reply,
                                           "count=" + std::to_string(r->count) + " limit=" + std::to_string(max) +
                                               " window=" + seconds_text(settings_.window) + " counting=" +
                                               (settings_.count == CountMode::attempts ? "attempts" : "accepted")));
}

void MessageRateLimit::commit(SessionState& s, TimePoint now) {
    if (settings_.count == CountMode::accepted) {
        store_.commit_message(s.client_key, s.tx.reservation, settings_.window, *settings_.max, now);
    }
    s.tx.reservation.clear();
}

void MessageRateLimit::release(SessionState& s) {
    if (s.tx.reservation.empty()) return;
    store_.release_message(s.client_key, s.tx.reservation);
    s.tx.reservation.clear();
}

}  // namespace relayguard
