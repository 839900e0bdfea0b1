// Sending quotas of accounts; see the header.
#include "policy/rules/user_quota.h"

#include <chrono>

#include "policy/domain_set.h"

namespace relayguard {

namespace {

using namespace std::chrono_literals;

bool any(const UserQuota& q) { return q.messages_per_hour || q.messages_per_day || q.recipients_per_day; }

bool any_quota(const UserQuotaSettings& s) {
    if (any(s.defaults)) return true;
    for (const auto& [name, q] : s.users) if (any(q)) return true;
    for (const auto& [name, q] : s.domains) if (any(q)) return true;
    return false;
}

// The words a user reads in the refusal.
const char* described(std::string_view quota) {
    if (quota == "messages_per_hour") return "messages per hour";
    if (quota == "messages_per_day") return "messages per day";
    return "recipients per day";
}

}  // namespace

UserQuotaLimit::UserQuotaLimit(const UserQuotaSettings& settings, CounterStore& store,
                               std::optional<std::uint32_t> overrun_factor)
    : settings_(settings), store_(store), enabled_(any_quota(settings)), overrun_factor_(overrun_factor) {}

std::string UserQuotaLimit::key(std::string_view quota, std::string_view user) {
    return "user/" + std::string(quota) + "/" + DomainSet::normalise(user);
}

const UserQuota& UserQuotaLimit::quota_for(std::string_view user) const {
    std::string name = DomainSet::normalise(user);
    if (auto it = settings_.users.find(name); it != settings_.users.end()) return it->second;
    auto at = name.rfind('@');
    if (at != std::string::npos) {
        if (auto it = settings_.domains.find(name.substr(at + 1)); it != settings_.domains.end()) return it->second;
    }
    return settings_.defaults;
}

RuleCheck UserQuotaLimit::refused(SessionState& s, const char* quota, std::uint32_t limit, std::uint32_t count,
                                  Duration window, TimePoint now) {
    // Tries past the quota, in its window: at (factor - 1) x limit of them
    // the account has tried factor times what it may send. Warn mode only
    // logs, so it marks no one either.
    if (overrun_factor_ && settings_.mode == LimitMode::enforce) {
        std::uint32_t beyond = limit * (*overrun_factor_ - 1);
        auto tries = store_.record_message(key(std::string("over/") + quota, s.sasl_user), window, beyond, now);
        if (tries && tries->count + 1 >= beyond) s.tx.quota_overrun = quota;
    }
    SmtpReply reply = settings_.reply;
    reply.text += ": " + std::to_string(limit) + " " + described(quota);
    return RuleCheck::refusing(refusal("user_quota", reply,
                                       std::string("user=") + s.sasl_user + " quota=" + quota +
                                           " count=" + std::to_string(count) + " limit=" + std::to_string(limit)));
}

RuleCheck UserQuotaLimit::take(SessionState& s, const char* quota, const std::optional<std::uint32_t>& limit,
                               Duration window, TimePoint now) {
    if (!limit) return RuleCheck::passed();
    std::string k = key(quota, s.sasl_user);
    // Unique within the session: on Redis a committed slot is counted under
    // its name, and slots committed one by one (counting at the check)
    // must never share one.
    std::string name = s.connection_id + "#" + std::to_string(s.transactions) + "/" + quota + "/" +
                       std::to_string(s.tx.quota_slots_named++);
    auto r = store_.reserve_message(k, name, window, *limit, now);
    if (!r) return RuleCheck::unreachable();
    // A slot taken, or (warn mode) a message over the quota that must still
    // count when it is accepted: commit counts one for an empty name.
    if (r->recorded || settings_.mode == LimitMode::warn) {
        s.tx.quota_slots.push_back(QuotaSlot{k, r->recorded ? name : std::string(), window, *limit});
    }
    if (r->count < *limit) return RuleCheck::passed();
    return refused(s, quota, *limit, r->count, window, now);
}

RuleCheck UserQuotaLimit::check_message(SessionState& s, TimePoint now) {
    const UserQuota& q = quota_for(s.sasl_user);
    auto hour = take(s, "messages_per_hour", q.messages_per_hour, 1h, now);
    if (hour.outcome != RuleCheck::Outcome::pass && settings_.mode == LimitMode::enforce) return hour;
    auto day = take(s, "messages_per_day", q.messages_per_day, 24h, now);
    if (day.outcome != RuleCheck::Outcome::pass && settings_.mode == LimitMode::enforce) {
        release(s);  // the hourly slot of a message that will not be sent
        return day;
    }
    return hour.outcome != RuleCheck::Outcome::pass ? hour : day;
}

RuleCheck UserQuotaLimit::check_recipient(SessionState& s, TimePoint now) {
    return take(s, "recipients_per_day", quota_for(s.sasl_user).recipients_per_day, 24h, now);
}

void UserQuotaLimit::commit(SessionState& s, TimePoint now) {
    for (const auto& slot : s.tx.quota_slots) store_.commit_message(slot.key, slot.reservation, slot.window, slot.limit, now);
    s.tx.quota_slots.clear();
}

void UserQuotaLimit::release(SessionState& s) {
    for (const auto& slot : s.tx.quota_slots) {
        if (!slot.reservation.empty()) store_.release_message(slot.key, slot.reservation);
    }
    s.tx.quota_slots.clear();
}

}  // namespace relayguard
