// Directory-harvest guard; see the header.
#include "policy/rules/harvest_guard.h"

#include <cctype>
#include <string>

#include "policy/domain_set.h"
#include "policy/rules/refusal.h"

namespace relayguard {

Decision HarvestGuard::blocked(TimePoint until, TimePoint now) const {
    return refusal("unknown_recipients", settings_.reply, "client blocked for " + seconds_text(until - now));
}

bool HarvestGuard::means_unknown_user(std::string_view status, std::string_view text) {
    // Only a permanent refusal is a guess at a mailbox that does not exist.
    // A 4xx, 4.1.1 included, says "not now": reject_unverified_recipient
    // answers 450 4.1.1 for a valid user while the backend it asks is slow
    // or down, and counting those would block legitimate senders for the
    // whole block time during every backend outage.
    if (status.empty() || status[0] != '5') return false;
    // 5.1.1, "bad destination mailbox address" (RFC 3463): Postfix and
    // Sendmail always give an enhanced code to a milter.
    if (status.size() >= 2 && status[1] == '.') {
        return status.substr(0, 5) == "5.1.1" && (status.size() == 5 || !std::isdigit(static_cast<unsigned char>(status[5])));
    }
    // An MTA that gives only a reply code: 550 or 553, and only when the
    // text says the user is unknown (550 also means "policy refusal").
    if (status != "550" && status != "553") return false;
    std::string lower(text);
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (std::string_view phrase : {"user unknown", "unknown user", "no such user", "unknown recipient",
                                    "recipient unknown", "no such mailbox", "mailbox unknown", "unknown mailbox"}) {
        if (lower.find(phrase) != std::string::npos) return true;
    }
    return false;
}

RuleCheck HarvestGuard::record(const SessionState& s, std::string_view recipient,
                                                            TimePoint now) {
    std::uint32_t max = *settings_.max;
    // Case does not make another mailbox: "Bob@x" and "bob@x" are one guess.
    std::string key = DomainSet::normalise(recipient);
    Duration block_for = settings_.mode == LimitMode::enforce ? settings_.block_time : Duration::zero();
    auto r = store_.record_unknown_recipient(s.client_key, key, settings_.window, max, block_for, now);
    if (!r) return RuleCheck::unreachable();
    if (r->distinct < max && !r->blocked_until) return RuleCheck::passed();
    Duration left = r->blocked_until ? *r->blocked_until - now : settings_.block_time;
    return RuleCheck::refusing(refusal("unknown_recipients", settings_.reply,
                                           "distinct_unknown=" + std::to_string(r->distinct == 0 ? max : r->distinct) +
                                               " limit=" + std::to_string(max) + " blocked_for=" + seconds_text(left)));
}

}  // namespace relayguard
