// In-memory counters for one node; see the header for the memory bounds.
#include "policy/memory_counter_store.h"

#include <algorithm>
#include <vector>

namespace relayguard {

MemoryCounterStore::MemoryCounterStore(std::size_t max_clients, FullObserver on_full)
    : max_clients_(std::max<std::size_t>(max_clients, 1)), on_full_(std::move(on_full)) {}

std::size_t MemoryCounterStore::client_count() const {
    std::lock_guard lock(mutex_);
    return clients_.size();
}

void MemoryCounterStore::drop_older(std::deque<TimePoint>& events, TimePoint cutoff) {
    while (!events.empty() && events.front() <= cutoff) events.pop_front();
}

std::optional<TimePoint> MemoryCounterStore::active_block(const ClientEntry& c, TimePoint now) {
    if (c.blocked_until > now) return c.blocked_until;
    return std::nullopt;
}

bool MemoryCounterStore::droppable(const ClientEntry& c, TimePoint now) {
    return c.connections.empty() && c.in_flight.empty() && !active_block(c, now);
}

std::uint32_t MemoryCounterStore::messages_now(ClientEntry& c, Duration window, TimePoint now) {
    drop_older(c.messages, now - window);
    std::erase_if(c.in_flight, [now](const auto& kv) { return kv.second <= now; });
    return static_cast<std::uint32_t>(c.messages.size() + c.in_flight.size());
}

void MemoryCounterStore::add_message(ClientEntry& c, Duration window, std::uint32_t limit, TimePoint now) {
    c.messages.push_back(now);
    // Only the newest `limit` events can decide whether the limit is reached.
    while (c.messages.size() > std::max<std::uint32_t>(limit, 1)) c.messages.pop_front();
    c.idle_after = std::max(c.idle_after, now + window);
}

MemoryCounterStore::ClientEntry* MemoryCounterStore::entry(const std::string& client, TimePoint now) {
    auto it = clients_.find(client);
    if (it != clients_.end()) {
        it->second.last_use = ++use_count_;
        return &it->second;
    }
    if (clients_.size() >= max_clients_) {
        bool may_have_room = !full_ || released_ || now >= rescan_at_;
        if (may_have_room) make_room(now);
        if (clients_.size() >= max_clients_) {
            if (!full_ && on_full_) on_full_(clients_.size());
            full_ = true;
            released_ = false;
            return nullptr;
        }
    }
    full_ = false;
    ClientEntry& fresh = clients_[client];
    fresh.last_use = ++use_count_;
    return &fresh;
}

// Called only when the table is full: first drop what has expired, then, if
// that freed too little, the least recently used entries that are neither
// blocked nor holding a connection. Freeing a tenth at a time keeps the cost
// amortised under a flood of new IPs.
void MemoryCounterStore::make_room(TimePoint now) {
    std::erase_if(clients_, [now](const auto& kv) { return droppable(kv.second, now) && kv.second.idle_after <= now; });
    std::size_t target = max_clients_ - std::max<std::size_t>(max_clients_ / 10, 1);
    if (clients_.size() <= target) return;
    std::vector<std::pair<std::uint64_t, const std::string*>> victims;
    TimePoint first_block_end = TimePoint::max();
    for (const auto& [key, c] : clients_) {
        if (droppable(c, now)) victims.emplace_back(c.last_use, &key);
        else if (c.connections.empty() && c.in_flight.empty()) first_block_end = std::min(first_block_end, c.blocked_until);
    }
    // Nothing held only by a block changes before the first block ends.
    rescan_at_ = first_block_end;
    std::size_t excess = clients_.size() - target;
    if (victims.size() > excess) {
        std::nth_element(victims.begin(), victims.begin() + static_cast<std::ptrdiff_t>(excess), victims.end());
        victims.resize(excess);
    }
    std::vector<std::string> keys;
    for (auto& v : victims) keys.push_back(*v.second);
    for (auto& k : keys) clients_.erase(k);
}

std::optional<ConnectionOutcome> MemoryCounterStore::open_connection(const std::string& client,
                                                                     const std::string& connection_id,
                                                                     std::uint32_t limit, TimePoint now) {
    std::lock_guard lock(mutex_);
    ClientEntry* made = entry(client, now);
    if (made == nullptr) return std::nullopt;
    ClientEntry& c = *made;
    ConnectionOutcome out;
    out.blocked_until = active_block(c, now);
    out.blocked_for = c.blocked_for;
    if (c.connections.count(connection_id) || limit == 0 || c.connections.size() < limit) {
        c.connections.insert(connection_id);
        out.admitted = true;
    }
    out.held = static_cast<std::uint32_t>(c.connections.size());
    return out;
}

void MemoryCounterStore::close_connection(const std::string& client, const std::string& connection_id) {
    std::lock_guard lock(mutex_);
    auto it = clients_.find(client);
    if (it == clients_.end()) return;
    if (it->second.connections.erase(connection_id) && it->second.connections.empty()) released_ = true;
}

std::optional<RateOutcome> MemoryCounterStore::message_rate(const std::string& client, Duration window,
                                                            std::uint32_t limit, bool record, TimePoint now) {
    std::lock_guard lock(mutex_);
    ClientEntry* made = entry(client, now);
    if (made == nullptr) return std::nullopt;
    ClientEntry& c = *made;
    RateOutcome out{messages_now(c, window, now), false};
    if (record && out.count < limit) {
        add_message(c, window, limit, now);
        out.recorded = true;
    }
    return out;
}

std::optional<RateOutcome> MemoryCounterStore::record_message(const std::string& client, Duration window,
                                                              std::uint32_t limit, TimePoint now) {
    std::lock_guard lock(mutex_);
    ClientEntry* made = entry(client, now);
    if (made == nullptr) return std::nullopt;
    ClientEntry& c = *made;
    RateOutcome out{messages_now(c, window, now), true};
    add_message(c, window, limit, now);
    return out;
}

std::optional<RateOutcome> MemoryCounterStore::reserve_message(const std::string& client,
                                                               const std::string& reservation, Duration window,
                                                               std::uint32_t limit, TimePoint now) {
    std::lock_guard lock(mutex_);
    ClientEntry* made = entry(client, now);
    if (made == nullptr) return std::nullopt;
    ClientEntry& c = *made;
    RateOutcome out{messages_now(c, window, now), false};
    if (out.count < limit) {
        c.in_flight[reservation] = now + in_flight_expiry;
        out.recorded = true;
    }
    return out;
}

void MemoryCounterStore::commit_message(const std::string& client, const std::string& reservation, Duration window,
                                        std::uint32_t limit, TimePoint now) {
    std::lock_guard lock(mutex_);
    ClientEntry* made = entry(client, now);
    if (made == nullptr) return;  // full of blocks and live slots: this count is lost, as on a store outage
    made->in_flight.erase(reservation);
    drop_older(made->messages, now - window);
    add_message(*made, window, limit, now);
}

void MemoryCounterStore::release_message(const std::string& client, const std::string& reservation) {
    std::lock_guard lock(mutex_);
    auto it = clients_.find(client);
    if (it == clients_.end()) return;
    if (it->second.in_flight.erase(reservation) && it->second.in_flight.empty()) released_ = true;
}

std::optional<GuessOutcome> MemoryCounterStore::record_guess(GuessKind kind, const std::string& client,
                                                             const std::string& guess, Duration window,
                                                             std::uint32_t threshold, Duration block_for,
                                                             TimePoint now) {
    std::lock_guard lock(mutex_);
    ClientEntry* made = entry(client, now);
    if (made == nullptr) return std::nullopt;
    ClientEntry& c = *made;
    auto& seen = guesses(c, kind);
    std::erase_if(seen, [cutoff = now - window](const auto& kv) { return kv.second <= cutoff; });
    auto found = seen.find(guess);
    if (found != seen.end()) {
        found->second = now;
    } else if (seen.size() < std::max<std::uint32_t>(threshold, 1)) {
        seen.emplace(guess, now);
    }
    GuessOutcome out;
    out.distinct = static_cast<std::uint32_t>(seen.size());
    if (threshold > 0 && out.distinct >= threshold && block_for > Duration::zero() && c.blocked_until <= now) {
        c.blocked_until = now + block_for;
        c.blocked_for = kind;
        // A new block starts a new count: after it ends the client gets a clean slate.
        seen.clear();
    }
    out.blocked_until = active_block(c, now);
    c.idle_after = std::max({c.idle_after, now + window, c.blocked_until});
    return out;
}

Lookup<ClientBlock> MemoryCounterStore::block(const std::string& client, TimePoint now) {
    std::lock_guard lock(mutex_);
    auto it = clients_.find(client);
    if (it == clients_.end() || !active_block(it->second, now)) return std::optional<ClientBlock>{};
    return std::optional<ClientBlock>(ClientBlock{it->second.blocked_until, it->second.blocked_for});
}

bool MemoryCounterStore::unblock(const std::string& client) {
    std::lock_guard lock(mutex_);
    auto it = clients_.find(client);
    if (it == clients_.end()) return false;
    bool was = it->second.blocked_until != TimePoint{};
    it->second.blocked_until = TimePoint{};
    released_ = true;
    it->second.unknown.clear();
    it->second.failed_logins.clear();
    return was;
}

void MemoryCounterStore::forget_messages(const std::string& client) {
    std::lock_guard lock(mutex_);
    auto it = clients_.find(client);
    if (it != clients_.end()) it->second.messages.clear();
}

template <class Table, class Expired>
bool MemoryCounterStore::room_in(Table& table, Expired expired) const {
    if (table.size() < max_clients_) return true;
    std::erase_if(table, expired);
    return table.size() < max_clients_;
}

std::optional<AccountOutcome> MemoryCounterStore::record_account_failure(const std::string& user,
                                                                         const std::string& network, Duration window,
                                                                         std::uint32_t max_kept, TimePoint now) {
    std::lock_guard lock(mutex_);
    RecentNetworks* seen = recent_networks_of(accounts_, user, max_clients_, now);
    if (seen == nullptr) return std::nullopt;
    return seen->note(network, window, max_kept, now);
}

bool MemoryCounterStore::mark_failed_auth(const std::string& address, TimePoint until, TimePoint now) {
    std::lock_guard lock(mutex_);
    auto it = failed_auth_.find(address);
    if (it == failed_auth_.end()) {
        if (!room_in(failed_auth_, [now](const auto& kv) { return kv.second <= now; })) return false;
        failed_auth_.emplace(address, until);
    } else {
        it->second = std::max(it->second, until);
    }
    return true;
}

Lookup<TimePoint> MemoryCounterStore::failed_auth_until(const std::string& address, TimePoint now) {
    std::lock_guard lock(mutex_);
    auto it = failed_auth_.find(address);
    if (it == failed_auth_.end() || it->second <= now) return std::optional<TimePoint>{};
    return std::optional<TimePoint>(it->second);
}

std::optional<ClientCounters> MemoryCounterStore::inspect(const std::string& client, const CounterWindows& windows,
                                                          TimePoint now) {
    std::lock_guard lock(mutex_);
    ClientCounters out;
    auto it = clients_.find(client);
    if (it == clients_.end()) return out;
    const ClientEntry& c = it->second;
    auto count = [now](TimePoint t, Duration window, std::uint32_t& n, std::optional<TimePoint>& oldest) {
        if (t <= now - window) return;
        ++n;
        if (!oldest || t < *oldest) oldest = t;
    };
    for (auto t : c.messages) count(t, windows.message_rate, out.messages, out.oldest_message);
    for (const auto& [id, expires] : c.in_flight) out.messages_in_flight += expires > now ? 1 : 0;
    out.connections = static_cast<std::uint32_t>(c.connections.size());
    for (const auto& [rcpt, seen] : c.unknown) {
        count(seen, windows.unknown_recipients, out.unknown_recipients, out.oldest_unknown_recipient);
    }
    for (const auto& [login, seen] : c.failed_logins) {
        count(seen, windows.failed_logins, out.failed_logins, out.oldest_failed_login);
    }
    out.blocked_until = active_block(c, now);
    out.blocked_for = c.blocked_for;
    return out;
}

}  // namespace relayguard
