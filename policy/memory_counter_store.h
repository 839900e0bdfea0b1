// The counter store of a single node: everything in process memory, guarded
// by one mutex. Memory is bounded twice: per client (a rate window keeps at
// most `limit` timestamps, the harvest guard at most `threshold` addresses)
// and in the number of clients (`max_clients`). When the table is full, room
// is made by dropping first the entries whose counters have expired, then the
// least recently used plain counters. A client under a harvest block or
// holding a live connection slot is never dropped: a spammer rotating through
// the addresses of a /48 must not flush its own block, and a dropped slot
// would leak; nor is one with a message in flight. When only such entries are left, a new client gets no entry:
// its calls answer std::nullopt, as an unreachable store does, so
// store.fail_mode decides ("tempfail" refuses with 4xx, "open" lets it pass
// unlimited); `on_full` is told once per such episode, for the log.
#pragma once

#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "common/base/result.h"
#include "policy/counter_store.h"
#include "policy/recent_networks.h"

namespace relayguard {

class MemoryCounterStore final : public CounterStore {
public:
    // Told the number of entries held when a new client first finds no room.
    using FullObserver = std::function<void(std::size_t held)>;
    explicit MemoryCounterStore(std::size_t max_clients = 100000, FullObserver on_full = nullptr);

    std::optional<ConnectionOutcome> open_connection(const std::string& client, const std::string& connection_id,
                                                     std::uint32_t limit, TimePoint now) override;
    void close_connection(const std::string& client, const std::string& connection_id) override;
    std::optional<RateOutcome> message_rate(const std::string& client, Duration window, std::uint32_t limit,
                                            bool record, TimePoint now) override;
    std::optional<RateOutcome> record_message(const std::string& client, Duration window, std::uint32_t limit,
                                              TimePoint now) override;
    std::optional<RateOutcome> reserve_message(const std::string& client, const std::string& reservation,
                                               Duration window, std::uint32_t limit, TimePoint now) override;
    void commit_message(const std::string& client, const std::string& reservation, Duration window,
                        std::uint32_t limit, TimePoint now) override;
    void release_message(const std::string& client, const std::string& reservation) override;
    std::optional<GuessOutcome> record_guess(GuessKind kind, const std::string& client, const std::string& guess,
                                             Duration window, std::uint32_t threshold, Duration block_for,
                                             TimePoint now) override;
    Lookup<ClientBlock> block(const std::string& client, TimePoint now) override;
    bool unblock(const std::string& client) override;
    void forget_messages(const std::string& client) override;
    std::optional<AccountOutcome> record_account_failure(const std::string& user, const std::string& network,
                                                        Duration window, std::uint32_t max_kept,
                                                        TimePoint now) override;
    bool mark_failed_auth(const std::string& address, TimePoint until, TimePoint now) override;
    Lookup<TimePoint> failed_auth_until(const std::string& address, TimePoint now) override;
    std::optional<ClientCounters> inspect(const std::string& client, const CounterWindows& windows,
                                          TimePoint now) override;

    std::size_t client_count() const;

    // What must outlive a clean restart (memory_store_snapshot.cpp): each
    // client's counted messages, guesses and block, and the failed-AUTH
    // bars, as text; entries that no longer matter at `now` are left out,
    // as are open connections and messages in flight (they end with the
    // process). Pure: the daemon writes and reads the file.
    std::string snapshot(TimePoint now) const;
    struct Restored {
        std::size_t clients = 0, blocks = 0;
    };
    // Adds a snapshot's entries, those still mattering at `now`; a text
    // that is not a snapshot is refused whole, naming its first bad line.
    Result<Restored> restore(std::string_view text, TimePoint now);

    // How long a message may stay in flight before its slot is given back
    // unasked. Every front end ends its transactions (the milter's close
    // comes on every path), so this only bounds a bug; it is far longer than
    // any transaction Postfix lets run (smtpd_timeout is 300 s a command).
    static constexpr Duration in_flight_expiry = std::chrono::hours(1);

private:
    struct ClientEntry {
        std::deque<TimePoint> messages;                      // oldest first, at most `limit`
        std::unordered_map<std::string, TimePoint> unknown;  // recipient -> last seen
        std::unordered_map<std::string, TimePoint> failed_logins;  // user and password -> last seen
        std::unordered_set<std::string> connections;
        std::unordered_map<std::string, TimePoint> in_flight;  // reservation -> expiry
        TimePoint blocked_until{};
        GuessKind blocked_for = GuessKind::unknown_recipient;
        TimePoint idle_after{};  // after this, no counter of the entry can matter
        std::uint64_t last_use = 0;  // use_count_ at the last call for the client: the LRU order
    };

    // The client's entry, made if needed; nullptr when the table is full of
    // entries that may not be dropped.
    ClientEntry* entry(const std::string& client, TimePoint now);
    void make_room(TimePoint now);
    static bool droppable(const ClientEntry& c, TimePoint now);
    static void drop_older(std::deque<TimePoint>& events, TimePoint cutoff);
    // Counted and in-flight messages in the window, after dropping the old.
    static std::uint32_t messages_now(ClientEntry& c, Duration window, TimePoint now);
    static void add_message(ClientEntry& c, Duration window, std::uint32_t limit, TimePoint now);
    static std::optional<TimePoint> active_block(const ClientEntry& c, TimePoint now);
    static std::unordered_map<std::string, TimePoint>& guesses(ClientEntry& c, GuessKind kind) {
        return kind == GuessKind::failed_login ? c.failed_logins : c.unknown;
    }
    // Drops what has expired from a bounded side table when it is full;
    // answers whether there is room for one more.
    template <class Table, class Expired>
    bool room_in(Table& table, Expired expired) const;

    mutable std::mutex mutex_;
    std::size_t max_clients_;
    FullObserver on_full_;
    std::unordered_map<std::string, ClientEntry> clients_;
    // Failed logins per account (user -> network -> last seen), and the
    // addresses whose trusted groups a failed AUTH bars (-> until); each
    // bounded by max_clients_, expired entries dropped first.
    std::unordered_map<std::string, RecentNetworks> accounts_;
    std::unordered_map<std::string, TimePoint> failed_auth_;
    std::uint64_t use_count_ = 0;
    // While full of undroppable entries: no scan for room until a block may
    // have ended or a slot or block was released, so a flood of new clients
    // costs a lookup each, not a scan of the table each.
    bool full_ = false;
    TimePoint rescan_at_{};
    bool released_ = false;
};

}  // namespace relayguard
