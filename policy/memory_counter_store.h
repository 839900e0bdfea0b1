// The counter store of a single node: everything in process memory, guarded
// by one mutex. Memory is bounded twice: per client (a rate window keeps at
// most `limit` timestamps, the harvest guard at most `threshold` addresses)
// and in the number of clients, by expiring idle entries and, when full,
// evicting those whose counters matter least soon.
#pragma once

#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "policy/counter_store.h"

namespace relayguard {

class MemoryCounterStore final : public CounterStore {
public:
    explicit MemoryCounterStore(std::size_t max_clients = 100000);

    std::optional<ConnectionOutcome> open_connection(const std::string& client, const std::string& connection_id,
                                                     std::uint32_t limit, TimePoint now) override;
    void close_connection(const std::string& client, const std::string& connection_id) override;
    std::optional<RateOutcome> message_rate(const std::string& client, Duration window, std::uint32_t limit,
                                            bool record, TimePoint now) override;
    std::optional<RateOutcome> record_message(const std::string& client, Duration window, std::uint32_t limit,
                                              TimePoint now) override;
    std::optional<UnknownRecipientOutcome> record_unknown_recipient(const std::string& client,
                                                                    const std::string& recipient, Duration window,
                                                                    std::uint32_t threshold, Duration block_for,
                                                                    TimePoint now) override;
    std::optional<std::optional<TimePoint>> blocked_until(const std::string& client, TimePoint now) override;
    bool unblock(const std::string& client) override;
    std::optional<ClientCounters> inspect(const std::string& client, Duration rate_window, Duration unknown_window,
                                          TimePoint now) override;

    std::size_t client_count() const;

private:
    struct ClientEntry {
        std::deque<TimePoint> messages;                      // oldest first, at most `limit`
        std::unordered_map<std::string, TimePoint> unknown;  // recipient -> last seen
        std::unordered_set<std::string> connections;
        TimePoint blocked_until{};
        TimePoint idle_after{};  // after this, no counter of the entry can matter
    };

    ClientEntry& entry(const std::string& client, TimePoint now);
    void make_room(TimePoint now);
    static void drop_older(std::deque<TimePoint>& events, TimePoint cutoff);
    static std::optional<TimePoint> active_block(const ClientEntry& c, TimePoint now);

    mutable std::mutex mutex_;
    std::size_t max_clients_;
    std::unordered_map<std::string, ClientEntry> clients_;
};

}  // namespace relayguard
