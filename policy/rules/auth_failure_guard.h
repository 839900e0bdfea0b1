// Brute-force guard: a client that fails too many logins is blocked for a
// while, at connect, at RCPT and at the login itself (Dovecot asks before
// each one). Distinct user and password pairs are counted, so a phone
// retrying one stale password is one failure, not fifty. Failures of one
// account from many networks raise an alert instead: blocking the account
// would lock its owner out, which is what a guesser wants.
#pragma once

#include <string>

#include "policy/counter_store.h"
#include "policy/decision.h"
#include "policy/policy_settings.h"
#include "policy/rules/refusal.h"
#include "policy/session.h"

namespace relayguard {

class AuthFailureGuard {
public:
    AuthFailureGuard(const AuthFailureSettings& settings, CounterStore& store) : settings_(settings), store_(store) {}

    bool enabled() const { return settings_.reported && settings_.max.has_value(); }
    LimitMode mode() const { return settings_.mode; }
    Duration window() const { return settings_.window; }
    // The refusal for a client blocked until `until`.
    Decision blocked(TimePoint until, TimePoint now) const;
    // Records one failed login of the session's client; refusing when it
    // reached the limit (and, enforcing, set the block).
    RuleCheck record(const SessionState& s, const std::string& guess, TimePoint now);
    // Records the account's failure from the client's network, when that
    // is counted.
    std::optional<AccountOutcome> record_account(const SessionState& s, const std::string& user, TimePoint now);
    std::optional<std::uint32_t> account_threshold() const { return settings_.account_networks; }

private:
    const AuthFailureSettings& settings_;
    CounterStore& store_;
};

}  // namespace relayguard
