// Account state in Redis, so a login seen by one node counts on all of them
// and a compromised mark holds the account's mail on every node. Keys
// "<prefix>{<user>}:acct-logins", ":acct-compromised" and ":acct-held"
// share the user's hash tag (and never a client's keys: those have other
// suffixes). The mark has no expiry: only an admin lifts it.
#pragma once

#include "common/redis/redis_client.h"
#include "policy/account_store.h"

namespace relayguard {

class RedisAccountStore final : public AccountStore {
public:
    RedisAccountStore(RedisClient& redis, std::string key_prefix) : redis_(redis), prefix_(std::move(key_prefix)) {}
    std::optional<AccountOutcome> record_login(const std::string& user, const std::string& network, Duration window,
                                               std::uint32_t max_kept, TimePoint now) override;
    std::optional<std::map<std::string, TimePoint>> login_networks(const std::string& user, Duration window,
                                                                   TimePoint now) override;
    Result<bool> mark_compromised(const std::string& user, const std::string& reason, TimePoint now) override;
    Lookup<CompromisedMark> compromised(const std::string& user, bool with_held) override;
    bool add_held(const std::string& user, const std::string& queue_id, TimePoint now) override;
    Lookup<CompromisedMark> clear_compromised(const std::string& user) override;

private:
    std::string key(const std::string& user, const char* kind) const { return prefix_ + "{" + user + "}:" + kind; }
    Lookup<CompromisedMark> read_mark(const std::string& user, const char* how);

    RedisClient& redis_;
    const std::string prefix_;
};

}  // namespace relayguard
