// The client networks an account was seen from lately, as both memory
// stores keep them (failed logins in the counter store, successful ones in
// the account store): the last time each was seen, those older than the
// window forgotten, at most a bounded number kept.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>

#include "common/base/clock.h"
#include "policy/counter_store.h"

namespace relayguard {

struct RecentNetworks {
    std::map<std::string, TimePoint> last_seen;
    TimePoint idle_after{};  // after this, every network has left its window

    // Notes `network` seen at `now`; answers how many are within `window`
    // and whether this one is new (kept only while fewer than `max_kept`).
    AccountOutcome note(const std::string& network, Duration window, std::uint32_t max_kept, TimePoint now) {
        std::erase_if(last_seen, [cutoff = now - window](const auto& kv) { return kv.second <= cutoff; });
        AccountOutcome out;
        if (auto found = last_seen.find(network); found != last_seen.end()) {
            found->second = now;
        } else if (last_seen.size() < std::max<std::uint32_t>(max_kept, 1)) {
            last_seen.emplace(network, now);
            out.new_network = true;
        }
        idle_after = now + window;
        out.networks = static_cast<std::uint32_t>(last_seen.size());
        return out;
    }
};

// The entry of `account` in a table of at most `max_accounts`, made when
// there is room once the idle entries are dropped; nullptr when there is
// none (the caller then counts nothing, as on a store outage).
template <class Table>
RecentNetworks* recent_networks_of(Table& table, const std::string& account, std::size_t max_accounts, TimePoint now) {
    auto it = table.find(account);
    if (it != table.end()) return &it->second;
    if (table.size() >= max_accounts) {
        std::erase_if(table, [now](const auto& kv) { return kv.second.idle_after <= now; });
        if (table.size() >= max_accounts) return nullptr;
    }
    return &table[account];
}

}  // namespace relayguard
