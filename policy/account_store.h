// The port for what relayguard keeps about an account rather than a client:
// the networks it logged in from lately, and the compromised mark, with the
// queue ids of the mail held since. Kept apart from the counters because an
// account is not a client: its keys are user names, and its mark lasts until
// an admin clears it.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/base/clock.h"
#include "common/base/result.h"
#include "policy/counter_store.h"
#include "policy/ip_address.h"
#include "policy/recent_networks.h"

namespace relayguard {

struct CompromisedMark {
    TimePoint since{};
    std::string reason;
    std::vector<std::string> held;  // queue ids of mail held since, in the order held
};

// Told when an account is newly marked compromised (the daemon alerts the
// admin and runs the configured command). Called from the deciding thread:
// it must not wait.
class AccountObserver {
public:
    virtual ~AccountObserver() = default;
    virtual void account_compromised(const std::string& user, const std::string& reason, const IpAddress& client) = 0;
};

class AccountStore {
public:
    virtual ~AccountStore() = default;
    // A successful login of `user` from the client network `network`; the
    // distinct networks within `window` (at most `max_kept` kept).
    virtual std::optional<AccountOutcome> record_login(const std::string& user, const std::string& network,
                                                       Duration window, std::uint32_t max_kept, TimePoint now) = 0;
    // The networks `user` logged in from within `window`, each with its last login.
    virtual std::optional<std::map<std::string, TimePoint>> login_networks(const std::string& user, Duration window,
                                                                           TimePoint now) = 0;
    // Marks the account; true when it was not marked before (false: it
    // already was); a failure when the store cannot be reached.
    virtual Result<bool> mark_compromised(const std::string& user, const std::string& reason, TimePoint now) = 0;
    // The mark, with the queue ids held when `with_held` (the admin's view;
    // a decision needs only whether there is one).
    virtual Lookup<CompromisedMark> compromised(const std::string& user, bool with_held) = 0;
    // Notes a queue id of the account's mail held (no duplicates); false
    // when the account is not marked (any more) or already has max_held.
    virtual bool add_held(const std::string& user, const std::string& queue_id, TimePoint now) = 0;
    // A marked account's mail keeps coming (it is accepted, then held):
    // past this many ids the rest are not listed, only held.
    static constexpr std::size_t max_held = 10000;
    // Lifts the mark and forgets the account's login networks (the admin
    // has looked: counting starts afresh); answers the mark that was there.
    virtual Lookup<CompromisedMark> clear_compromised(const std::string& user) = 0;
};

class MemoryAccountStore final : public AccountStore {
public:
    // At most this many accounts' login networks are kept; past it the
    // entries whose logins have all left their window go first. Marks are
    // never dropped.
    explicit MemoryAccountStore(std::size_t max_accounts = 100000) : max_accounts_(max_accounts) {}
    std::optional<AccountOutcome> record_login(const std::string& user, const std::string& network, Duration window,
                                               std::uint32_t max_kept, TimePoint now) override;
    std::optional<std::map<std::string, TimePoint>> login_networks(const std::string& user, Duration window,
                                                                   TimePoint now) override;
    Result<bool> mark_compromised(const std::string& user, const std::string& reason, TimePoint now) override;
    Lookup<CompromisedMark> compromised(const std::string& user, bool with_held) override;
    bool add_held(const std::string& user, const std::string& queue_id, TimePoint now) override;
    Lookup<CompromisedMark> clear_compromised(const std::string& user) override;

private:
    std::mutex mutex_;
    const std::size_t max_accounts_;
    std::map<std::string, RecentNetworks> logins_;
    std::map<std::string, CompromisedMark> marks_;
};

}  // namespace relayguard
