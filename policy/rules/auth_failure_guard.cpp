// Brute-force guard; see the header.
#include "policy/rules/auth_failure_guard.h"

#include "policy/domain_set.h"

namespace relayguard {

Decision AuthFailureGuard::blocked(TimePoint until, TimePoint now) const {
    return refusal("auth_failures", settings_.reply, "client blocked for " + seconds_text(until - now));
}

RuleCheck AuthFailureGuard::record(const SessionState& s, const std::string& guess, TimePoint now) {
    std::uint32_t max = *settings_.max;
    Duration block_for = settings_.mode == LimitMode::enforce ? settings_.block_time : Duration::zero();
    auto r = store_.record_guess(GuessKind::failed_login, s.client_key, guess, settings_.window, max, block_for, now);
    if (!r) return RuleCheck::unreachable();
    if (r->distinct < max && !r->blocked_until) return RuleCheck::passed();
    Duration left = r->blocked_until ? *r->blocked_until - now : settings_.block_time;
    return RuleCheck::refusing(refusal("auth_failures", settings_.reply,
                                       "failed_logins=" + std::to_string(r->distinct == 0 ? max : r->distinct) +
                                           " limit=" + std::to_string(max) + " blocked_for=" + seconds_text(left)));
}

std::optional<AccountOutcome> AuthFailureGuard::record_account(const SessionState& s, const std::string& user,
                                                              TimePoint now) {
    if (!settings_.account_networks || user.empty()) return std::nullopt;
    // "Bob@X" and "bob@x" are one account to every server we front.
    return store_.record_account_failure(DomainSet::normalise(user), s.client_key, settings_.window,
                                         *settings_.account_networks, now);
}

}  // namespace relayguard
