// Directory-harvest guard; see the header.
#include "policy/rules/harvest_guard.h"

#include "policy/domain_set.h"
#include "policy/rules/refusal.h"

namespace relayguard {

Decision HarvestGuard::blocked(TimePoint until, TimePoint now) const {
    return refusal("unknown_recipients", settings_.reply, "client blocked for " + seconds_text(until - now));
}

bool HarvestGuard::means_unknown_user(std::string_view status) {
    // 5.1.1 "bad destination mailbox address"; 4.1.1 when the MTA could not
    // yet verify it (reject_unverified_recipient).
    return status.size() >= 5 && (status[0] == '4' || status[0] == '5') && status.substr(1, 4) == ".1.1";
}

std::optional<std::optional<Decision>> HarvestGuard::record(const SessionState& s, std::string_view recipient,
                                                            TimePoint now) {
    std::uint32_t max = *settings_.max;
    // Case does not make another mailbox: "Bob@x" and "bob@x" are one guess.
    std::string key = DomainSet::normalise(recipient);
    Duration block_for = settings_.mode == LimitMode::enforce ? settings_.block_time : Duration::zero();
    auto r = store_.record_unknown_recipient(s.client_key, key, settings_.window, max, block_for, now);
    if (!r) return std::nullopt;
    if (r->distinct < max && !r->blocked_until) return std::optional<Decision>{};
    Duration left = r->blocked_until ? *r->blocked_until - now : settings_.block_time;
    return std::optional<Decision>{refusal("unknown_recipients", settings_.reply,
                                           "distinct_unknown=" + std::to_string(r->distinct == 0 ? max : r->distinct) +
                                               " limit=" + std::to_string(max) + " blocked_for=" + seconds_text(left))};
}

}  // namespace relayguard
