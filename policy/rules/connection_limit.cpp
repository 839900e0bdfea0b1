// Concurrent connection limit; see the header.
#include "policy/rules/connection_limit.h"

#include "policy/rules/refusal.h"

namespace relayguard {

RuleCheck ConnectionLimit::open(SessionState& s, TimePoint now, std::optional<ClientBlock>& block) {
    // In warn mode the slot is always taken, so the count the log reports
    // is the real one an enforcing limit would see.
    std::uint32_t limit = settings_.max && settings_.mode == LimitMode::enforce ? *settings_.max : 0;
    auto r = store_.open_connection(s.client_key, s.connection_id, limit, now);
    if (!r) return RuleCheck::unreachable();
    if (r->blocked_until) block = ClientBlock{*r->blocked_until, r->blocked_for};
    s.holds_connection_slot = r->admitted;
    if (!settings_.max) return RuleCheck::passed();
    std::uint32_t max = *settings_.max;
    if (r->admitted && r->held <= max) return RuleCheck::passed();
    std::uint32_t seen = r->admitted ? r->held : r->held + 1;
    return RuleCheck::refusing(refusal("connections", settings_.reply,
                                           "concurrent=" + std::to_string(seen) + " limit=" + std::to_string(max)));
}

void ConnectionLimit::close(SessionState& s) {
    if (!s.holds_connection_slot) return;
    store_.close_connection(s.client_key, s.connection_id);
    s.holds_connection_slot = false;
}

}  // namespace relayguard
