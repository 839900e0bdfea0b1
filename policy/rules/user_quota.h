// Sending quotas of authenticated accounts: messages per hour and per day
// and recipients per day, whoever the client is, so a stolen password
// sends no more than its owner would. Counted as the message rate counts
// accepted mail: a message or recipient takes a slot in the same atomic step
// as its check (exact across parallel sessions and nodes), end of data
// commits it, an abort or refusal gives it back; for a front end that never
// sees end of data the engine commits the slots once the check has passed. Trusted and exempt groups are not exempt:
// the account is what is limited, and webmail sends from loopback.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "policy/counter_store.h"
#include "policy/decision.h"
#include "policy/policy_settings.h"
#include "policy/rules/refusal.h"
#include "policy/session.h"

namespace relayguard {

class UserQuotaLimit {
public:
    // `overrun_factor`: limits.compromised_accounts.quota_factor.
    UserQuotaLimit(const UserQuotaSettings& settings, CounterStore& store,
                   std::optional<std::uint32_t> overrun_factor = std::nullopt);

    // Whether any account has any quota (the defaults, or a line of the file).
    bool enabled() const { return enabled_; }
    LimitMode mode() const { return settings_.mode; }
    // The quota of `user`: its own line, else its domain's, else the defaults.
    const UserQuota& quota_for(std::string_view user) const;
    // At MAIL: a slot of the hourly and of the daily quota (both or
    // neither). A refusal that makes the account's tries reach
    // overrun_factor times the quota names the quota in s.tx.quota_overrun.
    RuleCheck check_message(SessionState& s, TimePoint now);
    // At RCPT, for a recipient otherwise accepted: a slot of the daily
    // recipient quota.
    RuleCheck check_recipient(SessionState& s, TimePoint now);
    // End of data of an accepted message: its slots become counted.
    void commit(SessionState& s, TimePoint now);
    // An abort, a refusal, a lost connection: its slots are given back.
    void release(SessionState& s);

    // The counter key of one quota of one account (also for the admin).
    static std::string key(std::string_view quota, std::string_view user);

private:
    // Takes one slot of `quota` (its key, window and limit); appends it to
    // the transaction's slots when it must later be committed or released.
    RuleCheck take(SessionState& s, const char* quota, const std::optional<std::uint32_t>& limit, Duration window,
                   TimePoint now);
    // The refusal of `quota`, noting an overrun for compromised_accounts.
    RuleCheck refused(SessionState& s, const char* quota, std::uint32_t limit, std::uint32_t count, Duration window,
                      TimePoint now);

    const UserQuotaSettings& settings_;
    CounterStore& store_;
    const bool enabled_;
    const std::optional<std::uint32_t> overrun_factor_;
};

}  // namespace relayguard
