// Account state in memory; see the header.
#include "policy/account_store.h"

#include <algorithm>

namespace relayguard {

std::optional<AccountOutcome> MemoryAccountStore::record_login(const std::string& user, const std::string& network,
                                                               Duration window, std::uint32_t max_kept,
                                                               TimePoint now) {
    std::lock_guard lock(mutex_);
    RecentNetworks* seen = recent_networks_of(logins_, user, max_accounts_, now);
    if (seen == nullptr) return std::nullopt;
    return seen->note(network, window, max_kept, now);
}

std::optional<std::map<std::string, TimePoint>> MemoryAccountStore::login_networks(const std::string& user,
                                                                                   Duration window, TimePoint now) {
    std::lock_guard lock(mutex_);
    std::map<std::string, TimePoint> out;
    auto it = logins_.find(user);
    if (it == logins_.end()) return out;
    for (const auto& [network, last] : it->second.last_seen) {
        if (last > now - window) out.emplace(network, last);
    }
    return out;
}

Result<bool> MemoryAccountStore::mark_compromised(const std::string& user, const std::string& reason, TimePoint now) {
    std::lock_guard lock(mutex_);
    return marks_.try_emplace(user, CompromisedMark{now, reason, {}}).second;
}

Lookup<CompromisedMark> MemoryAccountStore::compromised(const std::string& user, bool with_held) {
    std::lock_guard lock(mutex_);
    auto it = marks_.find(user);
    if (it == marks_.end()) return std::optional<CompromisedMark>{};
    CompromisedMark mark{it->second.since, it->second.reason, {}};
    if (with_held) mark.held = it->second.held;
    return std::optional<CompromisedMark>(std::move(mark));
}

bool MemoryAccountStore::add_held(const std::string& user, const std::string& queue_id, TimePoint) {
    std::lock_guard lock(mutex_);
    auto it = marks_.find(user);
    if (it == marks_.end()) return false;
    auto& held = it->second.held;
    if (std::find(held.begin(), held.end(), queue_id) != held.end()) return true;
    if (held.size() >= max_held) return false;
    held.push_back(queue_id);
    return true;
}

Lookup<CompromisedMark> MemoryAccountStore::clear_compromised(const std::string& user) {
    std::lock_guard lock(mutex_);
    auto it = marks_.find(user);
    if (it == marks_.end()) return std::optional<CompromisedMark>{};
    CompromisedMark mark = std::move(it->second);
    marks_.erase(it);
    logins_.erase(user);
    return std::optional<CompromisedMark>(std::move(mark));
}

}  // namespace relayguard
