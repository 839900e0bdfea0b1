// Account state in memory; see the header.
#include "policy/account_store.h"

#include <algorithm>

namespace relayguard {

std::optional<AccountOutcome> MemoryAccountStore::record_login(const std::string& user, const std::string& network,
                                                               Duration window, std::uint32_t max_kept,
                                                               TimePoint now) {
    std::lock_guard lock(mutex_);
    auto it = logins_.find(user);
    if (it == logins_.end()) {
        if (logins_.size() >= max_accounts_) {
            std::erase_if(logins_, [now](const auto& kv) { return kv.second.idle_after <= now; });
            if (logins_.size() >= max_accounts_) return std::nullopt;
        }
        it = logins_.emplace(user, Logins{}).first;
    }
    auto& networks = it->second.networks;
    std::erase_if(networks, [cutoff = now - window](const auto& kv) { return kv.second <= cutoff; });
    AccountOutcome out;
    if (auto found = networks.find(network); found != networks.end()) {
        found->second = now;
    } else if (networks.size() < std::max<std::uint32_t>(max_kept, 1)) {
        networks.emplace(network, now);
        out.new_network = true;
    }
    it->second.idle_after = now + window;
    out.networks = static_cast<std::uint32_t>(networks.size());
    return out;
}

std::optional<std::map<std::string, TimePoint>> MemoryAccountStore::login_networks(const std::string& user,
                                                                                   Duration window, TimePoint now) {
    std::lock_guard lock(mutex_);
    std::map<std::string, TimePoint> out;
    auto it = logins_.find(user);
    if (it == logins_.end()) return out;
    for (const auto& [network, last] : it->second.networks) {
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
